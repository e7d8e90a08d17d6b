/**
 * ObanTest.advance: a whole node on TestClock, moved by virtual hours in one
 * call, does what each moment asks: scheduled jobs run when due, retries
 * follow their backoff, cron slots insert and run, jobs that sleep or time
 * out on virtual time end on time.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, Duration, Effect, Layer, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Config, Cron, Oban, Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { startNode } from "./support/node.ts"

const Tick = Worker.make("AdvTick", { args: Schema.Struct({}), perform: () => Effect.void })
class Flaky extends Schema.TaggedError<Flaky>()("Flaky", {}) {}
const FailTwice = Worker.make("AdvFailTwice", {
  args: Schema.Struct({}),
  backoff: Schedule.spaced("10 minutes"),
  perform: (job) => job.attempt <= 2 ? Effect.fail(new Flaky()) : Effect.void
})
const Nap = Worker.make("AdvNap", { args: Schema.Struct({}), perform: () => Effect.sleep("30 minutes") })
const Query = Worker.make("AdvQuery", {
  args: Schema.Struct({ seconds: Schema.Number }),
  perform: (job) => Effect.flatMap(SqlClient, (sql) => sql`SELECT pg_sleep(${job.args.seconds})`).pipe(Effect.orDie)
})
const ShortNap = Worker.make("AdvShortNap", {
  args: Schema.Struct({ account: Schema.String }),
  queue: "naps",
  perform: () => Effect.sleep("200 millis")
})
const Stuck = Worker.make("AdvStuck", { args: Schema.Struct({}), timeout: "1 minute", maxAttempts: 1, perform: () => Effect.never })

const TestLive = ObanTest.layer().pipe(Layer.provideMerge(ObanTest.database()))
const onTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

const node = (crontab: ReadonlyArray<Cron.Entry> = []) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const { prefix } = yield* Config.Settings
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers, ${sql(prefix)}.oban_peers`
    const running = yield* startNode({
      node: "advance",
      queues: { default: 5 },
      workers: [Tick, FailTwice, Nap, Stuck, Query],
      crontab,
      // Finished jobs stay, to be counted (the pruner would delete them after 5 virtual minutes).
      pruner: false
    })
    yield* running.oban.ready
    return running
  })

/** The job's state, attempt and times, from the database. */
const rowOf = (id: number) =>
  Effect.map(Oban.getJob(id), (job) => {
    if (job._tag === "None") throw new Error(`job ${id} is gone`)
    return job.value
  })

describe("ObanTest.advance", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("runs a job scheduled in an hour exactly when it falls due, and not before", () =>
      Effect.gen(function*() {
        const { oban } = yield* node()
        const job = yield* Oban.insert(Tick.job({}, { scheduleIn: "1 hour" }))
        yield* ObanTest.advance("59 minutes").pipe(Effect.provideService(Oban.Oban, oban))
        assert.strictEqual((yield* rowOf(job.id)).state, "scheduled")
        yield* ObanTest.advance("1 minute").pipe(Effect.provideService(Oban.Oban, oban))
        const done = yield* rowOf(job.id)
        assert.strictEqual(done.state, "completed")
        assert.strictEqual(done.attemptedAt!.getTime() - job.insertedAt.getTime(), 3_600_000)
        assert.strictEqual(yield* Clock.currentTimeMillis, job.insertedAt.getTime() + 3_600_000)
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("retries on the worker's backoff as virtual time passes", () =>
      Effect.gen(function*() {
        const { oban } = yield* node()
        const job = yield* Oban.insert(FailTwice.job({}))
        yield* ObanTest.advance("25 minutes").pipe(Effect.provideService(Oban.Oban, oban))
        const done = yield* rowOf(job.id)
        assert.strictEqual(done.state, "completed")
        assert.strictEqual(done.attempt, 3)
        assert.deepStrictEqual(done.errors.map((entry) => entry.attempt), [1, 2])
        // Each retry started exactly its backoff after the failure before it.
        const failedAt = done.errors.map((entry) => new Date(entry.at).getTime())
        assert.strictEqual(done.attemptedAt!.getTime() - failedAt[1]!, 600_000)
        // In UTC as toISOString writes it, whatever the session's time zone (the database's own form has an offset).
        for (const entry of done.errors) assert.match(entry.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("inserts and runs one job per cron slot over two virtual hours", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.UTC(2100, 0, 1, 0, 0, 30))
        const { oban } = yield* node([Cron.entry("*/10 * * * *", Tick, {})])
        yield* ObanTest.advance("2 hours").pipe(Effect.provideService(Oban.Oban, oban))
        const jobs = yield* ObanTest.allEnqueued({ worker: Tick, state: "completed" })
        // The start-up look-back inserts the 00:00 slot; then 00:10 .. 02:00.
        assert.strictEqual(jobs.length, 13)
        assert.strictEqual((yield* ObanTest.allEnqueued({ worker: Tick })).length, 0)
        for (const job of jobs.filter((job) => job.insertedAt.getTime() > Date.UTC(2100, 0, 1, 0, 1))) {
          // Inserted just after its slot, and run at once.
          assert.isBelow(job.insertedAt.getTime() % 600_000, 1_000)
          assert.isBelow(job.attemptedAt!.getTime() - job.insertedAt.getTime(), 1_000)
        }
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("runs the cron slot that falls exactly at the end of an advance", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.UTC(2100, 0, 1, 0, 0, 0))
        const { oban } = yield* node([Cron.entry("0 * * * *", Tick, {}, { name: "hourly-end" })])
        yield* ObanTest.advance("3 hours").pipe(Effect.provideService(Oban.Oban, oban))
        const jobs = yield* ObanTest.allEnqueued({ worker: Tick, state: "completed" })
        // 00:00 (the clock starts on it: inserted by the look-back once the node leads), then 01:00, 02:00 and
        // 03:00, the end of the advance, each inserted on its slot.
        const inserted = jobs.map((job) => job.insertedAt.getTime()).sort((a, b) => a - b)
        assert.strictEqual(inserted.length, 4)
        assert.isBelow(inserted[0]! - Date.UTC(2100, 0, 1, 0), 60_000)
        assert.deepStrictEqual(inserted.slice(1), [1, 2, 3].map((hour) => Date.UTC(2100, 0, 1, hour)))
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("ends a job that sleeps on virtual time, and times out one that never ends", () =>
      Effect.gen(function*() {
        const { oban } = yield* node()
        const nap = yield* Oban.insert(Nap.job({}))
        const stuck = yield* Oban.insert(Stuck.job({}))
        yield* ObanTest.advance("59 seconds").pipe(Effect.provideService(Oban.Oban, oban))
        assert.strictEqual((yield* rowOf(stuck.id)).state, "executing")
        yield* ObanTest.advance("1 second").pipe(Effect.provideService(Oban.Oban, oban))
        const timedOut = yield* rowOf(stuck.id)
        assert.strictEqual(timedOut.state, "discarded")
        assert.strictEqual(timedOut.errors[0]!.kind, "timeout")
        assert.strictEqual((yield* rowOf(nap.id)).state, "executing")
        yield* ObanTest.advance("29 minutes").pipe(Effect.provideService(Oban.Oban, oban))
        assert.strictEqual((yield* rowOf(nap.id)).state, "completed")
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("a job that waits for a slot starts the moment a sleeping job ends and frees it, within a longer step", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { prefix } = yield* Config.Settings
        yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_queues`
        const limits: ReadonlyArray<number | Oban.QueueConfig> = [2, { limit: 10, global: 1, partition: { by: "args", key: "account" } }]
        for (const naps of limits) {
          yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
          const running = yield* startNode({ node: "naps", queues: { naps }, workers: [ShortNap], pruner: false })
          yield* running.oban.ready
          // Six jobs of 200 virtual ms, two at a time (two slots, or one per account): done after 600 ms.
          const jobs = yield* Oban.insertAll([1, 2, 3, 4, 5, 6].map((n) => ShortNap.job({ account: n % 2 === 0 ? "A" : "B" })))
          const start = jobs[0]!.insertedAt.getTime()
          // The default step (10 s) is far longer than a job: time stops where each sleep ends.
          yield* ObanTest.advance("1 second").pipe(Effect.provideService(Oban.Oban, running.oban))
          const rows = yield* Effect.forEach(jobs, (job) => rowOf(job.id))
          assert.deepStrictEqual(rows.map((row) => row.state), Array(6).fill("completed"), JSON.stringify(naps))
          const times = (pick: (row: typeof rows[number]) => Date | null) =>
            rows.map((row) => pick(row)!.getTime() - start).sort((a, b) => a - b)
          // A limited claim may stamp the time it read before it was sent, which a node timer firing inside
          // a step can put earlier than the moment the job starts: its attempt time is checked where exact.
          if (naps === 2) assert.deepStrictEqual(times((row) => row.attemptedAt), [0, 0, 200, 200, 400, 400])
          assert.deepStrictEqual(times((row) => row.completedAt), [200, 200, 400, 400, 600, 600], JSON.stringify(naps))
          yield* running.stop
        }
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("a node closed while a job does real I/O waits for it in real time, not on the virtual clock", () =>
      Effect.gen(function*() {
        const running = yield* node()
        const job = yield* Oban.insert(Query.job({ seconds: 1 }))
        yield* ObanTest.advance("1 second").pipe(Effect.provideService(Oban.Oban, running.oban))
        assert.strictEqual((yield* rowOf(job.id)).state, "executing")
        // Nothing moves the virtual clock now: a grace period timed on it would never end.
        const startedAt = performance.now()
        yield* running.stop
        assert.isBelow(performance.now() - startedAt, 10_000)
        assert.strictEqual((yield* rowOf(job.id)).state, "completed")
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("refuses a duration or option it cannot step by, with ObanTestError, leaving the clock where it was", () =>
      Effect.gen(function*() {
        const { oban } = yield* node()
        const before = yield* Clock.currentTimeMillis
        // Each of these looped until the test's timeout (a step of 0 or NaN never moved the clock, -1 moved it
        // back), did nothing (-5), or died with a plain Error from the duration parser.
        const cases: ReadonlyArray<readonly [Duration.Input, ObanTest.AdvanceOptions, RegExp]> = [
          ["1 minute", { step: 0 }, /step must be a finite duration of at least 1ms, got 0/],
          ["1 minute", { step: Number.NaN }, /step must be a finite duration/],
          ["1 minute", { step: -1 }, /step must be a finite duration/],
          ["1 minute", { timeout: 0 }, /timeout must be a finite duration/],
          [-5, {}, /duration must be a finite duration of at least 0/],
          ["1 hour 5 minutes" as Duration.Input, {}, /duration must be a finite duration.*got 1 hour 5 minutes/]
        ]
        for (const [duration, options, message] of cases) {
          const error = yield* ObanTest.advance(duration, options).pipe(Effect.provideService(Oban.Oban, oban), Effect.flip)
          assert.strictEqual(error._tag, "ObanTestError", String(duration))
          assert.match((error as ObanTest.ObanTestError).message, message)
        }
        assert.strictEqual(yield* Clock.currentTimeMillis, before)
      }).pipe(Effect.scoped, onTestClock), 60_000)

    it.effect("fails with ObanTestError off TestClock", () =>
      Effect.gen(function*() {
        const { oban } = yield* node()
        const error = yield* ObanTest.advance("1 minute").pipe(Effect.provideService(Oban.Oban, oban), Effect.flip)
        assert.strictEqual(error._tag, "ObanTestError")
        assert.match((error as ObanTest.ObanTestError).message, /TestClock/)
      }).pipe(Effect.scoped), 60_000)
  })
})
