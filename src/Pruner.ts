/**
 * Deletes old finished jobs (leader only): completed, cancelled and discarded
 * jobs whose final timestamp is older than `maxAge`, oldest first. Each
 * statement deletes at most `batchSize` rows and a run at most `maxBatches`
 * statements, so a large backlog is worked off over several ticks and never
 * holds long locks. A run with nothing due costs a few index lookups, however
 * large the table.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { validatePrefix } from "./Config.ts"
import type { InvalidConfigError, InvalidPrefixError } from "./Errors.ts"
import { duration, positiveInt } from "./internal/optionChecks.ts"
import { now } from "./ObanClock.ts"
import { pruneJobs } from "./internal/sql/maintenance.ts"
import { plain } from "./internal/sql/plain.ts"

/**
 * Finished jobs are kept 5 minutes (Oban keeps them 60 s; the extra minutes
 * keep a cron slot's job well past the one-minute cron catch-up window, so a
 * new leader never inserts a slot that already ran). Every 10 s a run deletes
 * up to 30 statements of 10,000 rows: at most 300,000 rows a tick, about
 * 25,000 jobs/s sustained, well above a 10,000 jobs/s load.
 *
 * @since 0.1.0
 */
export const defaults = {
  maxAge: Duration.minutes(5),
  interval: Duration.seconds(10),
  batchSize: 10_000,
  maxBatches: 30
} as const

/**
 * @since 0.1.0
 */
export interface Config {
  readonly maxAge: Duration.Duration
  readonly interval: Duration.Duration
  readonly batchSize: number
  readonly maxBatches: number
}

/**
 * What one run did.
 *
 * @since 0.1.0
 */
export interface Result {
  readonly deleted: number
  /** Statements run; `maxBatches` means more may be left for the next tick. */
  readonly batches: number
}

/**
 * Deletes up to `batchSize * maxBatches` old jobs.
 *
 * @since 0.1.0
 */
export const runOnce = (
  options: { readonly sql: SqlClient; readonly prefix: string } & Partial<Config>
): Effect.Effect<Result, SqlError | InvalidConfigError | InvalidPrefixError> =>
  Effect.gen(function*() {
    yield* validatePrefix(options.prefix)
    const maxAge = Duration.toMillis(yield* duration("maxAge", options.maxAge, defaults.maxAge, Duration.zero))
    const batchSize = yield* positiveInt("batchSize", options.batchSize, defaults.batchSize)
    const maxBatches = yield* positiveInt("maxBatches", options.maxBatches, defaults.maxBatches)
    const sql = plain(options.sql)
    let deleted = 0
    let batches = 0
    while (batches < maxBatches) {
      const n = yield* pruneJobs(sql, options.prefix, yield* now(sql), maxAge, batchSize)
      batches++
      deleted += n
      if (n < batchSize) break
    }
    return { deleted, batches }
  })
