/**
 * Wakes the nodes running a queue after jobs were inserted into it.
 *
 * NOTIFY inside the inserting transaction makes PostgreSQL hold a global lock
 * from that transaction's commit until it ends, which serialises every
 * concurrent inserting transaction. Instead, once the inserting transaction
 * has committed (never after a rollback), the queue names go to a per-client
 * waker that sends them in one `pg_notify` statement, coalescing whatever
 * arrives while a statement is in flight. The caller waits for the statement
 * that carries its queues (one round trip after its commit, two when another
 * was in flight), so a program that inserts and then ends (a script, a
 * serverless function) does not close its pool on a wake-up not yet sent.
 * Polling stays the safety net: a lost wake-up only delays a job until the
 * next poll.
 *
 * An insert outside any transaction that is the only one in flight on its
 * client wakes its queues in its own statement instead: with no concurrent
 * committer to hold up, the global lock costs nothing, and one round trip
 * and one statement fewer matter most to a caller inserting one job at a
 * time.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { SqlClient } from "effect/sql/SqlClient"
import { channel } from "../Config.ts"
import { wakePayload } from "./sql/fragments.ts"
import { realSleep, withStatementTimeout } from "./statementTimeout.ts"
import { causeUnlessUnreached, failureLine } from "./serverMessage.ts"

interface Waker {
  readonly pending: Map<string, Set<string>>
  running: boolean
  /** Done when the statement that will carry what is pending now has been sent (or has failed). */
  next: Deferred.Deferred<void>
}

/** A wake-up that does not arrive in time is left to polling: the caller's commit is done. */
const wakeDeadlineMillis = 5_000

const wakers = new WeakMap<SqlClient, Waker>()

const flush = (sql: SqlClient, waker: Waker): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (waker.pending.size > 0) {
      const batch = [...waker.pending.entries()].flatMap(([prefix, queues]) =>
        [...queues].map((queue) => ({ channel: channel(prefix, "insert"), payload: wakePayload(queue) }))
      )
      waker.pending.clear()
      const sent = waker.next
      waker.next = Deferred.makeUnsafe<void>()
      // A wake-up needs no durability: its commit need not wait for the WAL flush.
      yield* sql`
        WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
        SELECT pg_notify(w.channel, w.payload)
        FROM relaxed, jsonb_to_recordset(${JSON.stringify(batch)}::jsonb) AS w(channel text, payload text)
      `.pipe(
        withStatementTimeout({ timeout: wakeDeadlineMillis, operation: "wake-up" }),
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void // the client is closing
            : Effect.logWarning(`could not send a wake-up; polling will find the jobs: ${failureLine(cause)}`, ...causeUnlessUnreached(cause))
        ),
        Effect.ensuring(Deferred.succeed(sent, undefined))
      )
    }
  }).pipe(Effect.ensuring(Effect.suspend(() => {
    waker.running = false
    // A wake-up registered after the loop's last look (the fiber may yield in between) waits for a
    // statement no flush would send: start the next flush rather than leave its caller waiting.
    return waker.pending.size === 0 ? Effect.void : startFlush(sql, waker)
  })))

const startFlush = (sql: SqlClient, waker: Waker): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (waker.running) return Effect.void
    waker.running = true
    // Detached: the flush sends every caller's wake-up, whichever caller started it.
    return Effect.asVoid(Effect.forkDetach(flush(sql, waker)))
  })

type Wakes = Array<readonly [prefix: string, queues: ReadonlyArray<string>]>

/**
 * Adds `wakes` to the client's next statement and waits until it has been
 * sent, at most `wakeDeadlineMillis` from now (polling covers the rest). Only the
 * wait can be interrupted: the commit is done, and the statement goes out
 * for every caller that joined it. Callbacks after commit run uninterruptibly,
 * so the wait is made interruptible explicitly.
 */
const sendAndWait = (sql: SqlClient, wakes: Wakes): Effect.Effect<void> =>
  Effect.suspend(() => {
    let waker = wakers.get(sql)
    if (waker === undefined) {
      waker = { pending: new Map(), running: false, next: Deferred.makeUnsafe<void>() }
      wakers.set(sql, waker)
    }
    for (const [prefix, queues] of wakes) {
      const set = waker.pending.get(prefix) ?? new Set<string>()
      for (const queue of queues) set.add(queue)
      waker.pending.set(prefix, set)
    }
    const sent = waker.next
    // Registered and started without a break: a flush is running whenever something is pending.
    // An interrupted wait ends quietly here; the caller's interruption takes effect as usual once the
    // commit's callbacks are done (Effect would log it as a failed callback otherwise).
    return Effect.andThen(
      Effect.uninterruptible(startFlush(sql, waker)),
      Effect.asVoid(Effect.exit(Effect.interruptible(Effect.raceFirst(Deferred.await(sent), realSleep(wakeDeadlineMillis)))))
    )
  })

/** What a transaction level has to wake, sent by one callback at its commit (keyed by the level). */
const perTransaction = new WeakMap<object, Wakes>()

/**
 * Registers a wake-up for `queues` of `prefix`, sent after the current
 * transaction commits (or right away outside one); the caller waits until it
 * has been sent. The inserts of one transaction share one wake-up statement
 * and one wait, at its commit.
 */
export const wakeAfterCommit = (sql: SqlClient, prefix: string, queues: ReadonlyArray<string>): Effect.Effect<void> =>
  queues.length === 0 ? Effect.void : Effect.contextWith((context: Context.Context<never>) => {
    const level = Option.getOrUndefined(Context.getOption(context, sql.transactionService))
    if (level === undefined) return sendAndWait(sql, [[prefix, queues]])
    const gathered = perTransaction.get(level)
    if (gathered !== undefined) {
      gathered.push([prefix, queues])
      return Effect.void
    }
    const wakes: Wakes = [[prefix, queues]]
    perTransaction.set(level, wakes)
    return sql.afterCommit(Effect.suspend(() => {
      perTransaction.delete(level)
      return sendAndWait(sql, wakes)
    }))
  })

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
