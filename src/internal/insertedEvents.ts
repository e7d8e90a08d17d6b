/**
 * The `inserted` events of an insert, published once the jobs exist for
 * everyone else: after the commit of the caller's transaction, never after a
 * rollback. Until then the events of its jobs wait (see `eventOrder.ts`), so
 * a job that starts here before the insert call or its transaction has heard
 * back still has its `inserted` event first. Nothing is built when nobody
 * listens.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { EventHub, type Hub } from "../Events.ts"
import type { Job } from "../Job.ts"
import { awaitAnnouncement, closeGate, openGate, publishFirst } from "./eventOrder.ts"
import { jobEvent } from "./jobEvent.ts"

/** Publishes an insert's `inserted` events once its jobs are committed. */
export type PublishInserted = (jobs: ReadonlyArray<Job>) => Effect.Effect<void>

const nobodyListens: PublishInserted = () => Effect.void

/**
 * Runs an insert, given the function that publishes its `inserted` events
 * (the insert calls it once its statements have returned). On the path of
 * every insert: one lookup of the hub when nobody listens, no generator.
 *
 * Inside a transaction the ids are known before the COMMIT: only the events
 * of those jobs wait. So also for an insert that `announcesInTransaction`:
 * one that calls `publish` inside a transaction of its own (Chain's, a
 * workflow's). Otherwise the reply that brings the ids is what may be late:
 * the call opens a gate that every event waits behind.
 */
export const withInsertedEvents = <A, E, R>(
  sql: SqlClient,
  insert: (publish: PublishInserted) => Effect.Effect<A, E, R>,
  options?: { readonly announcesInTransaction?: boolean }
): Effect.Effect<A, E, R> =>
  EventHub.use((hub) =>
    hub === undefined || hub.subscribers === 0 ? insert(nobodyListens) : Effect.contextWith((context: Context.Context<never>) => {
      if (options?.announcesInTransaction === true || Context.getOption(context, sql.transactionService)._tag === "Some") {
        return insert((jobs) =>
          Effect.andThen(
            Effect.sync(() => awaitAnnouncement(hub.order, jobs.map((job) => job.id))),
            sql.afterCommit(announce(hub, jobs))
          )
        )
      }
      // Opened and given its closer in one step: an interruption in between would leave it open for good.
      return Effect.uninterruptibleMask((restore) => {
        const gate = openGate(hub.order)
        const close = Effect.sync(() => closeGate(hub.order, gate))
        // Closed once its events are out (after the COMMIT, should it announce inside a transaction of
        // ours), or however the call ends.
        return Effect.ensuring(restore(insert((jobs) => sql.afterCommit(Effect.andThen(announce(hub, jobs), close)))), close)
      })
    })
  )

/** Publishes the `inserted` events of `jobs`, and then what waited for them. */
const announce = (hub: Hub, jobs: ReadonlyArray<Job>): Effect.Effect<void> =>
  jobs.length === 0 ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (millis) =>
    Effect.sync(() => {
      const at = new Date(millis)
      publishFirst(hub.order, jobs.map((job) => jobEvent("inserted", job, job.meta["workflow"], at)))
    }))
