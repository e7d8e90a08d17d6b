/**
 * The whole queue on TestClock against real PostgreSQL: snoozes, timeouts,
 * lease expiry, rescue, pruning and cron move with TestClock.adjust, with no
 * real sleeping, whatever the virtual durations.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Cron, Leader, Migrations, Oban, ObanClock, Pruner, Rescuer, Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { dropSchemaOnClose, pgLayer, uniquePrefix, quietLogs } from "./support/db.ts"
import { startNode } from "./support/node.ts"

const Nap = Worker.make("Nap", {
  args: Schema.Struct({}),
  perform: (job) => job.attempt === 1 && job.meta["woke"] === undefined ? Worker.snooze("1 minute") : Effect.void
})
let naps = 0
const NapOnce = Worker.make("NapOnce", {
  args: Schema.Struct({}),
  perform: () => naps++ === 0 ? Worker.snooze("1 minute") : Effect.void
})
/** Performs of Slow started (in this process). */
let slowStarts = 0
const Slow = Worker.make("Slow", {
  args: Schema.Struct({}),
  timeout: "30 seconds",
  maxAttempts: 1,
  perform: () => Effect.andThen(Effect.sync(() => slowStarts++), Effect.sleep("1 hour"))
})
const Tick = Worker.make("Tick", { args: Schema.Struct({}), perform: () => Effect.void })

const prefix = uniquePrefix("virtual")
const TestLive = ObanTest.layer({ workers: [Nap, NapOnce, Slow, Tick], prefix }).pipe(
  Layer.provideMerge(Layer.effectDiscard(Effect.gen(function*() {
    yield* dropSchemaOnClose(prefix)
    yield* Migrations.run({ prefix })
  })).pipe(Layer.provideMerge(pgLayer()))),
  Layer.provideMerge(quietLogs)
)

/**
 * The database pool runs on the real clock (the layer is built without test
 * services); each test body gets its own TestClock, which the library follows.
 */
/**
 * Leadership for `Cron.loop` that makes one round start late when asked: the
 * clock jumps by `by` while the round asks whether it leads, as when the
 * process stalls (a paused VM) or rounds fail for that long.
 */
const stallingLeader = (by: Duration.Input) => {
  let stall = false
  return {
    stallNextRound: () => {
      stall = true
    },
    isLeader: Effect.suspend(() => {
      if (!stall) return Effect.succeed(true)
      stall = false
      return Effect.as(TestClock.adjust(by), true)
    })
  }
}

const onTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

/** Polls with real (not virtual) sleeps: for waiting on database I/O under TestClock. */
const untilLive = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000; i++) {
      if (yield* check) return
      yield* TestClock.withLive(Effect.sleep("10 millis"))
    }
    return yield* Effect.die(new Error("condition not reached"))
  })

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers, ${sql(prefix)}.oban_peers`
})

describe("virtual time", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("the testing layer runs the library on Effect's clock", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* ObanClock.ObanClock, { mode: "effect" })
        yield* TestClock.adjust("1 minute")
        const job = yield* Oban.insert(Tick.job({}))
        assert.strictEqual(job.insertedAt.getTime(), yield* Clock.currentTimeMillis)
      }).pipe(onTestClock))

    it.effect("a snoozed job comes back exactly after its snooze", () =>
      Effect.gen(function*() {
        yield* truncate
        naps = 0
        yield* Oban.insert(NapOnce.job({}))
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "default" })).snoozed, 1)
        yield* TestClock.adjust("59 seconds")
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "default", withScheduled: true })).completed, 0)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "default", withScheduled: true })).completed, 1)
      }).pipe(onTestClock))

    it.effect("a worker's timeout interrupts the job at the virtual deadline", () =>
      Effect.gen(function*() {
        yield* truncate
        slowStarts = 0
        const job = yield* Oban.insert(Slow.job({}))
        const drain = yield* Effect.forkChild(ObanTest.drainQueue({ queue: "default" }))
        // The drain claims the job over a real connection; once its perform has started here (not only its
        // row been claimed), its timeout is on the clock and only virtual time is left.
        yield* untilLive(Effect.sync(() => slowStarts === 1))
        yield* TestClock.withLive(Effect.sleep("20 millis"))
        yield* TestClock.adjust("30 seconds")
        assert.strictEqual((yield* Fiber.join(drain)).failed, 1)
        const [row] = yield* ObanTest.allEnqueued({ state: "discarded" })
        assert.strictEqual(row!.id, job.id)
        assert.strictEqual(row!.errors[0]!.kind, "timeout")
      }).pipe(onTestClock))

    it.effect("a leader's lease expires after its TTL of virtual time", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const ttl = "30 seconds"
        assert.isTrue((yield* Leader.runOnce({ sql, prefix, node: "a", ttl: Leader.defaults.ttl })).isLeader)
        yield* TestClock.adjust("29 seconds")
        assert.isFalse((yield* Leader.runOnce({ sql, prefix, node: "b", ttl: Leader.defaults.ttl })).isLeader)
        yield* TestClock.adjust("1 second")
        const takeover = yield* Leader.runOnce({ sql, prefix, node: "b", ttl: Leader.defaults.ttl })
        assert.deepStrictEqual([takeover.isLeader, takeover.leader, ttl], [true, "b", ttl])
      }).pipe(onTestClock))

    it.effect("a silent producer's jobs are rescued after rescueAfter of virtual time", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const job = yield* Oban.insert(Tick.job({}))
        const lastBeat = new Date(yield* Clock.currentTimeMillis)
        const producer = crypto.randomUUID()
        yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at)
                   VALUES (${producer}, 'gone', 'default', 1, ${lastBeat})`
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
                   attempted_by = ARRAY['gone', ${producer}] WHERE id = ${job.id}`
        yield* TestClock.adjust("59 seconds")
        assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 0, discarded: 0, cancelled: 0 })
        yield* TestClock.adjust("2 seconds")
        assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 1, discarded: 0, cancelled: 0 })
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "default" })).completed, 1)
      }).pipe(onTestClock))

    it.effect("finished jobs are pruned once they are older than maxAge in virtual time", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        yield* Oban.insert(Tick.job({}))
        yield* ObanTest.drainQueue({ queue: "default" })
        yield* TestClock.adjust("4 minutes")
        assert.strictEqual((yield* Pruner.runOnce({ sql, prefix })).deleted, 0)
        yield* TestClock.adjust("1 minute")
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Pruner.runOnce({ sql, prefix })).deleted, 1)
      }).pipe(onTestClock))

    it.effect("a whole node on TestClock runs a job scheduled in 1 hour only when the clock gets there", () =>
      Effect.gen(function*() {
        yield* truncate
        yield* startNode({
          prefix,
          node: "virtual-node",
          queues: { default: 2 },
          workers: [Tick],
          pollInterval: "1 second",
          stageInterval: "1 second"
        })
        const job = yield* Oban.insert(Tick.job({}, { scheduleIn: "1 hour" }))
        const state = Effect.map(Oban.getJob(job.id), (found) => found.pipe(Option.map((j) => j.state), Option.getOrUndefined))
        // Minute by minute (giving the node's database I/O a real moment after each step): nothing runs.
        for (let minute = 0; minute < 59; minute++) {
          yield* TestClock.adjust("1 minute")
          yield* TestClock.withLive(Effect.sleep("5 millis"))
        }
        assert.strictEqual(yield* state, "scheduled")
        // The last minute, second by second, and one more: staged, then run. The clock stops there; the
        // steps after it only give the node's database I/O more real time (a loaded machine).
        for (let step = 0; step < 600 && (yield* state) !== "completed"; step++) {
          if (step < 120) yield* TestClock.adjust("1 second")
          yield* TestClock.withLive(Effect.sleep("10 millis"))
        }
        assert.strictEqual(yield* state, "completed")
        const [row] = yield* ObanTest.allEnqueued({ state: "completed" })
        const ranAfter = row!.attemptedAt!.getTime() - row!.insertedAt.getTime()
        assert.isAtLeast(ranAfter, 3_600_000)
        assert.isAtMost(ranAfter, 3_600_000 + 120_000)
      }).pipe(onTestClock), 60_000)

    it.effect("cron inserts one job per slot as two virtual hours pass", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const entries = yield* Cron.parse([Cron.entry("*/5 * * * *", Tick, {})])
        yield* TestClock.setTime(Date.UTC(2100, 0, 1))
        const loop = yield* Effect.forkChild(Cron.loop({ sql, prefix, entries, isLeader: Effect.succeed(true) }))
        const count = Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`, (rows) => rows[0]!.n)
        // A new leader looks back one minute: the slot at the start is inserted at once.
        // Once a slot's job is in, the loop only has to compute its next sleep: give it a live moment.
        const settle = TestClock.withLive(Effect.sleep("20 millis"))
        yield* untilLive(Effect.map(count, (n) => n === 1))
        yield* settle
        // Then one job per 5-minute slot (the loop wakes a few milliseconds after each slot).
        for (let slot = 1; slot <= 24; slot++) {
          yield* TestClock.adjust(Duration.sum(Duration.minutes(5), Duration.millis(10)))
          yield* untilLive(Effect.map(count, (n) => n === slot + 1))
          yield* settle
        }
        yield* Fiber.interrupt(loop)
        assert.strictEqual(yield* count, 25)
        const keys = yield* sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`
        assert.strictEqual(keys[24]!.k, "cron:Tick:*/5 * * * *:2100-01-01T02:00:00.000Z")
      }).pipe(onTestClock), 60_000)

    it.effect("a cron loop woken long after it meant to (a stalled process) back-fills to the pruner's maxAge, not over the stall", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const entries = yield* Cron.parse([Cron.entry("*/10 * * * * *", Tick, {}, { name: "stall" })])
        yield* TestClock.setTime(Date.UTC(2100, 0, 1, 10, 0, 0))
        // The next round starts five minutes late.
        const leader = stallingLeader("5 minutes")
        const loop = yield* Effect.forkChild(
          Cron.loop({ sql, prefix, entries, isLeader: leader.isLeader, maxAge: Duration.minutes(1) })
        )
        const keys = Effect.map(
          sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`,
          (rows) => rows.map((row) => row.k.replace("cron:stall:2100-01-01T", ""))
        )
        yield* untilLive(Effect.map(keys, (found) => found.length === 1))
        yield* TestClock.withLive(Effect.sleep("20 millis"))
        leader.stallNextRound()
        yield* TestClock.adjust("10 seconds")
        yield* untilLive(Effect.map(keys, (found) => found.length >= 7))
        yield* TestClock.withLive(Effect.sleep("50 millis"))
        // Not the 31 slots of the stall (another holder may have run the older ones, and the pruner
        // removed their jobs, so they would run twice): the slots of the last maxAge (1 minute).
        assert.deepStrictEqual(yield* keys, [
          "10:00:00.000Z",
          "10:04:20.000Z",
          "10:04:30.000Z",
          "10:04:40.000Z",
          "10:04:50.000Z",
          "10:05:00.000Z",
          "10:05:10.000Z"
        ])
        yield* TestClock.adjust(Duration.sum(Duration.seconds(10), Duration.millis(10)))
        yield* untilLive(Effect.map(keys, (found) => found.length === 8))
        assert.strictEqual((yield* keys)[7], "10:05:20.000Z")
        yield* Fiber.interrupt(loop)
      }).pipe(onTestClock), 60_000)

    it.effect("an hourly slot whose round starts 61 seconds late still runs (within the pruner's maxAge)", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const entries = yield* Cron.parse([Cron.entry("0 * * * *", Tick, {}, { name: "late" })])
        yield* TestClock.setTime(Date.UTC(2100, 0, 1, 9, 59, 30))
        const leader = stallingLeader("61 seconds")
        const loop = yield* Effect.forkChild(
          Cron.loop({ sql, prefix, entries, isLeader: leader.isLeader, maxAge: Duration.minutes(5) })
        )
        const keys = Effect.map(
          sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`,
          (rows) => rows.map((row) => row.k)
        )
        // The first round looks back over (09:58:30, 09:59:30]: nothing.
        yield* TestClock.withLive(Effect.sleep("200 millis"))
        assert.deepStrictEqual(yield* keys, [])
        leader.stallNextRound()
        yield* TestClock.adjust("30 seconds")
        yield* untilLive(Effect.map(keys, (found) => found.length === 1))
        assert.deepStrictEqual(yield* keys, ["cron:late:2100-01-01T10:00:00.000Z"])
        yield* Fiber.interrupt(loop)
      }).pipe(onTestClock), 60_000)

    it.effect("the look back judges each entry of the crontab by its own slots", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const entries = yield* Cron.parse([
          Cron.entry("*/10 * * * * *", Tick, {}, { name: "a" }),
          Cron.entry("*/15 * * * * *", Tick, {}, { name: "b" })
        ])
        // Entry a last ran at 10:00:20 (an earlier leader); entry b never ran.
        const [a] = entries
        yield* Cron.runOnce({ sql, prefix, entries: [a!], from: new Date(Date.UTC(2100, 0, 1, 10, 0, 15)), to: new Date(Date.UTC(2100, 0, 1, 10, 0, 20)) })
        yield* TestClock.setTime(Date.UTC(2100, 0, 1, 10, 0, 35))
        const keys = Effect.map(
          sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`,
          (rows) => rows.map((row) => row.k.replace(":2100-01-01T", " "))
        )
        const loop = yield* Effect.forkChild(Cron.loop({ sql, prefix, entries, isLeader: Effect.succeed(true) }))
        yield* untilLive(Effect.map(keys, (found) => found.length === 3))
        yield* TestClock.withLive(Effect.sleep("50 millis"))
        yield* Fiber.interrupt(loop)
        assert.deepStrictEqual(yield* keys, ["cron:a 10:00:20.000Z", "cron:a 10:00:30.000Z", "cron:b 10:00:30.000Z"])
      }).pipe(onTestClock), 60_000)

    it.effect("a new leader's look back inserts the slots after the last one that ran, or only the latest on a first start", () =>
      Effect.gen(function*() {
        yield* truncate
        const sql = yield* SqlClient
        const entries = yield* Cron.parse([Cron.entry("*/10 * * * * *", Tick, {}, { name: "every-10s" })])
        const keys = Effect.map(
          sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`,
          (rows) => rows.map((row) => row.k.slice("cron:every-10s:2100-01-01T".length))
        )
        /** Leads for a moment at `at`: the loop's first run is the look back. */
        const leadAt = (at: number, expected: number) =>
          Effect.gen(function*() {
            yield* TestClock.setTime(at)
            const loop = yield* Effect.forkChild(Cron.loop({ sql, prefix, entries, isLeader: Effect.succeed(true) }))
            yield* untilLive(Effect.map(keys, (found) => found.length === expected))
            yield* TestClock.withLive(Effect.sleep("50 millis"))
            yield* Fiber.interrupt(loop)
          })
        // A first start at 10:00:35: six slots in the last minute, none ran; only 10:00:30 is inserted.
        yield* leadAt(Date.UTC(2100, 0, 1, 10, 0, 35), 1)
        assert.deepStrictEqual(yield* keys, ["10:00:30.000Z"])
        // The leader dies; another takes over at 10:01:05: 10:00:40 .. 10:01:00 were missed, and are inserted.
        yield* leadAt(Date.UTC(2100, 0, 1, 10, 1, 5), 4)
        assert.deepStrictEqual(yield* keys, ["10:00:30.000Z", "10:00:40.000Z", "10:00:50.000Z", "10:01:00.000Z"])
      }).pipe(onTestClock), 60_000)
  })
})
