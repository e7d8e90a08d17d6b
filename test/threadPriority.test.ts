import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startNode } from "./support/node.ts"
import { Nice, niceOfAJob, ownNice, queue } from "./support/priorityWorker.ts"

const prefix = uniquePrefix("thread_priority")

// Linux keeps nice values per thread, and only there does a thread lower its own.
describe.runIf(process.platform === "linux")("thread priority", () => {
  it.layer(testLayer(prefix), { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect("worker threads run at nice 10 by default, and the node's own thread keeps its priority", () =>
      Effect.gen(function*() {
        const before = ownNice()
        const ran = yield* niceOfAJob(prefix, { size: 1 })
        assert.notStrictEqual(ran.threadId, 0)
        assert.strictEqual(ran.nice, Math.max(10, before))
        assert.strictEqual(ownNice(), before)
      }))

    it.effect("threads.nice sets the threads' priority; 0 leaves them at the node's", () =>
      Effect.gen(function*() {
        const before = ownNice()
        assert.strictEqual((yield* niceOfAJob(prefix, { size: 1, nice: 15 })).nice, Math.max(15, before))
        assert.strictEqual((yield* niceOfAJob(prefix, { size: 1, nice: 0 })).nice, before)
      }))

    it.effect("a child process (isolation: process) is lowered too", () =>
      Effect.gen(function*() {
        const ran = yield* niceOfAJob(prefix, { size: 1, isolation: "process", nice: 12 })
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

