/**
 * Moves scheduled and retryable jobs whose time has come to `available`, and
 * wakes their queues (NOTIFY for every node, and directly for this node's
 * producers). In a cluster only the leader stages, so nodes do not repeat
 * each other's work; while no node holds the lease, every node stages (the
 * statement skips rows another node is staging), so jobs start on time. `runOnce` stages in bounded batches and returns what it did;
 * `loop` runs it every `interval` and survives database errors.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { validatePrefix } from "./Config.ts"
import type { InvalidConfigError, InvalidPrefixError } from "./Errors.ts"
import { positiveInt } from "./internal/optionChecks.ts"
import { periodic } from "./internal/periodic.ts"
import { stageJobs } from "./internal/sql/jobs.ts"
import { now } from "./ObanClock.ts"
import { plain } from "./internal/sql/plain.ts"

/**
 * @since 0.1.0
 */
export const defaults = {
  interval: Duration.seconds(1),
  /** Jobs moved per statement; a larger backlog takes several statements. */
  batchSize: 5_000
} as const

/**
 * @since 0.1.0
 */
export interface Options {
  readonly sql: SqlClient
  readonly prefix: string
  readonly batchSize?: number | undefined
  /** Called with each queue that received jobs. */
  readonly onStaged?: ((queue: string) => Effect.Effect<void>) | undefined
}

/**
 * What one run did: jobs staged per queue, and in total.
 *
 * @since 0.1.0
 */
export interface Result {
  readonly staged: number
  readonly queues: Readonly<Record<string, number>>
}

/**
 * Stages every due job, a batch at a time.
 *
 * @since 0.1.0
 */
export const runOnce = (options: Options): Effect.Effect<Result, SqlError | InvalidConfigError | InvalidPrefixError> =>
  Effect.gen(function*() {
    yield* validatePrefix(options.prefix)
    const batchSize = yield* positiveInt("batchSize", options.batchSize, defaults.batchSize)
    const queues: Record<string, number> = {}
    const sql = plain(options.sql)
    let staged = 0
    while (true) {
      const rows = yield* stageJobs(sql, options.prefix, yield* now(sql), batchSize)
      let batch = 0
      for (const row of rows) {
        queues[row.queue] = (queues[row.queue] ?? 0) + row.count
        batch += row.count
        if (options.onStaged !== undefined) yield* options.onStaged(row.queue)
      }
      staged += batch
      if (batch < batchSize) return { staged, queues }
    }
  })

/**
 * Runs `runOnce` every `interval` while `when` holds (in a cluster: on the
 * leader, or on every node while no node leads). Failures are logged and the
 * next tick tries again.
 *
 * @since 0.1.0
 */
export const loop = (
  options: Options & { readonly interval: Duration.Duration; readonly when?: Effect.Effect<boolean> | undefined }
): Effect.Effect<never> =>
  periodic({ name: "Stager", interval: options.interval, run: runOnce(options), when: options.when })
