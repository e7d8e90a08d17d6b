/**
 * A job's recorded result read back by id, decoded with its worker's result
 * schema: `Oban.getResult`, for a job that is no workflow step (a step's
 * dependents read theirs with `Workflow.results`).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidResultError, type MigrationError } from "../Errors.ts"
import type { Job } from "../Job.ts"
import type { ResultWorker } from "../Workflow.ts"
import { parseJsonOrNull } from "./jsonParse.ts"
import { withPrefix } from "./notMigrated.ts"
import { getJobWithResult, getResultText } from "./sql/jobs.ts"

/** The codec of `worker`'s results; `InvalidResultError` (`missing`) when it records none. */
export const resultCodecOf = <O>(
  worker: ResultWorker<O>,
  jobId: number
): Effect.Effect<Schema.Codec<O, Schema.Json>, InvalidResultError> =>
  worker.resultJson !== undefined ? Effect.succeed(worker.resultJson) : Effect.fail(
    new InvalidResultError({
      worker: worker.name,
      jobId,
      reason: "missing",
      message: `worker ${worker.name} records no result (give it a result schema)`
    })
  )

/** A stored result (JSON text) decoded by `codec`; `InvalidResultError` (`decode`) naming `what` when it does not. */
export const decodeResult = <O>(
  codec: Schema.Codec<O, Schema.Json>,
  worker: ResultWorker<O>,
  jobId: number,
  text: string | null,
  what: string
): Effect.Effect<O, InvalidResultError> =>
  Effect.mapError(Schema.decodeUnknownEffect(codec)(parseJsonOrNull(text)), (error) =>
    new InvalidResultError({ worker: worker.name, jobId, reason: "decode", message: `${what} does not decode: ${error.message}` }))

/** The result of job `id`, if it completed with one (see `Oban.getResult`). */
export const readResult = <O>(
  sql: SqlClient,
  prefix: string,
  id: number,
  worker: ResultWorker<O>
): Effect.Effect<Option.Option<O>, InvalidResultError | SqlError> =>
  Effect.gen(function*() {
    const codec = yield* resultCodecOf(worker, id)
    const row = yield* getResultText(sql, prefix, id)
    if (row === undefined) return Option.none()
    if (row.worker !== worker.name) {
      return yield* new InvalidResultError({
        worker: worker.name,
        jobId: id,
        reason: "missing",
        message: `job ${id} is run by ${row.worker}, not ${worker.name}`
      })
    }
    if (row.state !== "completed" || row.result === null) return Option.none()
    return Option.some(yield* decodeResult(codec, worker, id, row.result, `the result of job ${id}`))
  })

/**
 * Job `id` and what it recorded as its result, as stored (JSON), in one statement: for the CLI's
 * `jobs show` and the dashboard, which know no worker's schema. None when there is no such job.
 */
export const jobWithResult = (
  id: number
): Effect.Effect<Option.Option<{ readonly job: Job; readonly result: Option.Option<unknown> }>, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) =>
    Effect.map(getJobWithResult(sql, prefix, id), (found) =>
      found === undefined
        ? Option.none()
        : Option.some({
          job: found.job,
          result: found.result === null ? Option.none() : Option.some(parseJsonOrNull(found.result))
        })))
