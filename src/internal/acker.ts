/**
 * Writes job outcomes. Outcomes queue up while a write is in flight and go
 * out together in the next statement, so under load one round trip acks many
 * jobs with no added latency when idle. A write that fails for want of a
 * connection is retried with a growing, jittered delay, never dropped. When
 * the database refuses a batch itself, its rows are tried one by one, and a
 * row refused on its own is retried in the background, so one bad row cannot
 * hold back the rest; after `refusalsBeforeFallback` refusals it is written
 * as a minimal failure instead (and, refused again, as a failure with no
 * `errors` entry), so no job stays `executing` on a live node because of
 * its outcome. Acks that match no row (a re-sent or late ack) are logged.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Backoff from "../Backoff.ts"
import { now } from "../ObanClock.ts"
import { CurrentActivity } from "./activity.ts"
import { isServerUnavailable } from "./serverUnavailable.ts"
import { clean } from "./errorText.ts"
import { retryDelay } from "./retryDelay.ts"
import { withStatementTimeout } from "./statementTimeout.ts"
import { failAck } from "./sql/ackFallbacks.ts"
import { type AckRow, ackJobs, type StaleAck } from "./sql/acks.ts"
import { causeIfFirst, failureLine } from "./serverMessage.ts"
import { logged } from "./failureStreak.ts"

export interface Acker {
  readonly ack: (row: AckRow) => Effect.Effect<void>
  /** `ack`, synchronously (the executor's hot path). */
  readonly ackUnsafe: (row: AckRow) => void
  /** Waits until every outcome handed in so far is written. */
  readonly flush: Effect.Effect<void>
  /** Outcomes handed in and not yet written. */
  readonly pending: Effect.Effect<number>
  /** The jobs whose outcome is handed in and not yet written. */
  readonly pendingIdsUnsafe: () => ReadonlySet<number>
  /** Whether an outcome of the job is handed in and not yet written. */
  readonly pendingUnsafe: (jobId: number) => boolean
  /** Outcomes handed in and not yet written, synchronously. */
  readonly pendingCountUnsafe: () => number
  /** Completes once fewer than `bound` outcomes are unwritten. */
  readonly below: (bound: number) => Effect.Effect<void>
}

/** The most outcomes written by one statement; more wait for the next. */
const maxBatch = 500

const ackRetryDelay = (failures: number) => retryDelay(failures, { baseMillis: 20 })

/** How many times the database may refuse a row as it is before it is written as a minimal failure. */
export const refusalsBeforeFallback = 3

/**
 * Failures that say nothing about the row: the connection or the server is unavailable (a restart too), or
 * a deadline the network made us miss.
 */
const connectionProblem = (cause: Cause.Cause<SqlError>): boolean => {
  const error = Cause.findError(cause)
  return error._tag === "Success" &&
    (isServerUnavailable(error.success) || error.success.reason._tag === "StatementTimeoutError")
}

/**
 * A row lock held by someone else (an open transaction that updated or
 * locked the job), or a serialization failure (a database whose default
 * isolation is repeatable read or serializable, where a job updated by
 * another transaction after the ack began cannot be written by it): the
 * outcome is fine and is written as it is by a later statement, never
 * replaced by a failure. A batch stopped by one is split, so only the
 * locked job waits.
 */
const contention = (cause: Cause.Cause<SqlError>): "lock" | "serialization" | undefined => {
  const error = Cause.findError(cause)
  if (error._tag !== "Success") return undefined
  const reason = error.success.reason._tag
  if (reason === "LockTimeoutError" || reason === "DeadlockError") return "lock"
  return reason === "SerializationError" ? "serialization" : undefined
}

const contendedBy = {
  lock: "its row locked by another transaction",
  serialization: "its row changed by another transaction meanwhile"
} as const

/** The longest an outcome write may take before it is retried on another connection. */
const ackTimeout = Duration.seconds(15)

/** The server's own words for a refusal (`SqlError.message` is generic), else the pretty cause. */
const refusalText = (cause: Cause.Cause<SqlError>): string => {
  const error = Cause.findError(cause)
  if (error._tag === "Success") {
    const inner = error.success.reason.cause
    if (Predicate.hasProperty(inner, "message") && typeof inner.message === "string") return inner.message
  }
  return Cause.pretty(cause)
}

/** The message of a minimal failure: what could not be written, and why. */
const fallbackMessage = (row: AckRow, refusal: string): string =>
  clean(
    `the outcome of attempt ${row.attempt} (${row.state}${row.error === null ? "" : `, ${row.error.kind}`}) ` +
      `could not be written and was replaced by this failure; the database said: ${refusal}`,
    2048
  )

/** How a refused row is written, from the row itself to the last resort. */
type Fallback = "row" | "minimal" | "bare"

/**
 * What a stale ack adds when a rescue took the job while it ran here: the node's heartbeats stopped for
 * longer than rescueAfter while it went on. A drill's 75 s CPU-bound job was rescued every attempt, ran to its
 * end here each time, and was discarded after its last one, with only "matched no row" to say why.
 */
const rescuedWhileRunning = ": a rescue took it while it ran here, as this node's heartbeats had stopped for longer " +
  "than rescueAfter (its process paused, or its event loop blocked: a CPU-bound job blocks it for as long as it " +
  "runs; run such workers with threads). It runs again, and a job that blocks that long is rescued on every attempt"

const logStale = (acks: ReadonlyArray<AckRow>, stale: ReadonlyArray<StaleAck>) =>
  Effect.forEach(stale, (miss) => {
    const ack = acks.find((row) => row.id === miss.id && row.claim === miss.claim)
    const now = miss.state === null
      ? "the job no longer exists"
      : `the job is ${miss.state}${miss.currentClaim !== null && miss.currentClaim !== miss.claim ? ` under claim ${miss.currentClaim}` : ""}`
    const message = `ack of job ${miss.id} (${ack?.state ?? "outcome"}, claim ${miss.claim}) matched no row: ${now}; nothing was changed` +
      (miss.rescued ? rescuedWhileRunning : "")
    // A job cancelled while it ran, with its row finished at once (its producer was late, or a node of an earlier
    // build cancelled it): its outcome comes after the cancel wrote the row, either as cancelled (the executor's,
    // after the fact) or as whatever the attempt did before the interrupt reached it. Expected; unlike a cancel
    // that a rescue ended (a cancel that was pending): this node's outcome was lost.
    const expected = miss.state === "cancelled" && miss.currentClaim === miss.claim && !miss.rescued
    return (expected ? Effect.logDebug(message) : Effect.logWarning(message)).pipe(Effect.annotateLogs({ jobId: miss.id }))
  }, { discard: true })

/** Splits rows into runs in which no job id repeats, keeping their order per job. */
const byDistinctId = (rows: ReadonlyArray<AckRow>): ReadonlyArray<ReadonlyArray<AckRow>> => {
  const groups: Array<Array<AckRow>> = []
  const seen: Array<Set<number>> = []
  for (const row of rows) {
    let index = 0
    while (index < groups.length && seen[index]!.has(row.id)) index++
    if (index === groups.length) {
      groups.push([])
      seen.push(new Set())
    }
    groups[index]!.push(row)
    seen[index]!.add(row.id)
  }
  return groups
}

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
  /** Delete completed jobs instead of marking them `completed`. */
  readonly deleteCompleted?: boolean | undefined
}): Effect.Effect<Acker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const inbox = yield* Queue.unbounded<AckRow>()
    let pending = 0
    // Job id -> outcomes of it not yet written (a re-sent outcome may share an id).
    const unwritten = new Map<number, number>()
    let idle: Array<Deferred.Deferred<void>> = []
    // Waiting for the unwritten outcomes to fall below a bound (`below`).
    let roomWaiters: Array<{ readonly bound: number; readonly deferred: Deferred.Deferred<void> }> = []

    // Rows refused alone are retried in fibers of a scope of their own, made here, before the caller
    // adds its flush at shutdown: that scope closes after the flush, so the retries go on while it waits
    // for them. Forked into the caller's scope, they were interrupted as shutdown began (a closed scope
    // runs nothing new, and fibers forked into it late go first), and their jobs were left executing.
    const retries = yield* Scope.fork(yield* Effect.scope)
    // An outcome not yet written is work in flight for ObanTest.advance.
    const activity = yield* CurrentActivity
    const writeDistinct = (rows: ReadonlyArray<AckRow>) =>
      Effect.flatMap(now(options.sql), (time) =>
        ackJobs(options.sql, options.prefix, time, options.node, rows, { deleteCompleted: options.deleteCompleted ?? false })
      ).pipe(
        withStatementTimeout({ timeout: ackTimeout, operation: "ack" }),
        Effect.tap((result) => logStale(rows, result.stale))
      )
    /** Writes rows in statements with one outcome per job each (a job may be acked twice only in odd cases). */
    const write = (rows: ReadonlyArray<AckRow>) => Effect.forEach(byDistinctId(rows), writeDistinct, { discard: true })

    /** Writes a refused row as a failure: with a short `errors` entry, or (`bare`) none. */
    const writeFallback = (row: AckRow, fallback: "minimal" | "bare", refusal: string) =>
      Effect.gen(function*() {
        const delay = row.state === "retryable" && row.delay_ms !== null
          ? row.delay_ms
          : Duration.toMillis(yield* Backoff.delayFor(undefined, row.attempt, Math.max(row.attempt + 1, 20)))
        const written = yield* failAck(options.sql, options.prefix, yield* now(options.sql), options.node, {
          id: row.id,
          claim: row.claim,
          attempt: row.attempt,
          delayMillis: delay,
          message: fallbackMessage(row, refusal),
          withError: fallback === "minimal"
        })
        const message = written
          ? `ack of job ${row.id} refused by the database; written as a failure instead`
          : `ack of job ${row.id} refused by the database, and the job no longer runs under claim ${row.claim}; nothing was changed`
        yield* Effect.logError(message).pipe(
          Effect.annotateLogs({ jobId: row.id, refusal, withErrorEntry: fallback === "minimal" })
        )
      })

    /** Counts rows as written and wakes `flush` when nothing is left. */
    const settle = (rows: ReadonlyArray<AckRow>) =>
      Effect.suspend(() => {
        pending -= rows.length
        activity.addUnsafe(-rows.length)
        for (const row of rows) {
          const left = (unwritten.get(row.id) ?? 1) - 1
          if (left <= 0) unwritten.delete(row.id)
          else unwritten.set(row.id, left)
        }
        if (roomWaiters.length > 0) {
          const ready = roomWaiters.filter((waiter) => pending < waiter.bound)
          if (ready.length > 0) {
            roomWaiters = roomWaiters.filter((waiter) => pending >= waiter.bound)
            for (const waiter of ready) Deferred.doneUnsafe(waiter.deferred, Exit.void)
          }
        }
        if (pending > 0 || idle.length === 0) return Effect.void
        const waiting = idle
        idle = []
        return Effect.forEach(waiting, (deferred) => Deferred.succeed(deferred, undefined), { discard: true })
      })

    /**
     * Retries one row the database refused, away from the main loop: as it
     * is until it was refused `refusalsBeforeFallback` times, then as a
     * minimal failure, then as a failure without an `errors` entry. Only
     * refusals count; a lost connection is waited out at every step. When
     * even the last resort is refused, the row is given up (logged as an
     * error) rather than hold `flush` and shutdown forever.
     */
    const retryAlone = (row: AckRow, firstRefusal: Cause.Cause<SqlError>): Effect.Effect<void> =>
      Effect.gen(function*() {
        let refusals = connectionProblem(firstRefusal) || contention(firstRefusal) !== undefined ? 0 : 1
        let failures = 1
        let refusal = refusalText(firstRefusal)
        let fallback: Fallback = "row"
        while (true) {
          yield* Effect.sleep(yield* ackRetryDelay(failures))
          const result = yield* Effect.exit(fallback === "row" ? write([row]) : writeFallback(row, fallback, refusal))
          if (Exit.isSuccess(result)) return yield* settle([row])
          failures++
          const contended = contention(result.cause)
          if (contended !== undefined || connectionProblem(result.cause)) {
            // The server's words only: this repeats while the lock is held or the database is away.
            yield* Effect.logWarning(
              `ack of job ${row.id} failed (${failures}x${contended === undefined ? "" : `, ${contendedBy[contended]}`}); ` +
                `retrying in the background`
            ).pipe(
              Effect.annotateLogs({ cause: refusalText(result.cause) })
            )
            continue
          }
          refusals++
          if (fallback === "row") refusal = refusalText(result.cause)
          yield* Effect.logWarning(`ack of job ${row.id} refused (${refusals}x, as ${fallback})`).pipe(
            Effect.annotateLogs({ cause: Cause.pretty(result.cause) })
          )
          if (fallback === "bare") {
            yield* Effect.logError(`ack of job ${row.id} refused even as a bare failure; giving up on it`).pipe(
              Effect.annotateLogs({ jobId: row.id, cause: Cause.pretty(result.cause) })
            )
            return yield* settle([row])
          }
          if (fallback === "minimal") fallback = "bare"
          else if (refusals >= refusalsBeforeFallback) fallback = "minimal"
        }
      })

    /**
     * Writes a batch, retrying while the connection is the problem. When the
     * database refuses the batch itself, each row is tried once on its own and
     * the ones refused again are retried in the background, so one bad row
     * holds back neither its batch nor the ones after it.
     */
    const writeBatch = (rows: ReadonlyArray<AckRow>): Effect.Effect<void> =>
      Effect.gen(function*() {
        let failures = 0
        while (true) {
          const result = yield* Effect.exit(write(rows))
          if (result._tag === "Success") {
            // As every retrying loop says it recovers (see failureStreak.ts).
            if (failures > 0) yield* Effect.logInfo(`outcome writes get through again, after ${failures} failed`)
            return yield* settle(rows)
          }
          failures++
          if (!connectionProblem(result.cause)) {
            const contended = contention(result.cause)
            yield* Effect.logWarning(
              contended === "lock"
                ? `ack of ${rows.length} job(s) waited for a row lock another transaction holds (one that updated ` +
                  `or locked a job of the batch, or inserts the same unique key, and has not ended); trying them one by one`
                : contended === "serialization"
                ? `ack of ${rows.length} job(s) could not serialize (another transaction changed a job of the batch ` +
                  `meanwhile, on a database whose isolation is repeatable read or serializable); trying them one by one`
                : `ack of ${rows.length} job(s) refused; trying them one by one`
            ).pipe(Effect.annotateLogs({ cause: refusalText(result.cause) }))
            for (const row of rows) {
              const single = rows.length === 1 ? result : yield* Effect.exit(write([row]))
              if (single._tag === "Success") yield* settle([row])
              else yield* Effect.forkIn(retryAlone(row, single.cause), retries)
            }
            return
          }
          const delay = yield* ackRetryDelay(failures)
          // As every retrying loop's (see failureStreak.ts): failures 1-3, then 4, 8, 16, ..., the cause the first time.
          if (logged(failures)) {
            const [cause] = causeIfFirst(failures, result.cause)
            yield* Effect.logWarning(
              `ack of ${rows.length} job(s) failed (${failures}x); retrying in ${Math.round(delay)} ms: ${failureLine(result.cause)}`
            ).pipe(Effect.annotateLogs({ ...(cause === undefined ? {} : { cause }), jobIds: rows.map((r) => r.id).join(",") }))
          }
          yield* Effect.sleep(delay)
        }
      })

    const loop = Effect.forever(Effect.flatMap(Queue.takeBetween(inbox, 1, maxBatch), writeBatch))
    yield* Effect.forkScoped(loop)

    const ackUnsafe = (row: AckRow): void => {
      pending++
      activity.addUnsafe(1)
      unwritten.set(row.id, (unwritten.get(row.id) ?? 0) + 1)
      Queue.offerUnsafe(inbox, row)
    }

    return {
      ack: (row) => Effect.sync(() => ackUnsafe(row)),
      ackUnsafe,
      flush: Effect.suspend(() => {
        if (pending === 0) return Effect.void
        return Effect.flatMap(Deferred.make<void>(), (deferred) => {
          idle.push(deferred)
          return Deferred.await(deferred)
        })
      }),
      pending: Effect.sync(() => pending),
      pendingIdsUnsafe: () => new Set(unwritten.keys()),
      pendingUnsafe: (jobId) => unwritten.has(jobId),
      pendingCountUnsafe: () => pending,
      below: (bound) =>
        Effect.suspend(() => {
          if (pending < bound) return Effect.void
          const deferred = Deferred.makeUnsafe<void>()
          roomWaiters.push({ bound, deferred })
          return Deferred.await(deferred)
        })
    }
  })
