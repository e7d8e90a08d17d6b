/**
 * Appending to a workflow again: a job that added steps and then failed runs
 * again and appends the same steps; they are kept as they are, not refused
 * (which discarded the job and cancelled what it had added), and not added
 * twice. From outside a job, `existingSteps: "keep"` does the same, and the
 * default still refuses a taken name. A dependency named twice, or a unique job,
 * is refused saying so.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Oban, Worker, Workflow } from "effect-oban"
import { uniquePrefix } from "./support/db.ts"
import { drainDefault, onTestClock, stepStates, truncateWorkflows, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("workflow_append")

/** Every perform: the step name and attempt. */
const ran: Array<string> = []

const Child = Worker.make("AppendChild", {
  args: Schema.Struct({ n: Schema.Int }),
  perform: (job) => Effect.sync(() => void ran.push(`child-${job.args.n}`))
})

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", {}) {}

/** Appends two children depending on itself, then fails on its first attempt (after the append committed). */
const Planner = Worker.make("AppendPlanner", {
  args: Schema.Struct({}),
  maxAttempts: 3,
  perform: (job) =>
    Effect.gen(function*() {
      ran.push(`plan#${job.attempt}`)
      const more = yield* Workflow.appendTo(job)
      const added = yield* Workflow.insert(
        more
          .add("child-1", Child.job({ n: 1 }), { deps: [Workflow.stepOf(job)] })
          .add("child-2", Child.job({ n: 2 }), { deps: ["child-1"] })
      ).pipe(Effect.orDie)
      // The second run finds both there already: returned as they stand, with conflict: true.
      if (job.attempt > 1 && !(added.jobs["child-1"].conflict && added.jobs["child-2"].conflict)) {
        return yield* Effect.die(`attempt ${job.attempt} inserted its steps again`)
      }
      if (job.attempt === 1) return yield* new Flaky()
    })
})

/** A worker whose jobs are unique by default. */
const Once = Worker.make("AppendOnce", {
  args: Schema.Struct({}),
  unique: { period: "1 hour" },
  perform: () => Effect.void
})

const TestLive = workflowTestLayer(prefix, [Planner, Child, Once])

const reset = Effect.gen(function*() {
  ran.length = 0
  yield* truncateWorkflows(prefix)
})

describe("appending to a workflow again", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("a job that appended and failed appends again on its retry: its steps are kept and run once", () =>
      Effect.gen(function*() {
        yield* reset
        yield* Oban.insertWorkflow(Workflow.make("plan").add("plan", Planner.job({})))
        yield* drainDefault
        // The retry is due after its backoff.
        yield* TestClock.adjust("1 hour")
        yield* drainDefault
        assert.deepStrictEqual(ran, ["plan#1", "plan#2", "child-1", "child-2"])
        assert.deepStrictEqual(yield* stepStates(prefix, "plan"), { plan: "completed", "child-1": "completed", "child-2": "completed" })
      }).pipe(onTestClock))

    it.effect("existingSteps: 'keep' from outside a job: taken names are kept, new steps may depend on them", () =>
      Effect.gen(function*() {
        yield* reset
        const first = yield* Oban.insertWorkflow(Workflow.make("outside").add("a", Child.job({ n: 1 })))
        // By default a taken name refuses the whole insert, and writes nothing.
        const refused = yield* Oban.insertWorkflow(
          Workflow.make<string>("outside").add("a", Child.job({ n: 1 })).add("b", Child.job({ n: 2 }), { deps: ["a"] })
        ).pipe(Effect.flip)
        assert.strictEqual(refused._tag, "InvalidWorkflowError")
        assert.deepStrictEqual(yield* stepStates(prefix, "outside"), { a: "available" })
        yield* drainDefault
        // Kept: "a" (completed by now) is returned as it stands; "b" is inserted and, its dependency done, available.
        const again = yield* Oban.insertWorkflow(
          Workflow.make<string>("outside", { existingSteps: "keep" })
            .add("a", Child.job({ n: 9 }))
            .add("b", Child.job({ n: 2 }), { deps: ["a"] })
        )
        assert.strictEqual(again.jobs["a"]!.id, first.jobs.a.id)
        assert.strictEqual(again.jobs["a"]!.conflict, true)
        assert.strictEqual(again.jobs["a"]!.state, "completed")
        assert.deepStrictEqual(again.jobs["a"]!.args, { n: 1 })
        assert.strictEqual(again.jobs["b"]!.conflict, false)
        assert.strictEqual(again.jobs["b"]!.state, "available")
        yield* drainDefault
        assert.deepStrictEqual(ran, ["child-1", "child-2"])
        assert.strictEqual(Option.getOrThrow(yield* Oban.getJob(again.jobs["b"]!.id)).state, "completed")
        // appendTo can refuse as make does.
        const member = Option.getOrThrow(yield* Oban.getJob(first.jobs.a.id))
        const strict = yield* Workflow.appendTo(member, { existingSteps: "fail" })
        const error = yield* Workflow.insert(strict.add("b", Child.job({ n: 3 }))).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidWorkflowError")
        assert.match(error.message, /step "b" is in workflow "outside" already/)
      }).pipe(onTestClock))

    it.effect("a unique job is refused as a step, saying how a worker's default unique is left out; without it, it is a step", () =>
      Effect.gen(function*() {
        yield* reset
        const error = yield* Oban.insertWorkflow(Workflow.make("once").add("a", Once.job({}))).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidWorkflowError")
        assert.include(error.message, "pass { unique: false } in the step's job options")
        const inserted = yield* Oban.insertWorkflow(Workflow.make("once").add("a", Once.job({}, { unique: false })))
        assert.strictEqual(inserted.jobs.a.state, "available")
      }).pipe(onTestClock))

    it.effect("a step that names one dependency twice is refused with that said, not as a taken step name", () =>
      Effect.gen(function*() {
        yield* reset
        const twice: ReadonlyArray<ReadonlyArray<"a" | Workflow.Dep<"a">>> = [["a", "a"], ["a", { step: "a", onFailure: "run" }]]
        for (const deps of twice) {
          const error = yield* Oban.insertWorkflow(
            Workflow.make("twice").add("a", Child.job({ n: 1 })).add("b", Child.job({ n: 2 }), { deps })
          ).pipe(Effect.flip)
          assert.deepStrictEqual([error._tag, error._tag === "InvalidWorkflowError" && error.step, error.message], [
            "InvalidWorkflowError",
            "b",
            `step "b" names its dependency "a" twice`
          ])
          assert.deepStrictEqual(yield* stepStates(prefix, "twice"), {})
        }
      }).pipe(onTestClock))
  })
})
