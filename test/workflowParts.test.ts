/**
 * What is built on workflows, in one process against real PostgreSQL on
 * TestClock: recorded results read typed by a fan-in, batches with their
 * callbacks and counts, and the operations on a whole workflow (status,
 * cancel, retry).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Batch, InvalidResultError, Oban, Worker, Workflow } from "effect-oban"
import { uniquePrefix } from "./support/db.ts"
import { drainDefault, onTestClock, stepStates, truncateWorkflows, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("workflow_parts")

const Step = Worker.make("Step", {
  args: Schema.Struct({ fail: Schema.optional(Schema.Boolean) }),
  maxAttempts: 1,
  perform: (job) => job.args.fail === true ? Effect.fail("boom") : Effect.void
})

const Square = Worker.make("Square", {
  args: Schema.Struct({ n: Schema.Int }),
  result: Schema.Struct({ square: Schema.Int }),
  maxAttempts: 1,
  perform: (job) => Effect.succeed({ square: job.args.n * job.args.n })
})

/** Claims a result of the wrong shape. */
const Liar = Worker.make("Liar", {
  args: Schema.Struct({}),
  result: Schema.Struct({ square: Schema.Int }),
  maxAttempts: 1,
  perform: () => Effect.succeed({ square: "four" } as unknown as { readonly square: number })
})

let total: number | undefined
const Sum = Worker.make("Sum", {
  args: Schema.Struct({}),
  result: Schema.Int,
  perform: (job) =>
    Effect.gen(function*() {
      const squares = yield* Workflow.results(job, Square)
      total = squares.reduce((sum, entry) => sum + entry.value.square, 0)
      return squares.length
    }).pipe(Effect.orDie)
})

/** Every callback run: which, and the counts it saw. */
const callbacks: Array<{ readonly which: string; readonly counts: Batch.Counts }> = []
const Callback = Worker.make("Callback", {
  args: Schema.Struct({ which: Schema.String }),
  perform: (job) =>
    Effect.gen(function*() {
      callbacks.push({ which: job.args.which, counts: yield* Batch.counts(job) })
    }).pipe(Effect.orDie)
})

const TestLive = workflowTestLayer(prefix, [Step, Square, Liar, Sum, Callback])

const reset = truncateWorkflows(prefix)

const resultError = (error: { readonly _tag: string }): InvalidResultError => {
  if (error instanceof InvalidResultError) return error
  return assert.fail(`expected InvalidResultError, got ${error._tag}`)
}

const drain = drainDefault

const states = (workflowId: string) => stepStates(prefix, workflowId)

describe("results, batches and operations", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("a fan-in reads 100 typed results; a result that does not match its schema is a typed error", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        let flow = Workflow.make<string>("results")
        const parts: Array<string> = []
        for (let n = 1; n <= 100; n++) {
          flow = flow.add(`sq-${n}`, Square.job({ n }))
          parts.push(`sq-${n}`)
        }
        const inserted = yield* Oban.insertWorkflow(flow.add("sum", Sum.job({}), { deps: parts }))
        total = undefined
        yield* drain
        assert.strictEqual(total, 338350)
        const sum = Option.getOrThrow(yield* Oban.getJob(inserted.jobs["sum"]!.id))
        assert.strictEqual(sum.state, "completed")
        const [stored] = yield* sql<{ result: unknown }>`SELECT result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${sum.id}`
        assert.strictEqual(stored!.result, 100)
        const one = yield* Workflow.result(sum, "sq-7", Square)
        assert.deepStrictEqual(one, { square: 49 })

        // A stored result that no longer decodes.
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET result = '{"square":"x"}'::jsonb WHERE id = ${inserted.jobs["sq-3"]!.id}`
        const mismatch = yield* Effect.flip(Workflow.results(sum, Square)).pipe(Effect.map(resultError))
        assert.deepStrictEqual([mismatch._tag, mismatch.reason, mismatch.jobId], ["InvalidResultError", "decode", inserted.jobs["sq-3"]!.id])
        const none = yield* Effect.flip(Workflow.result(sum, "sq-1", Sum)).pipe(Effect.map(resultError))
        assert.strictEqual(none.reason, "missing")

        // A perform whose value does not encode: the attempt fails with InvalidResultError, nothing is stored.
        const liar = yield* Oban.insertWorkflow(Workflow.make("liar").add("lie", Liar.job({})).add("after", Step.job({}), { deps: ["lie"] }))
        yield* drain
        const lie = Option.getOrThrow(yield* Oban.getJob(liar.jobs.lie.id))
        assert.strictEqual(lie.state, "discarded")
        assert.include(lie.errors[0]!.message, "InvalidResultError")
        assert.strictEqual((yield* states("liar"))["after"], "cancelled")
        const [noResult] = yield* sql<{ result: unknown }>`SELECT result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${lie.id}`
        assert.isNull(noResult!.result)
      }).pipe(onTestClock))

    it.effect("a batch of 500 with callbacks: each runs once (or is skipped) with the right counts", () =>
      Effect.gen(function*() {
        yield* reset
        callbacks.length = 0
        const withFailures = Batch.make("with-failures")
          .add(...Array.from({ length: 500 }, (_, n) => Step.job({ fail: n % 100 === 7 })))
          .onCompleted(Callback.job({ which: "completed" }))
          .onFailure(Callback.job({ which: "failure" }))
          .onFinished(Callback.job({ which: "finished" }))
        const inserted = yield* Batch.insert(withFailures)
        assert.strictEqual(inserted.jobs.length, 500)
        assert.strictEqual(inserted.callbacks.finished?.state, "suspended")
        yield* drain
        const expected = { total: 500, completed: 495, discarded: 5, cancelled: 0, pending: 0 }
        assert.deepStrictEqual(callbacks.map((run) => run.which).sort(), ["failure", "finished"])
        for (const run of callbacks) {
          const { byState: _, ...counts } = run.counts
          assert.deepStrictEqual(counts, expected)
        }
        const completed = Option.getOrThrow(yield* Oban.getJob(inserted.callbacks.completed!.id))
        assert.strictEqual(completed.state, "cancelled")

        callbacks.length = 0
        const clean = yield* Batch.insert(
          Batch.make("clean").add(...Array.from({ length: 500 }, () => Step.job({})))
            .onCompleted(Callback.job({ which: "completed" }))
            .onFailure(Callback.job({ which: "failure" }))
            .onFinished(Callback.job({ which: "finished" }))
        )
        yield* drain
        assert.deepStrictEqual(callbacks.map((run) => run.which).sort(), ["completed", "finished"])
        assert.deepStrictEqual(callbacks.map((run) => run.counts.completed), [500, 500])
        const skipped = Option.getOrThrow(yield* Oban.getJob(clean.callbacks.failure!.id))
        assert.strictEqual(skipped.state, "cancelled")
        assert.strictEqual((skipped.meta["workflow"] as Record<string, unknown>)["skipped"], "no dependency failed")
      }).pipe(onTestClock))

    it.effect("retrying a batch in which nothing failed leaves its skipped failure callback skipped", () =>
      Effect.gen(function*() {
        yield* reset
        callbacks.length = 0
        const clean = yield* Batch.insert(
          Batch.make("retried-clean").add(Step.job({}), Step.job({}))
            .onFailure(Callback.job({ which: "failure" }))
            .onFinished(Callback.job({ which: "finished" }))
        )
        yield* drain
        assert.deepStrictEqual(callbacks.map((run) => run.which), ["finished"])
        // The callback is cancelled (skipped), but nothing failed: a retry has nothing to do. Before, it retried the
        // callback, found its dependencies completed, and ran it.
        assert.deepStrictEqual(yield* Workflow.retry("retried-clean"), [])
        yield* drain
        assert.deepStrictEqual(callbacks.map((run) => run.which), ["finished"])
        const failure = Option.getOrThrow(yield* Oban.getJob(clean.callbacks.failure!.id))
        assert.strictEqual(failure.state, "cancelled")
        assert.strictEqual((failure.meta["workflow"] as Record<string, unknown>)["skipped"], "no dependency failed")

        // A step added after the skipped callback is cancelled with it; a retry leaves it too, rather than put it
        // to wait for good for a callback that stays skipped.
        const after = yield* Oban.insertWorkflow(
          Workflow.make<string>("retried-clean", { existingSteps: "keep" }).add("after", Step.job({}), { deps: ["on-failure"] })
        )
        assert.strictEqual(after.jobs.after.state, "cancelled")
        assert.deepStrictEqual(yield* Workflow.retry("retried-clean"), [])
        assert.strictEqual((yield* states("retried-clean"))["after"], "cancelled")
      }).pipe(onTestClock))

    it.effect("a batch with no jobs runs its completed and finished callbacks at once, and has no failure callback", () =>
      Effect.gen(function*() {
        yield* reset
        callbacks.length = 0
        const empty = yield* Batch.insert(
          Batch.make("empty")
            .onCompleted(Callback.job({ which: "completed" }))
            .onFailure(Callback.job({ which: "failure" }))
            .onFinished(Callback.job({ which: "finished" }))
        )
        assert.deepStrictEqual(Object.keys(empty.callbacks).sort(), ["completed", "finished"])
        yield* drain
        // Before, the failure callback depended on nothing and ran next to the others.
        assert.deepStrictEqual(callbacks.map((run) => run.which).sort(), ["completed", "finished"])
        assert.deepStrictEqual(callbacks.map((run) => run.counts.total), [0, 0])
      }).pipe(onTestClock))

    it.effect("status counts states and names blockers; retry re-runs the failed part; cancel stops the rest", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        const flow = Workflow.make("ops")
          .add("a", Step.job({}))
          .add("b", Step.job({ fail: true }), { deps: ["a"] })
          .add("c", Step.job({}), { deps: ["b"] })
          .add("d", Step.job({}))
        const inserted = yield* Oban.insertWorkflow(flow)
        const before = yield* Workflow.status("ops")
        assert.deepStrictEqual(before.counts, { available: 2, suspended: 2 })
        assert.deepStrictEqual(before.jobs.map((job) => [job.step, job.blockedBy]), [["a", []], ["b", ["a"]], ["c", ["b"]], ["d", []]])
        yield* drain
        const failed = yield* Workflow.status("ops")
        assert.deepStrictEqual(failed.counts, { completed: 2, discarded: 1, cancelled: 1 })
        assert.isTrue(failed.finished)

        // The retry gives b another attempt and puts c back to wait for it.
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{}'::jsonb WHERE id = ${inserted.jobs.b.id}`
        const retried = yield* Workflow.retry("ops")
        assert.deepStrictEqual([...retried].sort((x, y) => x - y), [inserted.jobs.b.id, inserted.jobs.c.id])
        const again = yield* Workflow.status("ops")
        assert.deepStrictEqual(again.counts, { completed: 2, available: 1, suspended: 1 })
        assert.deepStrictEqual(again.jobs.find((job) => job.step === "c")!.blockedBy, ["b"])
        const c = Option.getOrThrow(yield* Oban.getJob(inserted.jobs.c.id))
        assert.isUndefined(Option.getOrThrow(Workflow.membership(c)).cancelledBy)
        yield* drain
        assert.deepStrictEqual((yield* Workflow.status("ops")).counts, { completed: 4 })

        const stop = yield* Oban.insertWorkflow(Workflow.make("stop").add("x", Step.job({})).add("y", Step.job({}), { deps: ["x"] }))
        const cancelled = yield* Workflow.cancel("stop")
        assert.deepStrictEqual(cancelled.map((job) => [job.id, job.previousState]), [[stop.jobs.x.id, "available"], [stop.jobs.y.id, "suspended"]])
        assert.deepStrictEqual((yield* Workflow.status("stop")).counts, { cancelled: 2 })
        assert.deepStrictEqual((yield* Workflow.status("unknown")).total, 0)
      }).pipe(onTestClock))
  })
})
