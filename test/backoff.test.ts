import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Random, Schedule } from "effect"
import * as Backoff from "../src/Backoff.ts"

const millis = (effect: Effect.Effect<Duration.Duration>) => Effect.map(effect, Duration.toMillis)

describe("Backoff", () => {
  it.effect("the default is 15 s + 2^attempt s, jittered by at most 10%", () =>
    Effect.gen(function*() {
      for (const attempt of [1, 2, 5, 10]) {
        const base = (15 + 2 ** attempt) * 1000
        for (let i = 0; i < 20; i++) {
          const delay = yield* millis(Backoff.defaultDelay(attempt, 20))
          assert.isAtLeast(delay, base * 0.9 - 1)
          assert.isAtMost(delay, base * 1.1 + 1)
        }
      }
    }))

  it.effect("jitter is deterministic under a seeded Random", () =>
    Effect.gen(function*() {
      const run = Effect.forEach([1, 2, 3, 4], (attempt) => millis(Backoff.defaultDelay(attempt, 20)))
      const first = yield* run.pipe(Random.withSeed(42))
      const second = yield* run.pipe(Random.withSeed(42))
      assert.deepStrictEqual(first, second)
    }))

  it.effect("large max attempts scale the exponent so the last retry stays within days", () =>
    Effect.gen(function*() {
      const last = yield* millis(Backoff.defaultDelay(100, 100))
      assert.isAtMost(last, (15 + 2 ** 20) * 1000 * 1.1 + 1)
      const middle = yield* millis(Backoff.defaultDelay(50, 100))
      assert.isAtMost(middle, (15 + 2 ** 10) * 1000 * 1.1 + 1)
    }))

  it.effect("a worker's Schedule is replayed to the attempt", () =>
    Effect.gen(function*() {
      const exponential = Schedule.exponential("1 second", 2)
      assert.deepStrictEqual(
        yield* Effect.forEach([1, 2, 3, 4], (attempt) => millis(Backoff.delayFor(exponential, attempt, 10))),
        [1000, 2000, 4000, 8000]
      )
    }))

  it.effect("a Schedule that ends falls back to the default", () =>
    Effect.gen(function*() {
      const twice = Schedule.max([Schedule.spaced("1 second"), Schedule.recurs(2)])
      assert.strictEqual(yield* millis(Backoff.delayFor(twice, 2, 10)), 1000)
      const third = yield* millis(Backoff.delayFor(twice, 3, 10))
      assert.isAtLeast(third, (15 + 8) * 1000 * 0.9 - 1)
    }))

  it.effect("delays are bounded: infinite or overflowing ones wait maxDelay, negative ones none", () =>
    Effect.gen(function*() {
      const max = Duration.toMillis(Backoff.maxDelay)
      assert.strictEqual(max, 36_525 * 86_400_000)
      assert.strictEqual(yield* millis(Backoff.delayFor(Schedule.spaced(Duration.infinity), 1, 10)), max)
      // 1 s * 1e200^2 overflows to Infinity by the third attempt.
      assert.strictEqual(yield* millis(Backoff.delayFor(Schedule.exponential("1 second", 1e200), 3, 10)), max)
      assert.strictEqual(yield* millis(Backoff.delayFor(Schedule.spaced(Duration.days(365 * 1_000_000)), 1, 10)), max)
      assert.strictEqual(Backoff.boundMillis(-5), 0)
      assert.strictEqual(Backoff.boundMillis(Number.NEGATIVE_INFINITY), 0)
      assert.strictEqual(Backoff.boundMillis(1.6), 2)
      assert.isUndefined(Backoff.boundMillis(Number.NaN))
    }))
})
