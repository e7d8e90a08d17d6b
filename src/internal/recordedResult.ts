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
import type { ResultWorker } from "../Workflow.ts"
import { parseJsonOrNull } from "./jsonParse.ts"
import { withPrefix } from "./notMigrated.ts"
import { getResultText } from "./sql/jobs.ts"

/** The result of job `id`, if it completed with one (see `Oban.getResult`). */
export const readResult = <O>(
  sql: SqlClient,
  prefix: string,
  id: number,
  worker: ResultWorker<O>
): Effect.Effect<Option.Option<O>, InvalidResultError | SqlError> =>
  Effect.gen(function*() {
    const missing = (message: string) => new InvalidResultError({ worker: worker.name, jobId: id, reason: "missing", message })
    const codec = worker.resultJson
    if (codec === undefined) return yield* missing(`worker ${worker.name} records no result (give it a result schema)`)
    const row = yield* getResultText(sql, prefix, id)
    if (row === undefined) return Option.none()
    if (row.worker !== worker.name) return yield* missing(`job ${id} is run by ${row.worker}, not ${worker.name}`)
    if (row.state !== "completed" || row.result === null) return Option.none()
    const value = yield* Effect.mapError(Schema.decodeUnknownEffect(codec)(parseJsonOrNull(row.result)), (error) =>
      new InvalidResultError({
        worker: worker.name,
        jobId: id,
        reason: "decode",
        message: `the result of job ${id} does not decode: ${error.message}`
      }))
    return Option.some(value)
  })

/**
 * What job `id` recorded as its result, as stored (JSON), for the CLI's `jobs show` and the dashboard,
 * which know no worker's schema; none when the job has none or does not exist.
 */
export const storedResult = (id: number): Effect.Effect<Option.Option<unknown>, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) =>
    Effect.map(getResultText(sql, prefix, id), (row) =>
      row === undefined || row.result === null ? Option.none() : Option.some(parseJsonOrNull(row.result))))
