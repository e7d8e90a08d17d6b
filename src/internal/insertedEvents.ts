/**
 * The `inserted` events of an insert, published once the jobs exist for
 * everyone else: after the commit of the caller's transaction, never after a
 * rollback. Nothing is built when nobody listens.
 */
import { Clock, Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { listening, publish } from "../Events.ts"
import type { Job } from "../Job.ts"
import { jobEvent } from "./jobEvent.ts"

export const publishInserted = (sql: SqlClient, jobs: ReadonlyArray<Job>): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (jobs.length === 0 || !(yield* listening)) return
    const at = new Date(yield* Clock.currentTimeMillis)
    yield* sql.afterCommit(publish(jobs.map((job) => jobEvent("inserted", job, job.meta["workflow"], at))))
  })
