/**
 * The default backoff for jobs allowed more than 20 attempts, bounded from
 * both sides: the exponent is `floor(attempt * 20 / maxAttempts)`, the delay
 * `(15 + 2^exponent) s`, jittered by a factor in [0.9, 1.1] (docs/workers.md,
 * "Backoff"). Each expected base below is worked out by hand from that formula.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Random } from "effect"
import * as Backoff from "../src/Backoff.ts"

const millis = (effect: Effect.Effect<Duration.Duration>) => Effect.map(effect, Duration.toMillis)

/** [attempt, maxAttempts, exponent by hand, base seconds = 15 + 2^exponent]. */
const cases: ReadonlyArray<readonly [number, number, number, number]> = [
  [1, 25, 0, 16], //      floor(20 / 25)   = 0
  [7, 30, 4, 31], //      floor(140 / 30)  = 4  (4.67: floored, not rounded)
  [13, 25, 10, 1_039], // floor(260 / 25)  = 10 (10.4)
  [30, 40, 15, 32_783], // floor(600 / 40) = 15
  [50, 100, 10, 1_039], // floor(1000 / 100) = 10
  [20, 21, 19, 524_303], // floor(400 / 21) = 19 (19.05)
  [21, 21, 20, 1_048_591], // floor(420 / 21) = 20
  [100, 100, 20, 1_048_591] // floor(2000 / 100) = 20: about 12 days, the documented cap
]

describe("Backoff.defaultDelay with more than 20 attempts (audit)", () => {
  it.effect("each delay lies within ±10% of 15 s + 2^floor(attempt * 20 / maxAttempts) s", () =>
    Effect.gen(function*() {
      for (const [attempt, maxAttempts, exponent, seconds] of cases) {
        assert.strictEqual(15 + 2 ** exponent, seconds, `hand arithmetic for ${attempt}/${maxAttempts}`)
        const base = seconds * 1000
        for (let seed = 0; seed < 25; seed++) {
          const delay = yield* millis(Backoff.defaultDelay(attempt, maxAttempts)).pipe(Random.withSeed(seed))
          const label = `attempt ${attempt} of ${maxAttempts} (seed ${seed}): ${delay} ms, base ${base} ms`
          assert.isAtLeast(delay, Math.floor(base * 0.9), label)
          assert.isAtMost(delay, Math.ceil(base * 1.1), label)
        }
      }
    }))

  it.effect("the jitter spreads the delays over the ±10% band, not a fixed point", () =>
    Effect.gen(function*() {
      // attempt 50 of 100: exponent 10, base 1039 s.
      const base = 1_039_000
      const delays: Array<number> = []
      for (let seed = 0; seed < 200; seed++) {
        delays.push(yield* millis(Backoff.defaultDelay(50, 100)).pipe(Random.withSeed(seed)))
      }
      const low = Math.min(...delays)
      const high = Math.max(...delays)
      assert.isAtLeast(low, Math.floor(base * 0.9))
      assert.isAtMost(high, Math.ceil(base * 1.1))
      // 200 uniform draws over [0.9, 1.1]: both ends of the band are reached within 3%.
      assert.isBelow(low, base * 0.93, `lowest ${low}`)
      assert.isAbove(high, base * 1.07, `highest ${high}`)
    }))

  it.effect("more attempts allowed means a smaller exponent for the same attempt", () =>
    Effect.gen(function*() {
      // attempt 20: exponent 20 for 20 attempts (1048591 s), floor(400/40) = 10 for 40 (1039 s),
      // floor(400/400) = 1 for 400 (17 s). Seeded alike, so the jitter factor is the same for each.
      const at = (maxAttempts: number) => millis(Backoff.defaultDelay(20, maxAttempts)).pipe(Random.withSeed(7))
      const twenty = yield* at(20)
      const forty = yield* at(40)
      const four = yield* at(400)
      const factor = twenty / 1_048_591_000
      assert.isAtLeast(factor, 0.9)
      assert.isAtMost(factor, 1.1)
      assert.approximately(forty, 1_039_000 * factor, 2)
      assert.approximately(four, 17_000 * factor, 2)
    }))
})
