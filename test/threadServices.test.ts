/**
 * Thread workers with services: `threads.layer` is built in the thread that
 * runs the job, once per thread, shared by the workers that name the same
 * layer; a build that fails fails the attempt and is tried again by the next;
 * `ObanTest` builds it on the main thread, or with `threads: true` runs the
 * workers on a pool of its own.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as ObanTest from "../src/Testing.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { AlsoGreets, Greets, HoldsSocket, queue, UsesFlakyStore } from "./support/threadServiceWorkers.ts"
import { Busy, queue as busyQueue } from "./support/threadWorkers.ts"

const prefix = uniquePrefix("thread_services")

const run = (request: Parameters<typeof Oban.insert>[0]) =>
  Effect.gen(function*() {
    const job = yield* Oban.insert(request)
    yield* waitFor(
      `job ${job.id} to leave executing`,
      Effect.map(jobRow(prefix, job.id), (row) => !["available", "executing"].includes(row.state))
    )
    const sql = yield* SqlClient
    const [stored] = yield* sql<{ result: Record<string, unknown> | null }>`
      SELECT result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
    return { row: yield* jobRow(prefix, job.id), result: stored!.result }
  })

const NodeLive = Layer.effectDiscard(
  startNode({
    prefix,
    node: "thread-services-node",
    queues: { [queue]: 1 },
    workers: [Greets, AlsoGreets, UsesFlakyStore],
    pollInterval: "100 millis",
    stageInterval: "100 millis",
    shutdownGracePeriod: "1 second",
    threads: { size: 1 }
  })
)

layer(NodeLive.pipe(Layer.provideMerge(testLayer(prefix))), { excludeTestServices: true, timeout: 60_000 })(
  "thread services",
  (it) => {
    it.effect("the layer is built in the thread, once, and serves every job and worker that names it", () =>
      Effect.gen(function*() {
        const first = yield* run(Greets.job({ name: "ada" }))
        const second = yield* run(Greets.job({ name: "bob" }))
        const other = yield* run(AlsoGreets.job({ name: "cy" }))
        for (const { row } of [first, second, other]) assert.strictEqual(row.state, "completed")
        const threadId = first.result!["threadId"] as number
        assert.notStrictEqual(threadId, 0)
        assert.deepStrictEqual(first.result, { greeting: `hello ada from thread ${threadId}`, build: 1, builds: 1, threadId })
        assert.deepStrictEqual(second.result, { greeting: `hello bob from thread ${threadId}`, build: 1, builds: 1, threadId })
        assert.deepStrictEqual(other.result, {
          greeting: `HELLO CY FROM THREAD ${threadId}`,
          build: 1,
          builds: 1,
          threadId
        })
      }), 30_000)

    it.effect("a build that fails fails the attempt as a defect that says why; the next attempt builds again", () =>
      Effect.gen(function*() {
        const failed = yield* run(UsesFlakyStore.job({}))
        assert.strictEqual(failed.row.state, "retryable")
        assert.strictEqual(failed.row.errors[0]!.kind, "defect")
        assert.include(failed.row.errors[0]!.message, `the services of worker "ThreadUsesFlakyStore"`)
        assert.include(failed.row.errors[0]!.message, "connection refused")
        const next = yield* run(UsesFlakyStore.job({}))
        assert.strictEqual(next.row.state, "completed")
        assert.deepStrictEqual(next.result, { build: 2 })
      }), 30_000)
  }
)

layer(testLayer(`${prefix}_inline`), { excludeTestServices: true })("thread services in ObanTest", (it) => {
  it.effect("performJob builds the layer on the main thread (without it the service would be missing: a crash)", () =>
    Effect.gen(function*() {
      // Completed, with the result it recorded: served on the main thread (thread id 0).
      const greeted = yield* ObanTest.performJob(Greets, { name: "dee" })
      assert.deepStrictEqual([greeted._tag, greeted._tag === "Completed" && greeted.value?.greeting], ["Completed", "hello dee from thread 0"])
      const also = yield* ObanTest.performJob(AlsoGreets, { name: "eve" })
      assert.deepStrictEqual([also._tag, also._tag === "Completed" && also.value?.threadId], ["Completed", 0])
    }))

  it.effect("closing a test layer with threads does not wait for a thread whose layer holds a socket", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const kit = yield* Layer.buildWithScope(ObanTest.layer({ workers: [HoldsSocket], threads: true }), scope)
      yield* Oban.insert(HoldsSocket.job({})).pipe(Effect.provide(kit))
      const drained = yield* ObanTest.drainQueue({ queue }).pipe(Effect.provide(kit))
      assert.strictEqual(drained.completed, 1)
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      // The thread is terminated; asked to close, it would be waited for 5 s.
      assert.isBelow(Date.now() - started, 4_000)
    }), 30_000)

  it.effect("bad thread options fail the test layer with InvalidConfigError, before any thread starts", () =>
    Effect.gen(function*() {
      const error = yield* Layer.build(ObanTest.layer({ workers: [Busy], threads: { size: 0 } })).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "InvalidConfigError")
      assert.strictEqual(error._tag === "InvalidConfigError" ? error.field : "", "threads.size")
      // Checked even when no worker runs on threads, and a module that is no file is refused as on a node.
      const unused = yield* Layer.build(ObanTest.layer({ workers: [], threads: { size: 0 } })).pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(unused._tag, "InvalidConfigError")
      const Remote = Worker.make("ThreadRemoteInTest", {
        args: Schema.Struct({}),
        threads: { module: "https://example.com/workers.ts" },
        perform: () => Effect.void
      })
      const remote = yield* Layer.build(ObanTest.layer({ workers: [Remote], threads: true })).pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(remote._tag === "InvalidConfigError" ? remote.field : remote._tag, "workers")
    }))
})

const poolPrefix = `${prefix}_pool`
const PoolTestLive = ObanTest.layer({ workers: [Greets, Busy], prefix: poolPrefix, threads: true }).pipe(
  Layer.provideMerge(testLayer(poolPrefix))
)

layer(PoolTestLive, { excludeTestServices: true, timeout: 60_000 })("ObanTest with threads: true", (it) => {
  it.effect("drainQueue runs thread workers on a thread, which builds their layer", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Greets.job({ name: "fay" }))
      assert.deepStrictEqual(yield* ObanTest.drainQueue({ queue }), {
        completed: 1,
        failed: 0,
        snoozed: 0,
        cancelled: 0,
        discarded: 0
      })
      const sql = yield* SqlClient
      const [stored] = yield* sql<{ result: { threadId: number; greeting: string } }>`
        SELECT result FROM ${sql(poolPrefix)}.oban_jobs_all WHERE id = ${job.id}`
      assert.notStrictEqual(stored!.result.threadId, 0)
      assert.strictEqual(stored!.result.greeting, `hello fay from thread ${stored!.result.threadId}`)
    }), 30_000)

  it.effect("a timeout stops a busy loop for real: the thread is terminated", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Busy.job({ millis: 30_000 }, { timeout: "200 millis" }))
      const started = Date.now()
      const result = yield* ObanTest.drainQueue({ queue: busyQueue })
      const elapsed = Date.now() - started
      assert.strictEqual(result.failed, 1)
      // On the main thread the loop would hold the test for its 30 s.
      assert.isBelow(elapsed, 10_000)
      const row = yield* jobRow(poolPrefix, job.id)
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors[0]!.kind, "timeout")
    }), 30_000)
})
