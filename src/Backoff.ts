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
import { Duration, Effect, Pull, Random, Schedule } from "effect"

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
 * The delay before the next attempt of a job that failed attempt `attempt`,
 * in whole milliseconds.
 *
 * @since 0.1.0
 */
export const delayFor = (
  backoff: Schedule.Schedule<unknown, number> | undefined,
  attempt: number,
  maxAttempts: number
): Effect.Effect<Duration.Duration> =>
  Effect.map(
    backoff === undefined ? defaultDelay(attempt, maxAttempts) : scheduleDelay(backoff, attempt, maxAttempts),
    // Whole milliseconds, so that a retry is due exactly when a clock in milliseconds says so.
    (delay) => Duration.millis(Math.round(Duration.toMillis(delay)))
  )
