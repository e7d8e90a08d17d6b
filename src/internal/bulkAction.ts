/**
 * A bulk action as the public functions run it: the filter and options
 * checked, then the batches (see `bulk.ts`). `Oban`'s service passes
 * `onBatch` to stop the cancelled jobs it runs itself.
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "../Config.ts"
import { InvalidFilterError, type MigrationError } from "../Errors.ts"
import { type BulkOutcome, runBulk } from "./bulk.ts"
import { type Filter, filterCondition, matchesEveryJob, validateFilter } from "./jobFilter.ts"
import { orNotMigrated } from "./notMigrated.ts"
import type { BulkAction, ChangedRow } from "./sql/bulkJobs.ts"

/**
 * @since 0.1.0
 */
export interface BulkOptions {
  /** Jobs per batch, each batch its own short transaction: 1 to 10,000. Default 1000. */
  readonly batchSize?: number | undefined
  /**
   * `true` to act on every job with a filter that narrows nothing (`{}`, or
   * only parts such as `meta: {}`). Without it such a filter is refused
   * with `InvalidFilterError`: a filter built from values that turned out
   * undefined would otherwise cancel, retry or delete the whole table.
   */
  readonly all?: boolean | undefined
}

export const bulk = (
  action: BulkAction,
  input: Filter,
  options: BulkOptions = {},
  onBatch?: (rows: ReadonlyArray<ChangedRow>) => Effect.Effect<void>
): Effect.Effect<BulkOutcome, InvalidFilterError | MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const filter = yield* validateFilter(input)
    if (options.all !== true && matchesEveryJob(filter)) {
      return yield* new InvalidFilterError({
        field: "filter",
        message: `the filter narrows nothing; pass { all: true } in the options to ${action._tag} every job`
      })
    }
    const batchSize = options.batchSize ?? 1000
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
      return yield* new InvalidFilterError({
        field: "batchSize",
        message: `batchSize must be an integer from 1 to 10000, got ${batchSize}`
      })
    }
    if (action._tag === "reschedule" && Number.isNaN(action.at.getTime())) {
      return yield* new InvalidFilterError({ field: "at", message: "not a valid date" })
    }
    const sql = plain(yield* SqlClient)
    const { prefix } = yield* Settings
    return yield* orNotMigrated(prefix)(
      runBulk(sql, prefix, { action, condition: filterCondition(sql, filter), batchSize, onBatch })
    )
  })
