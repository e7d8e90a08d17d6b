/**
 * SIGTERM through runMain while a job is inside `Effect.uninterruptible` as
 * the grace period ends. Interrupted inside the region, Effect ends the fiber
 * as interrupted when the region ends, dropping what it did: a job whose last
 * step was that region was given back and ran a second time (an operator's
 * rolling restart saw it). The node now interrupts a job only once it is
 * interruptible: one whose region was its last step completes; one that goes
 * on past the region is interrupted as it leaves it and given back.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { rows, startDeployNode } from "./support/deployNode.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { stopNode } from "./support/processes.ts"

// The same name and args as the worker in nodeProcess.ts; only used to build requests here.
const HeldLast = Worker.make("HeldLast", { args: Schema.Struct({}), perform: () => Effect.void })

/** One uninterruptible region longer than the node waits for a job to leave one after the grace period (5 s). */
const Regions = Worker.make("RegionsLong", {
  args: Schema.Struct({}),
  queue: "regions",
  perform: () => Effect.uninterruptible(Effect.sleep("6500 millis"))
})

/** Starts a node, runs one HeldLast job, sends SIGTERM while its region runs; the exit code, the time and the row. */
const stopInRegion = (name: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(name)
    return yield* Effect.gen(function*() {
      const node = yield* startDeployNode(prefix, { GRACE_MS: "200", HELD_MS: "1500", LOG_LEVEL: "Warn", ...env })
      yield* Oban.insertAll([HeldLast.job({})])
      yield* waitFor("the job to run", Effect.map(rows(prefix), (all) => all.every((row) => row.state === "executing")))
      const sentAt = Date.now()
      const code = yield* stopNode(node, "SIGTERM")
      const [row] = yield* rows(prefix)
      return { code, millis: Date.now() - sentAt, row: row!, output: node.output() }
    }).pipe(Effect.provide(testLayer(prefix)))
  })

/** The job completed, with one run (recorded at the region's end) and no second to come; the node exited 0. */
const completesOnce = (name: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const { code, millis, output, row } = yield* stopInRegion(name, env)
    assert.strictEqual(code, 0, output)
    assert.isBelow(millis, 10_000, output)
    // Before, it was available at attempt 0 with a shutdown entry, and ran again.
    assert.deepStrictEqual([row.state, row.attempt, row.runs, row.kinds], ["completed", 1, 1, []], output)
  }).pipe(Effect.scoped)

describe("shutdown of a job inside an uninterruptible region", () => {
  it.live("its region is its last step: it completes, once, and the node exits 0", () => completesOnce("region_last", {}), 60_000)

  it.live("with a timeout, whose race runs perform in a fiber of its own: it completes too", () =>
    completesOnce("region_timed", { HELD_TIMEOUT_MS: "60000" }), 60_000)

  it.live("a region longer than the wait: interrupted 5 s after the grace period, given back when the region ends", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("region_loop")
      yield* Effect.gen(function*() {
        const node = yield* startNode({ prefix, node: "regions-node", queues: { regions: 1 }, workers: [Regions], shutdownGracePeriod: "100 millis" })
        const job = yield* Oban.insert(Regions.job({}))
        yield* waitFor("the job to run", Effect.map(jobRow(prefix, job.id), (row) => row.state === "executing"))
        const started = Date.now()
        yield* node.stop
        const took = Date.now() - started
        // The node waits for the region to end, interrupted or not (so shutdown is never held for good by
        // one region after another); past the wait it counts as stopped halfway, as any interrupted job.
        assert.isAtLeast(took, 6_000)
        assert.isBelow(took, 10_000)
        const row = yield* jobRow(prefix, job.id)
        assert.deepStrictEqual([row.state, row.attempt], ["available", 0])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 30_000)

  it.live("under runMain too: a last region longer than the wait is interrupted 5 s after the grace period and given back", () =>
    Effect.gen(function*() {
      // The region (8 s) is the job's last step, as in the first case, but outlasts the grace period (0.2 s)
      // and the wait after it (5 s): the node interrupts it there, so the region's end drops what it did and
      // the job is given back (waited for without a bound, it would have completed).
      const { code, millis, output, row } = yield* stopInRegion("region_long", { HELD_MS: "8000" })
      assert.strictEqual(code, 0, output)
      assert.isAtLeast(millis, 5_000, output)
      assert.isBelow(millis, 12_000, output)
      assert.deepStrictEqual([row.state, row.attempt, row.runs, row.kinds], ["available", 0, 1, ["shutdown"]], output)
    }).pipe(Effect.scoped), 60_000)

  it.live("it goes on past its region: interrupted as it leaves it and given back, without waiting out the rest", () =>
    Effect.gen(function*() {
      const { code, millis, output, row } = yield* stopInRegion("region_then_more", { AFTER_MS: "20000" })
      assert.strictEqual(code, 0, output)
      // The region (1.5 s) ends, then the interrupt: not the 20 s the job would go on for.
      assert.isBelow(millis, 10_000, output)
      assert.deepStrictEqual([row.state, row.attempt, row.runs, row.kinds], ["available", 0, 1, ["shutdown"]], output)
    }).pipe(Effect.scoped), 60_000)
})
