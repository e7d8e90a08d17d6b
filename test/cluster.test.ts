import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Notifier from "../src/Notifier.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("cluster")

/** How many times each job id ran, across every node in this process. */
const runs = new Map<number, number>()
const record = (id: number) => Effect.sync(() => runs.set(id, (runs.get(id) ?? 0) + 1))

const Count = Worker.make("Count", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "drain",
  perform: (job) => record(job.id)
})

/** Blocks until released; records whether it was interrupted. */
const started = new Map<number, Deferred.Deferred<void>>()
const startedOf = (id: number) => {
  const existing = started.get(id)
  if (existing !== undefined) return existing
  const deferred = Deferred.makeUnsafe<void>()
  started.set(id, deferred)
  return deferred
}
const interrupted = new Set<number>()
const Block = Worker.make("Block", {
  args: Schema.Struct({ ms: Schema.Int }),
  queue: "block",
  perform: (job) =>
    Effect.gen(function*() {
      yield* Deferred.succeed(startedOf(job.id), undefined)
      yield* Effect.sleep(job.args.ms)
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.add(job.id))))
})

const awaitStart = (id: number) =>
  Deferred.await(startedOf(id)).pipe(Effect.timeout("10 seconds"))

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
})

/** Short jobs: a producer claims many ahead of its slots. */
const Short = Worker.make("Short", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "hoard",
  perform: () => Effect.sleep("20 millis")
})

const workers = [Count, Block, Short]
const base = { prefix, workers, pollInterval: "200 millis", stageInterval: "200 millis" } as const

layer(testLayer(prefix, { maxConnections: 20 }), { excludeTestServices: true })("a cluster of two nodes", (it) => {
  it.effect("two nodes drain 5,000 jobs, each exactly once", () =>
    Effect.gen(function*() {
      yield* truncate
      runs.clear()
      yield* startNode({ ...base, node: "a", queues: { drain: 20 } })
      yield* startNode({ ...base, node: "b", queues: { drain: 20 } })
      const jobs = yield* Oban.insertAll(Array.from({ length: 5_000 }, (_, n) => Count.job({ n })))
      yield* waitFor("every job completed", Effect.map(countByState(prefix), (c) => c["completed"] === 5_000), "60 seconds")
      assert.strictEqual(runs.size, 5_000)
      assert.isTrue(jobs.every((job) => runs.get(job.id) === 1))
      const sql = yield* SqlClient
      const nodes = yield* sql<{ node: string; n: number }>`
        SELECT attempted_by[1] AS node, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY 1 ORDER BY 1`
      // Both nodes took part.
      assert.deepStrictEqual(nodes.map((row) => row.node), ["a", "b"])
    }))

  it.effect("cancelling a job executing on the other node interrupts it there; it ends cancelled", () =>
    Effect.gen(function*() {
      yield* truncate
      const a = yield* startNode({ ...base, node: "cancel-a", queues: {} })
      yield* startNode({ ...base, node: "cancel-b", queues: { block: 5 } })
      const job = yield* Oban.insert(Block.job({ ms: 60_000 }))
      yield* awaitStart(job.id)
      const cancelled = yield* a.oban.cancelJob(job.id)
      assert.isTrue(Option.isSome(cancelled))
      // The row stays executing, with the cancel requested, until node b has written the attempt's outcome.
      assert.strictEqual(Option.getOrThrow(cancelled).state, "executing")
      yield* waitFor("the job's fiber to be interrupted", Effect.sync(() => interrupted.has(job.id)), "10 seconds")
      yield* waitFor("the job's row cancelled", Effect.map(jobRow(prefix, job.id), (row) => row.state === "cancelled"), "10 seconds")
      assert.isTrue(Option.isNone(yield* a.oban.cancelJob(job.id)))
    }))

  it.effect("cancelling a workflow interrupts its steps executing on both nodes and cancels the rest", () =>
    Effect.gen(function*() {
      yield* truncate
      const a = yield* startNode({ ...base, node: "wf-a", queues: { block: 1 } })
      yield* startNode({ ...base, node: "wf-b", queues: { block: 1 } })
      const flow = yield* Oban.insertWorkflow(
        Workflow.make("cancel-me")
          .add("x", Block.job({ ms: 60_000 }))
          .add("y", Block.job({ ms: 60_000 }))
          .add("z", Count.job({ n: 0 }), { deps: ["x", "y"] })
      )
      yield* awaitStart(flow.jobs.x.id)
      yield* awaitStart(flow.jobs.y.id)
      const cancelled = yield* a.oban.cancelWorkflow("cancel-me")
      assert.deepStrictEqual(
        cancelled.map((job) => job.previousState),
        ["executing", "executing", "suspended"]
      )
      yield* waitFor(
        "both fibers interrupted",
        Effect.sync(() => interrupted.has(flow.jobs.x.id) && interrupted.has(flow.jobs.y.id)),
        "10 seconds"
      )
      // The executing steps end cancelled once their nodes have written the interrupted attempts.
      yield* waitFor("the interrupted steps acked", Effect.map(a.oban.workflowStatus("cancel-me"), (status) => status.finished))
      const status = yield* a.oban.workflowStatus("cancel-me")
      assert.deepStrictEqual(status.counts, { cancelled: 3 })
    }))

  it.effect("pause, resume and scale on all nodes take effect on both", () =>
    Effect.gen(function*() {
      const a = yield* startNode({ ...base, node: "ctl-a", queues: { drain: 2 } })
      const b = yield* startNode({ ...base, node: "ctl-b", queues: { drain: 2 } })
      yield* a.oban.pauseQueue("drain")
      yield* waitFor("both paused", Effect.map(b.oban.checkQueue("drain"), (s) => s.paused))
      assert.isTrue((yield* a.oban.checkQueue("drain")).paused)
      yield* b.oban.scaleQueue("drain", 7)
      yield* waitFor("a scaled", Effect.map(a.oban.checkQueue("drain"), (s) => s.limit === 7))
      assert.strictEqual((yield* b.oban.checkQueue("drain")).limit, 7)
      yield* a.oban.resumeQueue("drain")
      yield* waitFor("b resumed", Effect.map(b.oban.checkQueue("drain"), (s) => !s.paused))
      // This node only:
      yield* a.oban.pauseQueue("drain", { scope: "node" })
      assert.isTrue((yield* a.oban.checkQueue("drain")).paused)
      yield* Effect.sleep("300 millis")
      assert.isFalse((yield* b.oban.checkQueue("drain")).paused)
      const unknown = yield* a.oban.checkQueue("nope").pipe(Effect.flip)
      assert.strictEqual(unknown._tag, "UnknownQueueError")
      if (unknown._tag === "UnknownQueueError") assert.match(unknown.message, /queue "nope" does not run on node \S+/)
      const badLimit = yield* a.oban.scaleQueue("drain", 0).pipe(Effect.flip)
      assert.strictEqual(badLimit._tag, "InvalidConfigError")
      // A name PostgreSQL cannot store is bad input, refused before any statement, in either scope.
      for (const scope of ["all", "node"] as const) {
        const nul = yield* a.oban.pauseQueue("dr\u0000ain", { scope }).pipe(Effect.flip)
        assert.strictEqual(nul._tag, "InvalidConfigError")
        if (nul._tag === "InvalidConfigError") {
          assert.strictEqual(nul.field, "queue")
          assert.match(nul.message, /queue name "dr\\u0000ain" contains the NUL character/)
        }
      }
      // A stray space makes another queue, which no node could run: refused too.
      const spaced = yield* a.oban.pauseQueue(" drain").pipe(Effect.flip)
      assert.strictEqual(spaced._tag, "InvalidConfigError")
      assert.match(spaced.message, /^queue name " drain" must not start or end with whitespace$/)
      const surrogate = yield* a.oban.setQueueLimits("\uD800", { global: 1 }).pipe(Effect.flip)
      assert.strictEqual(surrogate._tag, "InvalidConfigError")
      assert.strictEqual((yield* a.oban.scaleQueue("", 3).pipe(Effect.flip))._tag, "InvalidConfigError")
    }))

  it.effect("a pause a node learns from its heartbeat (it missed the signal) gives back the jobs it claimed ahead", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const a = yield* startNode({ ...base, node: "hoard-a", queues: { hoard: 2 }, heartbeatInterval: "200 millis" })
      yield* Oban.insertAll(Array.from({ length: 2_000 }, (_, n) => Short.job({ n })))
      const executing = Effect.map(countByState(prefix), (states) => states["executing"] ?? 0)
      yield* waitFor("jobs claimed ahead of the two slots", Effect.map(executing, (n) => n > 2))
      // What Cluster.pauseQueue stores, without its signal (as if this node's LISTEN connection were down).
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET paused = true WHERE queue = 'hoard'`
      yield* waitFor("paused by the heartbeat", Effect.map(a.oban.checkQueue("hoard"), (state) => state.paused))
      // The running two finish; the waiting ones go back instead of staying claimed by a paused node.
      yield* waitFor("nothing left executing", Effect.map(executing, (n) => n === 0))
      const [unused] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs WHERE state = 'available' AND attempt = 0`
      const states = yield* countByState(prefix)
      assert.strictEqual(unused!.n, states["available"], "jobs given back used no attempt")
      assert.strictEqual((states["available"] ?? 0) + (states["completed"] ?? 0), 2_000)
      yield* a.stop
    }))

  it.effect("a paused queue fetches nothing until resumed", () =>
    Effect.gen(function*() {
      yield* truncate
      runs.clear()
      const a = yield* startNode({ ...base, node: "pause-a", queues: { drain: { limit: 5, paused: true } } })
      const job = yield* Oban.insert(Count.job({ n: 1 }))
      yield* Effect.sleep("500 millis")
      assert.strictEqual((yield* jobRow(prefix, job.id)).state, "available")
      yield* a.oban.resumeQueue("drain", { scope: "node" })
      yield* waitFor("completed", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
    }))

  it.effect("closing a node mid-job puts its jobs back to available with the attempt kept", () =>
    Effect.gen(function*() {
      yield* truncate
      const node = yield* startNode({ ...base, node: "stop-me", queues: { block: 5 }, shutdownGracePeriod: "200 millis" })
      const jobs = yield* Oban.insertAll([Block.job({ ms: 60_000 }), Block.job({ ms: 60_000 })])
      yield* Effect.forEach(jobs, (job) => awaitStart(job.id))
      yield* node.stop
      for (const job of jobs) {
        const row = yield* jobRow(prefix, job.id)
        assert.strictEqual(row.state, "available")
        assert.strictEqual(row.attempt, 0)
        assert.strictEqual(row.errors.length, 1)
        assert.strictEqual(row.errors[0]!.kind, "shutdown")
        assert.isTrue(interrupted.has(job.id))
      }
      assert.isUndefined((yield* countByState(prefix))["executing"])
    }))

  it.effect("jobs that finish within the grace period complete during shutdown", () =>
    Effect.gen(function*() {
      yield* truncate
      const node = yield* startNode({ ...base, node: "grace", queues: { block: 5 }, shutdownGracePeriod: "5 seconds" })
      const job = yield* Oban.insert(Block.job({ ms: 300 }))
      yield* awaitStart(job.id)
      yield* node.stop
      assert.strictEqual((yield* jobRow(prefix, job.id)).state, "completed")
    }))
})

describe("wake-ups", () => {
  const wakePrefix = uniquePrefix("wake")
  layer(testLayer(wakePrefix), { excludeTestServices: true })((it) => {
    it.effect("with a 10 s poll interval, a new job starts within seconds of insert, long before the next poll (NOTIFY)", () =>
      Effect.gen(function*() {
        const latency = yield* Ref.make<ReadonlyArray<number>>([])
        const Timed = Worker.make("Timed", {
          args: Schema.Struct({ at: Schema.Number }),
          perform: (job) => Ref.update(latency, (all) => [...all, Date.now() - job.args.at])
        })
        yield* startNode({ prefix: wakePrefix, node: "notify", queues: { default: 2 }, workers: [Timed], pollInterval: "10 seconds" })
        // The first poll happens at start; wait past it so only NOTIFY can wake the producer.
        yield* Effect.sleep("300 millis")
        for (let i = 0; i < 5; i++) {
          yield* Oban.insert(Timed.job({ at: Date.now() }))
          yield* Effect.sleep("50 millis")
        }
        yield* waitFor("five runs", Effect.map(Ref.get(latency), (all) => all.length === 5))
        const worst = Math.max(...(yield* Ref.get(latency)))
        // Woken by polling, a job inserted here would wait about 9.5 s (the next poll, 10 s after the first).
        assert.isBelow(worst, 5_000)
      }).pipe(Effect.provide(Config.layer({ prefix: wakePrefix }))))

    it.effect("after the LISTEN connection is killed, jobs still run and listening comes back", () =>
      Effect.gen(function*() {
        const done = yield* Ref.make(0)
        const Tick = Worker.make("Tick", { args: Schema.Struct({}), perform: () => Ref.update(done, (n) => n + 1) })
        yield* startNode({
          prefix: wakePrefix,
          node: "listener-victim",
          queues: { ticks: 2 },
          workers: [Tick],
          pollInterval: "300 millis"
        })
        const sql = yield* SqlClient
        const name = Notifier.applicationName("listener-victim")
        const listeners = sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${name}`
        yield* waitFor("the listener to connect", Effect.map(listeners, (rows) => rows[0]!.n === 1))
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${name}`
        yield* Oban.insert(Tick.job({}, { queue: "ticks" }))
        yield* waitFor("the job to run by polling", Effect.map(Ref.get(done), (n) => n === 1))
        yield* waitFor("the listener to reconnect", Effect.map(listeners, (rows) => rows[0]!.n === 1))
      }).pipe(Effect.provide(Config.layer({ prefix: wakePrefix }))))
  })
})
