/**
 * The delay before trying again after `failures` consecutive failures:
 * doubling from `baseMillis`, capped at `maxMillis`, jittered by ±20% from
 * Effect's `Random`. Shared by every loop that retries database work.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"

export const retryDelay = (
  failures: number,
  options: { readonly baseMillis?: number; readonly maxMillis?: number } = {}
): Effect.Effect<number> =>
  Effect.map(
    Random.nextBetween(0.8, 1.2),
    (factor) => Math.min(options.maxMillis ?? 5_000, (options.baseMillis ?? 50) * 2 ** Math.min(failures, 12)) * factor
  )
