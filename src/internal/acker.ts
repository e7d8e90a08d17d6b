/**
 * Writes job outcomes. Outcomes queue up while a write is in flight and go
 * out together in the next statement, so under load one round trip acks many
 * jobs with no added latency when idle. A failed write is retried with a
 * growing, jittered delay, never dropped; when a batch fails for a reason
 * other than the connection, its rows are retried one by one so one bad row
 * cannot hold back the rest.
 */
import { Cause, Deferred, Effect, Queue, Random, type Scope } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { now } from "../ObanClock.ts"
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

const retryDelay = (failures: number) =>
  Effect.map(Random.nextBetween(0.8, 1.2), (factor) => Math.min(5_000, 20 * 2 ** Math.min(failures, 12)) * factor)

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

    const write = (rows: ReadonlyArray<AckRow>) =>
      Effect.flatMap(now(options.sql), (time) => ackJobs(options.sql, options.prefix, time, options.node, rows))

    /** Writes `rows`, retrying until it succeeds. */
    const writeUntilDone = (rows: ReadonlyArray<AckRow>): Effect.Effect<void> =>
      Effect.gen(function*() {
        let failures = 0
        while (true) {
          const result = yield* Effect.exit(write(rows))
          if (result._tag === "Success") return
          failures++
          const cause = result.cause
          const error = Cause.findError(cause)
          const connection = error._tag === "Success" && isConnectionProblem(error.success)
          if (rows.length > 1 && !connection) {
            yield* Effect.logWarning(`ack of ${rows.length} jobs failed; retrying them one by one`).pipe(
              Effect.annotateLogs({ cause: Cause.pretty(cause) })
            )
            yield* Effect.forEach(rows, (one) => writeUntilDone([one]), { discard: true })
            return
          }
          const delay = yield* retryDelay(failures)
          yield* Effect.logWarning(`ack of ${rows.length} job(s) failed (${failures}x); retrying in ${Math.round(delay)} ms`)
            .pipe(Effect.annotateLogs({ cause: Cause.pretty(cause), jobIds: rows.map((r) => r.id).join(",") }))
          yield* Effect.sleep(delay)
        }
      })

    const loop = Effect.forever(Effect.gen(function*() {
      const rows = yield* Queue.takeBetween(inbox, 1, maxBatch)
      yield* writeUntilDone(rows)
      pending -= rows.length
      if (pending === 0 && idle.length > 0) {
        const waiting = idle
        idle = []
        yield* Effect.forEach(waiting, (deferred) => Deferred.succeed(deferred, undefined), { discard: true })
      }
    }))
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
