import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { Nice, ownNice, queue } from "./support/priorityWorker.ts"

const prefix = uniquePrefix("thread_priority")

/** Runs one `Nice` job on a node with these thread options; returns where it ran and at what nice value. */
const niceOfAJob = (threads: Parameters<typeof startNode>[0]["threads"]) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const node = yield* startNode({ prefix, queues: { [queue]: 1 }, workers: [Nice], pollInterval: "100 millis", threads })
    const job = yield* Oban.insert(Nice.job({}))
    yield* waitFor("the job to complete", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
    const [row] = yield* sql<{ result: { nice: number; pid: number; threadId: number } }>`
      SELECT result FROM ${sql(prefix)}.oban_jobs WHERE id = ${job.id}`
    yield* node.stop
    return row!.result
  }).pipe(Effect.scoped)

// Linux keeps nice values per thread, and only there does a thread lower its own.
describe.runIf(process.platform === "linux")("thread priority", () => {
  it.layer(testLayer(prefix), { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect("worker threads run at nice 10 by default, and the node's own thread keeps its priority", () =>
      Effect.gen(function*() {
        const before = ownNice()
        const ran = yield* niceOfAJob({ size: 1 })
        assert.notStrictEqual(ran.threadId, 0)
        assert.strictEqual(ran.nice, Math.max(10, before))
        assert.strictEqual(ownNice(), before)
      }))

    it.effect("threads.nice sets the threads' priority; 0 leaves them at the node's", () =>
      Effect.gen(function*() {
        const before = ownNice()
        assert.strictEqual((yield* niceOfAJob({ size: 1, nice: 15 })).nice, Math.max(15, before))
        assert.strictEqual((yield* niceOfAJob({ size: 1, nice: 0 })).nice, before)
      }))

    it.effect("a child process (isolation: process) is lowered too", () =>
      Effect.gen(function*() {
        const ran = yield* niceOfAJob({ size: 1, isolation: "process", nice: 12 })
        assert.notStrictEqual(ran.pid, process.pid)
        assert.strictEqual(ran.nice, Math.max(12, ownNice()))
      }))

    it.effect("a nice value outside 0-19 fails the layer with InvalidConfigError", () =>
      Effect.gen(function*() {
        for (const nice of [-1, 20, 2.5]) {
          const error = yield* Effect.flip(startNode({ prefix, queues: { [queue]: 1 }, workers: [Nice], threads: { nice } }))
          assert.deepStrictEqual([(error as { _tag?: string })._tag, (error as { field?: string }).field], [
            "InvalidConfigError",
            "threads.nice"
          ])
        }
      }).pipe(Effect.scoped))
  })
})

