/**
 * A job's own timeout and backoff, given at insert: they win over the
 * worker's, hold wherever the job runs (they are stored with it), and bad
 * values are refused with InvalidJobError before anything is written.
 */
import { assert, describe, layer } from "@effect/vitest"
import { type Duration, Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Backoff, Oban, ObanConfig, Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"

class Nope extends Schema.TaggedError<Nope>()("Nope", {}) {}
/** Performs of Sleepy started (in this process). */
let sleepyStarts = 0
const Sleepy = Worker.make("OptSleepy", {
  args: Schema.Struct({}),
  maxAttempts: 1,
  perform: () => Effect.andThen(Effect.sync(() => sleepyStarts++), Effect.sleep("1 minute"))
})
const Failing = Worker.make("OptFailing", { args: Schema.Struct({}), maxAttempts: 5, perform: () => Effect.fail(new Nope()) })

const TestLive = ObanTest.layer({ workers: [Sleepy, Failing] }).pipe(Layer.provideMerge(ObanTest.database()))
const onTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

const row = (id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const { prefix } = yield* ObanConfig.Settings
    const [found] = yield* sql<{ state: string; scheduled_at: Date; errors: ReadonlyArray<{ kind: string; at: string }> }>`
      SELECT state::text AS state, scheduled_at, errors FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`
    return found!
  })

describe("per-job timeout and backoff", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("a job's timeout interrupts it even when its worker has none", () =>
      Effect.gen(function*() {
        sleepyStarts = 0
        const timed = yield* Oban.insert(Sleepy.job({}, { timeout: "30 seconds" }))
        const drain = yield* Effect.forkChild(ObanTest.drainQueue({ queue: "default" }))
        // The drain claims the job over a real connection; wait (in real time) until its perform started
        // here, so that its timeout is on the clock before the clock moves.
        for (let i = 0; i < 1_000 && sleepyStarts === 0; i++) {
          yield* TestClock.withLive(Effect.sleep("10 millis"))
        }
        yield* TestClock.withLive(Effect.sleep("20 millis"))
        yield* TestClock.adjust("30 seconds")
        const result = yield* Fiber.join(drain)
        assert.strictEqual(result.failed, 1)
        const stored = yield* row(timed.id)
        assert.deepStrictEqual([stored.state, stored.errors[0]!.kind], ["discarded", "timeout"])
      }).pipe(onTestClock))

    it.effect("a job's backoff decides its retries: fixed, and exponential up to its max", () =>
      Effect.gen(function*() {
        const fixed = yield* Oban.insert(Failing.job({}, { backoff: { type: "fixed", delay: "7 seconds" } }))
        const growing = yield* Oban.insert(Failing.job({}, { backoff: { type: "exponential", delay: "10 seconds", max: "25 seconds" } }))
        const delays: Array<[number, number]> = []
        for (const wait of [0, 20_000, 40_000]) {
          yield* TestClock.adjust(wait)
          yield* ObanTest.drainQueue({ queue: "default", withScheduled: true })
          const [a, b] = [yield* row(fixed.id), yield* row(growing.id)]
          const failedAt = (r: typeof a) => new Date(r.errors.at(-1)!.at).getTime()
          delays.push([a.scheduled_at.getTime() - failedAt(a), b.scheduled_at.getTime() - failedAt(b)])
        }
        // Attempts 1, 2, 3: fixed 7 s each; exponential 10 s, 20 s, then 40 s capped at 25 s.
        assert.deepStrictEqual(delays, [[7_000, 10_000], [7_000, 20_000], [7_000, 25_000]])
      }).pipe(onTestClock))

    it.effect("bad timeouts and backoffs are refused with InvalidJobError and nothing is written", () =>
      Effect.gen(function*() {
        const before = (yield* ObanTest.allEnqueued({})).length
        const refusals = yield* Effect.forEach([
          Sleepy.job({}, { timeout: 0 }),
          Sleepy.job({}, { timeout: "soon" as Duration.Input }),
          Failing.job({}, { backoff: { type: "linear" as "fixed", delay: "1 second" } }),
          Failing.job({}, { backoff: { type: "fixed", delay: "-1 second" } }),
          Failing.job({}, { backoff: { type: "fixed", delay: "1 second", extra: 1 } as Backoff.Spec }),
          Failing.job({}, { backoff: { type: "fixed", delay: "1 second", jitter: "yes" as unknown as boolean } }),
          Failing.job({}, { backoff: { type: "exponential", delay: "1 minute", max: "10 seconds" } })
        ], (request) => Effect.flip(Oban.insert(request)))
        assert.deepStrictEqual(refusals.map((error) => [error._tag, (error as { field?: string }).field]), [
          ["InvalidJobError", "timeout"],
          ["InvalidJobError", "timeout"],
          ["InvalidJobError", "backoff"],
          ["InvalidJobError", "backoff"],
          ["InvalidJobError", "backoff"],
          ["InvalidJobError", "backoff"],
          ["InvalidJobError", "backoff"]
        ])
        assert.match(refusals.at(-1)!.message, /backoff\.max \(10000 ms\) is below backoff\.delay \(60000 ms\)/)
        assert.strictEqual((yield* ObanTest.allEnqueued({})).length, before)
      }))
  })
})
