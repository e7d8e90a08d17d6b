/**
 * How long a failed job waits before its next attempt.
 *
 * The default follows Oban: 15 seconds plus 2^attempt seconds, with ±10%
 * jitter, the exponent scaled down for jobs allowed more than 20 attempts so
 * the last retries stay within days, not centuries. A worker can instead give
 * any `Schedule`; because the attempt count lives in the database, the delay
 * for attempt n is found by stepping the schedule n times from its start.
 * Jitter draws from Effect's `Random`, so `Random.withSeed` makes it
 * deterministic in tests.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import { prettyCause } from "./internal/prettyCause.ts"

/**
 * Oban's default: `15 s + 2^attempt s`, jittered by ±10%. `attempt` is the
 * attempt that just failed (1 for the first).
 *
 * @since 0.1.0
 */
export const defaultDelay = (attempt: number, maxAttempts: number): Effect.Effect<Duration.Duration> =>
  Effect.map(Random.nextBetween(0.9, 1.1), (factor) => {
    const exponent = maxAttempts > 20 ? Math.floor((attempt * 20) / maxAttempts) : Math.min(attempt, 20)
    const seconds = 15 + Math.pow(2, exponent)
    return Duration.millis(Math.round(seconds * 1000 * factor))
  })

/**
 * The delay a schedule gives before retry `attempt`: the schedule is stepped
 * `attempt` times with the attempt number as input. When the schedule ends
 * first, the default delay is used.
 *
 * @since 0.1.0
 */
export const scheduleDelay = (
  schedule: Schedule.Schedule<unknown, number>,
  attempt: number,
  maxAttempts: number
): Effect.Effect<Duration.Duration> =>
  Effect.gen(function*() {
    const step = yield* Schedule.toStep(schedule)
    let delay: Duration.Duration = Duration.zero
    let now = 0
    for (let n = 1; n <= attempt; n++) {
      const result = yield* step(now, n).pipe(
        Effect.map(([, duration]) => duration),
        Pull.catchDone(() => Effect.succeed(undefined))
      )
      if (result === undefined) return yield* defaultDelay(attempt, maxAttempts)
      delay = result
      now += Duration.toMillis(delay)
    }
    return delay
  })

/**
 * The longest delay before a retry or after a snooze: 100 years (36,525
 * days). Longer delays are cut to this, which keeps every `scheduled_at`
 * within what PostgreSQL and JavaScript dates can hold.
 *
 * @since 0.1.0
 */
export const maxDelay: Duration.Duration = Duration.days(36_525)

const maxDelayMillis = Duration.toMillis(maxDelay)

/**
 * Bounds a delay in milliseconds to whole milliseconds in `[0, maxDelay]`:
 * negative delays become 0 and longer ones (`Infinity` included) `maxDelay`.
 * `NaN` has no meaningful bound and gives `undefined`.
 *
 * @since 0.1.0
 */
export const boundMillis = (millis: number): number | undefined =>
  Number.isNaN(millis) ? undefined : Math.min(Math.max(Math.round(millis), 0), maxDelayMillis)

/**
 * The delay before the next attempt of a job that failed attempt `attempt`,
 * in whole milliseconds, bounded by `boundMillis`: a schedule's delay that
 * is negative gives 0, one beyond `maxDelay` (an infinite one, or an
 * exponential that overflowed) gives `maxDelay`, and one that is not a
 * number at all gives the default delay (with a warning in the log), as does
 * a schedule that dies (a throwing `modifyDelay`, say; logged as an error).
 *
 * @since 0.1.0
 */
export const delayFor = (
  backoff: Schedule.Schedule<unknown, number> | undefined,
  attempt: number,
  maxAttempts: number
): Effect.Effect<Duration.Duration> =>
  Effect.gen(function*() {
    const delay = backoff === undefined
      ? yield* defaultDelay(attempt, maxAttempts)
      : yield* scheduleDelay(backoff, attempt, maxAttempts).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.andThen(
            Effect.logError(`the backoff schedule failed before attempt ${attempt + 1}; using the default`, prettyCause(cause)),
            defaultDelay(attempt, maxAttempts)
          )
        )
      )
    // Whole milliseconds, so that a retry is due exactly when a clock in milliseconds says so.
    const bounded = boundMillis(Duration.toMillis(delay))
    if (bounded !== undefined) return Duration.millis(bounded)
    yield* Effect.logWarning(`backoff gave no usable delay before attempt ${attempt + 1}; using the default`)
    return Duration.millis(boundMillis(Duration.toMillis(yield* defaultDelay(attempt, maxAttempts))) ?? 0)
  })

/**
 * A backoff given as data, for one job (`worker.job(args, { backoff })`):
 * `fixed` waits `delay` before every retry, `exponential` waits
 * `delay * 2^(attempt - 1)`, at most `max`. `jitter` scales each delay by a
 * random factor in [0.9, 1.1], as the default does. Stored with the job, so
 * it holds on every node whatever the worker's own backoff.
 *
 * @since 0.1.0
 */
export interface Spec {
  readonly type: "fixed" | "exponential"
  readonly delay: Duration.Input
  readonly max?: Duration.Input | undefined
  readonly jitter?: boolean | undefined
}

/**
 * A `Spec` as it is stored in the job's meta (under `oban:backoff`).
 *
 * @since 0.1.0
 */
export interface StoredSpec {
  readonly type: "fixed" | "exponential"
  readonly delay_ms: number
  readonly max_ms?: number | undefined
  readonly jitter?: boolean | undefined
}

/** The stored spec in `meta`, if there is a well-formed one. */
export const storedSpecOf = (meta: Readonly<Record<string, unknown>>): StoredSpec | undefined => {
  const spec = meta[specKey]
  if (typeof spec !== "object" || spec === null) return undefined
  const { type, delay_ms, max_ms, jitter } = spec as Record<string, unknown>
  if ((type !== "fixed" && type !== "exponential") || typeof delay_ms !== "number" || !Number.isFinite(delay_ms)) {
    return undefined
  }
  return {
    type,
    delay_ms,
    ...(typeof max_ms === "number" ? { max_ms } : {}),
    ...(jitter === true ? { jitter } : {})
  }
}

/** Where a job's own backoff is kept in its meta. */
export const specKey = "oban:backoff"

/**
 * The delay a stored spec gives before retry `attempt` (the attempt that
 * just failed, 1 for the first), in whole milliseconds.
 *
 * @since 0.1.0
 */
export const specDelay = (spec: StoredSpec, attempt: number): Effect.Effect<Duration.Duration> =>
  Effect.map(spec.jitter === true ? Random.nextBetween(0.9, 1.1) : Effect.succeed(1), (factor) => {
    const base = spec.type === "fixed" ? spec.delay_ms : spec.delay_ms * Math.pow(2, Math.max(0, attempt - 1))
    const capped = spec.max_ms === undefined ? base : Math.min(base, spec.max_ms)
    return Duration.millis(boundMillis(capped * factor) ?? Duration.toMillis(maxDelay))
  })
