/**
 * The `inserted` events of an insert, published once the jobs exist for
 * everyone else: after the commit of the caller's transaction, never after a
 * rollback. While the insert is on its way, the node's other events wait for
 * it (see `eventOrder.ts`), so a job that starts here before the insert call
 * returns still has its `inserted` event first. Nothing is built when nobody
 * listens.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { SqlClient } from "effect/sql/SqlClient"
import { EventHub, type Hub } from "../Events.ts"
import type { Job } from "../Job.ts"
import { closeGate, type InsertGate, openGate, publishFirst, type TransactionLevel } from "./eventOrder.ts"
import { jobEvent } from "./jobEvent.ts"

/** Publishes an insert's `inserted` events once its jobs are committed. */
export type PublishInserted = (jobs: ReadonlyArray<Job>) => Effect.Effect<void>

const nobodyListens: PublishInserted = () => Effect.void

/**
 * Runs an insert, given the function that publishes its `inserted` events
 * (the insert calls it once its statements have returned). On the path of
 * every insert: one lookup of the hub when nobody listens, no generator.
 *
 * Inside a savepoint (a transaction nested in another) no gate is opened:
 * whether the outermost transaction has ended cannot be seen from there, and
 * a gate that blocked from the savepoint's end would hold every event while
 * the transaction around it goes on.
 */
export const withInsertedEvents = <A, E, R>(
  sql: SqlClient,
  insert: (publish: PublishInserted) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  EventHub.use((hub) =>
    hub === undefined || hub.subscribers === 0 ? insert(nobodyListens) : Effect.contextWith((context: Context.Context<never>) => {
      const level = Option.getOrUndefined(Context.getOption(context, sql.transactionService)) as TransactionLevel | undefined
      if (level !== undefined && level[1] > 0) return insert((jobs) => publishAfterCommit(sql, hub, undefined, jobs))
      // Opened and given its closer in one step: an interruption in between would leave it open for good.
      return Effect.uninterruptibleMask((restore) => {
        const gate = openGate(hub.order, hub.pubsub, level)
        // Outside a transaction the call's end is the commit's: the gate closes however it ends. Inside
        // one it stays open until the commit's callback has published (a rollback is dropped in time).
        return Effect.onExit(
          restore(insert((jobs) => publishAfterCommit(sql, hub, gate, jobs))),
          (exit) => level === undefined || exit._tag === "Failure" ? Effect.sync(() => closeGate(hub.order, hub.pubsub, gate)) : Effect.void
        )
      })
    })
  )

const publishAfterCommit = (sql: SqlClient, hub: Hub, gate: InsertGate | undefined, jobs: ReadonlyArray<Job>): Effect.Effect<void> =>
  sql.afterCommit(Effect.flatMap(Clock.currentTimeMillis, (millis) =>
    Effect.sync(() => {
      const at = new Date(millis)
      if (hub.subscribers > 0 && jobs.length > 0) {
        publishFirst(hub.pubsub, jobs.map((job) => jobEvent("inserted", job, job.meta["workflow"], at)))
      }
      if (gate !== undefined) closeGate(hub.order, hub.pubsub, gate)
    })
  ))
