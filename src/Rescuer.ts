/**
 * Rescues orphaned jobs (leader only). A job stays `executing` when its node
 * dies mid-job. Every producer beats its heart in `oban_producers`; when a
 * producer has not done so for `rescueAfter` (or its row is gone), its
 * `executing` jobs go back to `available` (or `discarded` when out of
 * attempts) with a `rescued` errors entry naming the lost node, and its stale
 * row is marked dead: kept for `forgetAfter` with what commands stored for
 * that node (a pause, a scale), which the node takes again if it comes back
 * meanwhile, then removed. A job whose cancel was requested while it ran
 * ends `cancelled` instead (see `Oban.cancelJob`). With the defaults,
 * orphans are found within about 75 s. A node's rescuer waits `rescueAfter`
 * after its own outage or its own process's pause (see docs/maintenance.md).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { validatePrefix } from "./Config.ts"
import { InvalidConfigError, type InvalidPrefixError } from "./Errors.ts"
import { duration, positiveInt } from "./internal/optionChecks.ts"
import { defaultRescueAfter } from "./internal/lateness.ts"
import { rescueRun } from "./internal/rescueRun.ts"

/**
 * @since 0.1.0
 */
export const defaults = {
  /** How long a producer may miss heartbeats before its jobs are rescued. */
  rescueAfter: defaultRescueAfter,
  interval: Duration.seconds(15),
  /** Jobs rescued per statement. */
  batchSize: 1_000,
  /** How long the row of a dead producer is kept, for the node to take back if it returns. */
  forgetAfter: Duration.hours(24)
} as const

/**
 * @since 0.1.0
 */
export interface Config {
  readonly rescueAfter: Duration.Duration
  readonly interval: Duration.Duration
  readonly batchSize: number
  readonly forgetAfter: Duration.Duration
}

/**
 * What one run did.
 *
 * @since 0.1.0
 */
export interface Result {
  /** Jobs put back to available. */
  readonly rescued: number
  /** Jobs discarded because they had no attempts left. */
  readonly discarded: number
  /**
   * Jobs whose cancel was requested while they ran: they end `cancelled`
   * (never run again), and a workflow step's dependents are settled.
   */
  readonly cancelled: number
}

/** A producer id as `oban_producers` holds it. */
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const producerIds = (ids: ReadonlyArray<string> | undefined): Effect.Effect<ReadonlyArray<string>, InvalidConfigError> => {
  const bad = (ids ?? []).find((id) => typeof id !== "string" || !uuidPattern.test(id))
  return bad === undefined
    ? Effect.succeed(ids ?? [])
    : Effect.fail(
      new InvalidConfigError({ field: "liveProducers", message: `liveProducers holds producer ids (uuids), got ${JSON.stringify(bad)}` })
    )
}

/**
 * Rescues every orphan, a batch at a time.
 *
 * `liveProducers` names producers the caller knows to be alive, whatever
 * their heartbeats say: a node's rescuer passes its own. A process that
 * stalls past `rescueAfter` (a CPU-bound job, a VM pause) wakes with its own
 * heartbeats stale, and its rescuer may run before they are beaten again; it
 * would take back the jobs it is itself running, which then run twice.
 *
 * `confirm`, when given, is asked after each batch's statement, before its
 * commit: when it answers `false` the batch is rolled back and the run ends.
 * A node's rescuer asks again what let the run start (it leads, and has been
 * connected, with its process running, for `rescueAfter`), so that a pause of
 * its process between that check and the statement, or while the statement
 * waited for a connection, rescues nothing: other nodes paused with it would
 * look dead for as long. It should answer at once: the batch's transaction
 * waits meanwhile, and the server ends a transaction of ours idle for 10 s
 * (the run then fails, rescuing nothing).
 *
 * @since 0.1.0
 */
export const runOnce = (
  options: {
    readonly sql: SqlClient
    readonly prefix: string
    readonly liveProducers?: ReadonlyArray<string>
    readonly confirm?: Effect.Effect<boolean> | undefined
  } & Partial<Config>
): Effect.Effect<Result, SqlError | InvalidConfigError | InvalidPrefixError> =>
  Effect.gen(function*() {
    yield* validatePrefix(options.prefix)
    const spared = yield* producerIds(options.liveProducers)
    const after = Duration.toMillis(
      yield* duration("rescueAfter", options.rescueAfter, defaults.rescueAfter, Duration.zero)
    )
    const batchSize = yield* positiveInt("batchSize", options.batchSize, defaults.batchSize)
    const forgetAfter = Duration.toMillis(
      yield* duration("forgetAfter", options.forgetAfter, defaults.forgetAfter, Duration.zero)
    )
    return yield* rescueRun({
      sql: options.sql,
      prefix: options.prefix,
      afterMillis: after,
      forgetAfterMillis: forgetAfter,
      batchSize,
      spared,
      confirm: options.confirm
    })
  })
