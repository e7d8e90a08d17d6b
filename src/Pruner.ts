/**
 * Deletes old finished jobs (leader only): completed, cancelled and discarded
 * jobs whose final timestamp is older than `maxAge`. Each statement deletes at
 * most `batchSize` rows and a run at most `maxBatches` statements, so a large
 * backlog is worked off over several ticks and never holds long locks.
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { now } from "./ObanClock.ts"
import { pruneJobs } from "./internal/sql/maintenance.ts"

/**
 * @since 0.1.0
 */
export const defaults = {
  maxAge: Duration.days(7),
  interval: Duration.seconds(30),
  batchSize: 10_000,
  maxBatches: 10
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
): Effect.Effect<Result, SqlError> =>
  Effect.gen(function*() {
    const maxAge = Duration.toMillis(options.maxAge ?? defaults.maxAge)
    const batchSize = options.batchSize ?? defaults.batchSize
    const maxBatches = options.maxBatches ?? defaults.maxBatches
    let deleted = 0
    let batches = 0
    while (batches < maxBatches) {
      const n = yield* pruneJobs(options.sql, options.prefix, yield* now(options.sql), maxAge, batchSize)
      batches++
      deleted += n
      if (n < batchSize) break
    }
    return { deleted, batches }
  })
