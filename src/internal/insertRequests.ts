/**
 * The insert path behind `Oban.insert` and `Oban.insertAll`: check and
 * encode the requests, write them, wake their queues after commit, publish
 * `inserted` events, run them inline under the testing kit, and return the
 * jobs typed by their workers.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "../Config.ts"
import { InvalidJobError, type MigrationError } from "../Errors.ts"
import type { Inserted } from "../Oban.ts"
import { now } from "../ObanClock.ts"
import type * as Worker from "../Worker.ts"
import { type EncodedRequest, encodeRequests } from "./encodeRequest.ts"
import { InlineRunner } from "./inline.ts"
import { insertEncoded } from "./insertEncoded.ts"
import { publishInserted } from "./insertedEvents.ts"
import { orNotMigrated } from "./notMigrated.ts"
import { currentTraceparent } from "./telemetry.ts"
import { wakeAfterCommit } from "./waker.ts"

const identity = (position: number): number => position
const noIndex = (): undefined => undefined

export const insertRequests = (
  list: ReadonlyArray<Worker.JobRequest>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError | MigrationError | SqlError, SqlClient> => {
  if (list.length === 0) return Effect.succeed([])
  return Effect.gen(function*() {
    const settings = yield* Settings
    // The insert span travels with the jobs, so their perform spans continue this trace.
    const traceparent = yield* currentTraceparent
    const encoded = yield* encodeRequests(list, settings, traceparent, indexed ? identity : noIndex)
    const sql = yield* SqlClient
    const time = yield* now(sql)
    const inserting = Effect.flatMap(
      insertEncoded(sql, settings.prefix, time, encoded).pipe(orNotMigrated(settings.prefix)),
      ({ jobs, wake }) => Effect.map(withRequestArgs(list, encoded, jobs, indexed), (typed) => ({ jobs: typed, wake }))
    )
    // A unique job's stored args may no longer decode; then nothing of the call may stay written.
    // One unique request that replaces nothing writes nothing on a conflict, so it needs no
    // transaction of its own (which would cost a second durable commit for its wake-up).
    const { jobs, wake } = yield* (mayWriteBeforeDecoding(encoded) ? sql.withTransaction(inserting) : inserting)
    yield* wakeAfterCommit(sql, settings.prefix, wake)
    // A conflict inserted nothing: no event, and nothing for the inline runner.
    const fresh = hasConflict(jobs) ? jobs.filter((job) => !job.conflict) : jobs
    yield* publishInserted(sql, fresh)
    const inline = yield* InlineRunner
    if (inline !== undefined) yield* inline(fresh)
    return jobs
  }).pipe(Effect.withSpan("oban.insert", { kind: "producer", attributes: { "oban.jobs": list.length } }, {
    captureStackTrace: false
  }))
}

/**
 * Whether the call needs a transaction of its own: a unique request among
 * others takes several statements, and a failure to decode a unique job's
 * stored args could come after the call wrote something. (`insertEncoded`
 * relies on this for calls with several unique or mixed requests.)
 */
const mayWriteBeforeDecoding = (encoded: ReadonlyArray<EncodedRequest>): boolean => {
  if (encoded.length === 1) return (encoded[0]!.unique?.replace.length ?? 0) > 0
  for (const request of encoded) if (request.unique !== undefined) return true
  return false
}

/**
 * The jobs with the args of their worker's type. An ordinary job has them
 * already (its request's own); a unique job's are the stored ones (an
 * existing job's, or replaced by a later request of the same call), decoded
 * with the request's worker schema. When those no longer decode (the schema
 * changed since), the call fails with `InvalidJobError` on `args`.
 */
const withRequestArgs = (
  list: ReadonlyArray<Worker.JobRequest>,
  encoded: ReadonlyArray<{ readonly unique: unknown }>,
  jobs: ReadonlyArray<Inserted>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError> => {
  const stored: Array<number> = []
  for (let position = 0; position < encoded.length; position++) {
    if (encoded[position]!.unique !== undefined) stored.push(position)
  }
  if (stored.length === 0) return Effect.succeed(jobs)
  const typed = [...jobs]
  return Effect.as(
    Effect.forEach(stored, (position) => {
      const request = list[position]!
      const job = typed[position]!
      return request.decodeArgs(job.args).pipe(
        Effect.map((args) => {
          typed[position] = { ...job, args }
        }),
        Effect.mapError((error) =>
          new InvalidJobError({
            worker: request.worker,
            field: "args",
            message: `the stored args of job ${job.id}, which this request matches, no longer decode with the worker's schema: ${error.message}`,
            ...(indexed ? { index: position } : {})
          })
        )
      )
    }, { discard: true }),
    typed
  )
}

const hasConflict = (jobs: ReadonlyArray<Inserted>): boolean => {
  for (const job of jobs) if (job.conflict) return true
  return false
}

