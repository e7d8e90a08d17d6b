/**
 * Wakes the nodes running a queue after jobs were inserted into it.
 *
 * NOTIFY inside the inserting transaction makes PostgreSQL hold a global lock
 * from that transaction's commit until it ends, which serialises every
 * concurrent inserting transaction. Instead, once the inserting transaction
 * has committed (never after a rollback), the queue names go to a per-client
 * waker that sends them in one `pg_notify` statement, coalescing whatever
 * arrives while a statement is in flight. Polling stays the safety net: a
 * lost wake-up only delays a job until the next poll.
 *
 * An insert outside any transaction that is the only one in flight on its
 * client wakes its queues in its own statement instead: with no concurrent
 * committer to hold up, the global lock costs nothing, and one round trip
 * and one statement fewer matter most to a caller inserting one job at a
 * time.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { SqlClient } from "effect/sql/SqlClient"
import { channel } from "../Config.ts"
import { wakePayload } from "./sql/fragments.ts"

interface Waker {
  readonly pending: Map<string, Set<string>>
  running: boolean
}

const wakers = new WeakMap<SqlClient, Waker>()

const flush = (sql: SqlClient, waker: Waker): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (waker.pending.size > 0) {
      const batch = [...waker.pending.entries()].flatMap(([prefix, queues]) =>
        [...queues].map((queue) => ({ channel: channel(prefix, "insert"), payload: wakePayload(queue) }))
      )
      waker.pending.clear()
      // A wake-up needs no durability: its commit need not wait for the WAL flush.
      yield* sql`
        WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
        SELECT pg_notify(w.channel, w.payload)
        FROM relaxed, jsonb_to_recordset(${JSON.stringify(batch)}::jsonb) AS w(channel text, payload text)
      `.pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void // the client is closing
            : Effect.logWarning("could not send a wake-up; polling will find the jobs", Cause.pretty(cause))
        )
      )
    }
  }).pipe(Effect.ensuring(Effect.sync(() => {
    waker.running = false
  })))

/**
 * Registers a wake-up for `queues` of `prefix`, sent after the current
 * transaction commits (or right away outside one).
 */
export const wakeAfterCommit = (sql: SqlClient, prefix: string, queues: ReadonlyArray<string>): Effect.Effect<void> =>
  queues.length === 0 ? Effect.void : sql.afterCommit(Effect.suspend(() => {
    let waker = wakers.get(sql)
    if (waker === undefined) {
      waker = { pending: new Map(), running: false }
      wakers.set(sql, waker)
    }
    const set = waker.pending.get(prefix) ?? new Set<string>()
    for (const queue of queues) set.add(queue)
    waker.pending.set(prefix, set)
    if (waker.running) return Effect.void
    waker.running = true
    return Effect.asVoid(Effect.forkDetach(flush(sql, waker)))
  }))

/** Inserts in flight per client. */
const inFlight = new WeakMap<SqlClient, { count: number }>()

/**
 * Runs `insert`, telling it whether to wake its queues in its own statement:
 * only outside a transaction (where the statement's end is its commit) and
 * when no other insert is in flight on `sql`. Otherwise the caller wakes
 * them with `wakeAfterCommit`.
 */
export const withInlineWake = <A, E, R>(
  sql: SqlClient,
  insert: (wake: boolean) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.contextWith((context: Context.Context<never>) => {
    if (Option.isSome(Context.getOption(context, sql.transactionService))) return insert(false)
    let counter = inFlight.get(sql)
    if (counter === undefined) {
      counter = { count: 0 }
      inFlight.set(sql, counter)
    }
    const state = counter
    const alone = state.count === 0
    state.count++
    return Effect.ensuring(
      insert(alone),
      Effect.sync(() => {
        state.count--
      })
    )
  })
