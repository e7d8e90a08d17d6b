/**
 * Writes job outcomes. Outcomes queue up while a write is in flight and go
 * out together in the next statement, so under load one round trip acks many
 * jobs with no added latency when idle. A failed write is retried with a
 * growing, jittered delay, never dropped; when the database refuses a batch
 * itself, its rows are tried one by one, and a row refused on its own is
 * retried in the background, so one bad row cannot hold back the rest.
 */
import { Cause, Deferred, Effect, Queue, type Scope } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { now } from "../ObanClock.ts"
import { retryDelay } from "./retryDelay.ts"
import { type AckRow, ackJobs } from "./sql/jobs.ts"

export interface Acker {
  readonly ack: (row: AckRow) => Effect.Effect<void>
  /** Waits until every outcome handed in so far is written. */
  readonly flush: Effect.Effect<void>
  /** Outcomes handed in and not yet written. */
  readonly pending: Effect.Effect<number>
}

/** The most outcomes written by one statement; more wait for the next. */
const maxBatch = 500

const ackRetryDelay = (failures: number) => retryDelay(failures, { baseMillis: 20 })

const isConnectionProblem = (error: SqlError): boolean => error.reason._tag === "ConnectionError"

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
}): Effect.Effect<Acker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const inbox = yield* Queue.unbounded<AckRow>()
    let pending = 0
    let idle: Array<Deferred.Deferred<void>> = []

    const scope = yield* Effect.scope
    const write = (rows: ReadonlyArray<AckRow>) =>
      Effect.flatMap(now(options.sql), (time) => ackJobs(options.sql, options.prefix, time, options.node, rows))

    /** Counts rows as written and wakes `flush` when nothing is left. */
    const settle = (n: number) =>
      Effect.suspend(() => {
        pending -= n
        if (pending > 0 || idle.length === 0) return Effect.void
        const waiting = idle
        idle = []
        return Effect.forEach(waiting, (deferred) => Deferred.succeed(deferred, undefined), { discard: true })
      })

    /** Retries one row the database refused until it is written, away from the main loop. */
    const retryAlone = (row: AckRow): Effect.Effect<void> =>
      Effect.gen(function*() {
        let failures = 1
        while (true) {
          const delay = yield* ackRetryDelay(failures)
          yield* Effect.sleep(delay)
          const result = yield* Effect.exit(write([row]))
          if (result._tag === "Success") return yield* settle(1)
          failures++
          yield* Effect.logWarning(`ack of job ${row.id} failed (${failures}x); retrying in the background`).pipe(
            Effect.annotateLogs({ cause: Cause.pretty(result.cause) })
          )
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
          if (result._tag === "Success") return yield* settle(rows.length)
          failures++
          const error = Cause.findError(result.cause)
          const connection = error._tag === "Success" && isConnectionProblem(error.success)
          if (!connection) {
            yield* Effect.logWarning(`ack of ${rows.length} job(s) refused; trying them one by one`).pipe(
              Effect.annotateLogs({ cause: Cause.pretty(result.cause) })
            )
            for (const row of rows) {
              const single = rows.length === 1 ? result : yield* Effect.exit(write([row]))
              if (single._tag === "Success") yield* settle(1)
              else yield* Effect.forkIn(retryAlone(row), scope)
            }
            return
          }
          const delay = yield* ackRetryDelay(failures)
          yield* Effect.logWarning(`ack of ${rows.length} job(s) failed (${failures}x); retrying in ${Math.round(delay)} ms`)
            .pipe(Effect.annotateLogs({ cause: Cause.pretty(result.cause), jobIds: rows.map((r) => r.id).join(",") }))
          yield* Effect.sleep(delay)
        }
      })

    const loop = Effect.forever(Effect.flatMap(Queue.takeBetween(inbox, 1, maxBatch), writeBatch))
    yield* Effect.forkScoped(loop)

    return {
      ack: (row) =>
        Effect.suspend(() => {
          pending++
          return Queue.offer(inbox, row)
        }),
      flush: Effect.suspend(() => {
        if (pending === 0) return Effect.void
        return Effect.flatMap(Deferred.make<void>(), (deferred) => {
          idle.push(deferred)
          return Deferred.await(deferred)
        })
      }),
      pending: Effect.sync(() => pending)
    }
  })
