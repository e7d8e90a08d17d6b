/**
 * The `inserted` events of an insert, published once the jobs exist for
 * everyone else: after the commit of the caller's transaction, never after a
 * rollback. Nothing is built when nobody listens.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { EventHub, publish } from "../Events.ts"
import type { Job } from "../Job.ts"
import { jobEvent } from "./jobEvent.ts"

// On the path of every insert: one lookup of the hub when nobody listens, no generator.
export const publishInserted = (sql: SqlClient, jobs: ReadonlyArray<Job>): Effect.Effect<void> =>
  jobs.length === 0 ? Effect.void : EventHub.use((hub) =>
    hub === undefined || hub.subscribers === 0
      ? Effect.void
      : Effect.flatMap(Clock.currentTimeMillis, (millis) => {
        const at = new Date(millis)
        return sql.afterCommit(publish(jobs.map((job) => jobEvent("inserted", job, job.meta["workflow"], at))))
      })
  )
