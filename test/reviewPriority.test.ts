/**
 * Review of thread priority: a node that already runs at a higher nice value
 * than `threads.nice` must not get threads or processes that run before it.
 * This file raises its own thread's nice value (threads and processes
 * inherit it), and puts it back when it may (as root).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Os from "node:os"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { niceOfAJob, ownNice } from "./support/priorityWorker.ts"

const prefix = uniquePrefix("review_priority")

const niceOf = (threads: Parameters<typeof niceOfAJob>[1]) => Effect.map(niceOfAJob(prefix, threads), (ran) => ran.nice)

/** Runs `effect` with the calling thread at nice `nice`, then restores it if allowed. */
const atNice = <A, E, R>(nice: number, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const before = ownNice()
      Os.setPriority(0, nice)
      return before
    }),
    () => effect,
    (before) => Effect.sync(() => {
      try {
        Os.setPriority(0, before)
      } catch { /* not root: the rest of this file runs at the higher value */ }
    })
  )

describe.runIf(process.platform === "linux")("thread priority, reviewed", () => {
  it.layer(testLayer(prefix), { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect("a node at nice 15 keeps its threads at 15 or above, not at the default 10", () =>
      atNice(15, Effect.gen(function*() {
        assert.isAtLeast(yield* niceOf({ size: 1 }), 15)
      })))

    it.effect("a node at nice 15 keeps its child processes at 15 or above, not at threads.nice 12", () =>
      atNice(15, Effect.gen(function*() {
        assert.isAtLeast(yield* niceOf({ size: 1, isolation: "process", nice: 12 }), 15)
      })))
  })
})
