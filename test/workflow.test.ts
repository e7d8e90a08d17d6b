/**
 * Workflows in one process against real PostgreSQL, on TestClock: suspended
 * dependents, release on completion (in the ack's own transaction), fan-out
 * and fan-in, failure policies, jobs added by a running job, inserts that
 * join the caller's transaction, and scheduling and retries inside a
 * workflow.
 */
import { assert, describe, layer } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Fiber, Option, Queue, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Chain, Oban, Pruner, Worker, Workflow } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { uniquePrefix } from "./support/db.ts"
import { drainDefault, onTestClock, stepStates, truncateWorkflows, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("workflow")

/** Every perform, in order: the step name of the job. */
const ran: Array<string> = []
const stepOf = (job: { readonly meta: Readonly<Record<string, unknown>> }) =>
  Option.match(Workflow.membership(job), { onNone: () => "?", onSome: (member) => member.step })

const Step = Worker.make("Step", {
  args: Schema.Struct({ fail: Schema.optional(Schema.Boolean) }),
  maxAttempts: 1,
  perform: (job) =>
    Effect.suspend(() => {
      ran.push(stepOf(job))
      return job.args.fail === true ? Effect.fail("boom") : Effect.void
    })
})

/** Fails on its first attempt, then completes. */
const Flaky = Worker.make("Flaky", {
  args: Schema.Struct({}),
  maxAttempts: 3,
  perform: (job) =>
    Effect.suspend(() => {
      ran.push(`${stepOf(job)}#${job.attempt}`)
      return job.attempt === 1 ? Effect.fail("first attempt fails") : Effect.void
    })
})

/** Adds a step that depends on itself and one that depends on nothing. */
const Discover = Worker.make("Discover", {
  args: Schema.Struct({}),
  perform: (job) =>
    Effect.gen(function*() {
      ran.push(stepOf(job))
      const more = yield* Workflow.appendTo(job)
      yield* Workflow.insert(
        more.add("found-1", Step.job({}), { deps: [stepOf(job)] }).add("found-2", Step.job({}), { deps: ["found-1"] })
      )
    }).pipe(Effect.orDie)
})

const TestLive = workflowTestLayer(prefix, [Step, Flaky, Discover])

const reset = Effect.gen(function*() {
  ran.length = 0
  yield* truncateWorkflows(prefix)
})

const drain = drainDefault

const states = (workflowId: string) => stepStates(prefix, workflowId)

describe("workflows", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("dependents wait suspended and run after their dependencies: fan-out, fan-in, diamond", () =>
      Effect.gen(function*() {
        yield* reset
        let flow = Workflow.make<string>("diamond").add("root", Step.job({}))
        const middle: Array<string> = []
        for (let i = 0; i < 20; i++) {
          flow = flow.add(`mid-${i}`, Step.job({}), { deps: ["root"] })
          middle.push(`mid-${i}`)
        }
        const done = flow.add("join", Step.job({}), { deps: middle })
        const inserted = yield* Oban.insertWorkflow(done)
        assert.strictEqual(inserted.jobs["root"]!.state, "available")
        assert.strictEqual(inserted.jobs["join"]!.state, "suspended")
        assert.strictEqual(inserted.jobs["mid-3"]!.state, "suspended")
        // One drain pass runs only what is available: the root; its completion releases the middle.
        yield* ObanTest.drainQueue({ queue: "default" })
        assert.deepStrictEqual(ran, ["root"])
        const afterRoot = yield* states("diamond")
        assert.strictEqual(afterRoot["mid-0"], "available")
        assert.strictEqual(afterRoot["join"], "suspended")
        yield* drain
        assert.strictEqual(ran.length, 22)
        assert.strictEqual(ran[ran.length - 1], "join")
        assert.deepStrictEqual(new Set(Object.values(yield* states("diamond"))), new Set(["completed"]))
      }).pipe(onTestClock))

    it.effect("a released dependent wakes its queue (NOTIFY in the ack's transaction)", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* Oban.insertWorkflow(Workflow.make("wake").add("a", Step.job({})).add("b", Step.job({}, { queue: "later" }), { deps: ["a"] }))
        // Listen on the insert channel, then finish "a" by hand: the release must notify "later".
        const pg = yield* PgClient.PgClient
        const notifications = yield* pg.listen(`${prefix}.oban_insert`)
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now()
                   WHERE workflow_id = 'wake' AND meta #>> '{workflow,step}' = 'a'`
        const note = yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"), TestClock.withLive)
        assert.strictEqual((JSON.parse(note.payload) as { queue: string }).queue, "later")
        assert.strictEqual((yield* states("wake"))["b"], "available")
      }).pipe(onTestClock))

    it.effect("the last two dependencies finishing in two transactions at once release the dependent exactly once", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        // A log of releases, written by a trigger of the test's own: a second release would add a second row.
        yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS "${prefix}".releases (job_id bigint NOT NULL)`)
        yield* sql.unsafe(`TRUNCATE "${prefix}".releases`)
        yield* sql.unsafe(`CREATE OR REPLACE FUNCTION "${prefix}".log_release() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO "${prefix}".releases VALUES (NEW.id); RETURN NULL; END $$`)
        yield* sql.unsafe(`CREATE OR REPLACE TRIGGER log_release AFTER UPDATE ON "${prefix}".oban_jobs FOR EACH ROW
            WHEN (OLD.state = 'suspended' AND NEW.state <> 'suspended') EXECUTE FUNCTION "${prefix}".log_release()`)
        const pairs = 50
        for (let i = 0; i < pairs; i++) {
          yield* Oban.insertWorkflow(
            Workflow.make(`pair-${i}`).add("a", Step.job({})).add("b", Step.job({})).add("c", Step.job({}), { deps: ["a", "b"] })
          )
        }
        const finish = (step: string) =>
          sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now()
              WHERE workflow_id LIKE 'pair-%' AND meta #>> '{workflow,step}' = ${step}`
        // The first transaction finishes every "a" and holds its locks; the second finishes every "b"
        // meanwhile and must wait for the first, then see its "a"s completed.
        const firstDone = yield* Deferred.make<void>()
        const mayCommit = yield* Deferred.make<void>()
        const first = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          yield* finish("a")
          yield* Deferred.succeed(firstDone, undefined)
          yield* Deferred.await(mayCommit)
        })))
        yield* Deferred.await(firstDone)
        const second = yield* Effect.forkChild(sql.withTransaction(finish("b")))
        yield* TestClock.withLive(Effect.sleep("200 millis"))
        yield* Deferred.succeed(mayCommit, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        const rows = yield* sql<{ state: string; n: number }>`
          SELECT state::text AS state, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all
          WHERE meta #>> '{workflow,step}' = 'c' GROUP BY state`
        assert.deepStrictEqual(rows.map((row) => [row.state, row.n]), [["available", pairs]])
        const [logged] = yield* sql<{ n: number; jobs: number }>`
          SELECT count(*)::int AS n, count(DISTINCT job_id)::int AS jobs FROM ${sql(prefix)}.releases`
        assert.deepStrictEqual([logged!.n, logged!.jobs], [pairs, pairs])
        yield* sql.unsafe(`DROP TRIGGER log_release ON "${prefix}".oban_jobs`)
      }).pipe(onTestClock))

    it.effect("a discarded dependency: cancel (default) cascades, run runs anyway, wait waits for a retry", () =>
      Effect.gen(function*() {
        yield* reset
        const flow = Workflow.make("policies")
          .add("bad", Step.job({ fail: true }))
          .add("cancelled", Step.job({}), { deps: ["bad"] })
          .add("cancelled-too", Step.job({}), { deps: ["cancelled"] })
          .add("anyway", Step.job({}), { deps: [{ step: "bad", onFailure: "run" }] })
          .add("patient", Step.job({}), { deps: [{ step: "bad", onFailure: "wait" }] })
          .add("unrelated", Step.job({}))
        const inserted = yield* Oban.insertWorkflow(flow)
        yield* drain
        const after = yield* states("policies")
        assert.deepStrictEqual(after, {
          bad: "discarded",
          cancelled: "cancelled",
          "cancelled-too": "cancelled",
          anyway: "completed",
          patient: "suspended",
          unrelated: "completed"
        })
        const cancelled = Option.getOrThrow(yield* Oban.getJob(inserted.jobs.cancelled.id))
        const member = Option.getOrThrow(Workflow.membership(cancelled))
        assert.deepStrictEqual(member.cancelledBy, { id: inserted.jobs.bad.id, state: "discarded", step: "bad" })
        const cascaded = Option.getOrThrow(Workflow.membership(Option.getOrThrow(yield* Oban.getJob(inserted.jobs["cancelled-too"].id))))
        assert.strictEqual(cascaded.cancelledBy?.step, "cancelled")
        // A step added later that depends on the discarded one is cancelled at once, and returned so.
        const late = (yield* Oban.insertWorkflow(
          Workflow.make<string>("policies").add("too-late", Step.job({}), { deps: ["bad"] })
        )).jobs["too-late"]!
        assert.strictEqual(late.state, "cancelled")
        assert.isNotNull(late.cancelledAt)
        assert.deepStrictEqual(Option.getOrThrow(Workflow.membership(late)).cancelledBy?.step, "bad")
        // The waiting dependent runs once its dependency is retried and completes.
        const sql = yield* SqlClient
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{}'::jsonb WHERE id = ${inserted.jobs.bad.id}`
        yield* Oban.retryJob(inserted.jobs.bad.id)
        yield* drain
        const final = yield* states("policies")
        assert.strictEqual(final["bad"], "completed")
        assert.strictEqual(final["patient"], "completed")
        assert.strictEqual(final["cancelled"], "cancelled")
      }).pipe(onTestClock))

    it.effect("a retried dependency keeps its dependents waiting; a scheduled step waits for its time", () =>
      Effect.gen(function*() {
        yield* reset
        const flow = Workflow.make("timed")
          .add("flaky", Flaky.job({}))
          .add("later", Step.job({}, { scheduleIn: "10 minutes" }), { deps: ["flaky"] })
        yield* Oban.insertWorkflow(flow)
        yield* drain
        assert.deepStrictEqual(ran, ["flaky#1"])
        assert.deepStrictEqual(yield* states("timed"), { flaky: "retryable", later: "suspended" })
        // The retry is due after the backoff (at most a few minutes at attempt 1).
        yield* TestClock.adjust("5 minutes")
        yield* drain
        assert.deepStrictEqual(ran, ["flaky#1", "flaky#2"])
        // Released, but its own time (10 minutes after insert) is still ahead: scheduled, not available.
        assert.deepStrictEqual(yield* states("timed"), { flaky: "completed", later: "scheduled" })
        yield* TestClock.adjust("4 minutes")
        yield* drain
        assert.strictEqual(ran.length, 2)
        yield* TestClock.adjust("1 minute")
        yield* drain
        assert.deepStrictEqual(ran, ["flaky#1", "flaky#2", "later"])
      }).pipe(onTestClock))

    it.effect("a running job adds steps to its own workflow, depending on itself", () =>
      Effect.gen(function*() {
        yield* reset
        yield* Oban.insertWorkflow(Workflow.make("grow").add("discover", Discover.job({})))
        yield* drain
        assert.deepStrictEqual(ran, ["discover", "found-1", "found-2"])
        // A step added later that depends on a finished step starts available.
        const more = Workflow.make<string>("grow").add("late", Step.job({}), { deps: ["found-2"] })
        const late = yield* Oban.insertWorkflow(more.add("later", Step.job({}), { deps: ["late"] }))
        assert.strictEqual(Option.getOrThrow(yield* Oban.getJob(late.jobs["late"]!.id)).state, "available")
        // And is returned so (it was returned suspended, as inserted, before the release).
        assert.strictEqual(late.jobs["late"]!.state, "available")
        assert.strictEqual(late.jobs["later"]!.state, "suspended")
        // A chain's next job after its last one completed: available at once, and returned so.
        yield* Chain.insert("grow-chain", [Step.job({})])
        yield* drain
        const [next] = yield* Chain.insert("grow-chain", [Step.job({})])
        assert.strictEqual(next!.state, "available")
      }).pipe(onTestClock))

    it.effect("a workflow built step by step: each keeps its own steps when two are built from one, and 20,000 add in milliseconds", () =>
      Effect.sync(() => {
        const base = Workflow.make("branches").add("a", Step.job({}))
        const left = base.add("b", Step.job({}), { deps: ["a"] })
        const right = base.add("c", Step.job({}))
        const longer = left.add("d", Step.job({}), { deps: [{ step: "b", onFailure: "run" }] })
        assert.deepStrictEqual(base.steps.map((step) => step.name), ["a"])
        assert.deepStrictEqual(left.steps.map((step) => step.name), ["a", "b"])
        assert.deepStrictEqual(right.steps.map((step) => step.name), ["a", "c"])
        assert.deepStrictEqual(longer.steps.map((step) => step.name), ["a", "b", "d"])
        assert.deepStrictEqual(longer.steps[2]!.deps, [{ step: "b", onFailure: "run" }])
        assert.deepStrictEqual(left.steps[1]!.deps, [{ step: "a", onFailure: "cancel" }])
        const started = performance.now()
        let flow = Workflow.make<string>("many")
        for (let n = 0; n < 20_000; n++) flow = flow.add(`s${n}`, Step.job({}), n === 0 ? {} : { deps: [`s${n - 1}`] })
        assert.strictEqual(flow.steps.length, 20_000)
        // Copying the steps at every add took about 8 s here; appending takes a few milliseconds.
        assert.isBelow(performance.now() - started, 2_000)
      }))

    it.effect("a chain of 25,000 jobs in one call: built in its transaction well within the server's 10 s idle limit", () =>
      Effect.gen(function*() {
        yield* reset
        // Built one step at a time (each copying the steps before it), such a chain took 16 s of the
        // transaction's time in JavaScript, and the server ended the transaction as idle.
        const jobs = yield* Chain.insert("long-chain", Array.from({ length: 25_000 }, () => Step.job({})))
        assert.strictEqual(jobs.length, 25_000)
        assert.deepStrictEqual([jobs[0]!.state, jobs[1]!.state, jobs[24_999]!.state], ["available", "suspended", "suspended"])
        const sql = yield* SqlClient
        const [row] = yield* sql<{ readonly n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs WHERE workflow_id = 'chain:long-chain'`
        assert.strictEqual(row!.n, 25_000)
      }).pipe(onTestClock), 60_000)

    it.effect("the pruner keeps a finished step while a dependent of it has not finished", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        const flow = Workflow.make("prune")
          .add("a", Step.job({}))
          .add("b", Step.job({}, { scheduleIn: "1 hour" }))
          .add("c", Step.job({}), { deps: ["a", "b"] })
        const inserted = yield* Oban.insertWorkflow(flow)
        yield* Oban.insert(Step.job({}))
        yield* ObanTest.drainQueue({ queue: "default" })
        yield* TestClock.adjust("10 minutes")
        // The plain job and nothing else: "a" is completed and old, but "c" still waits for it.
        assert.strictEqual((yield* Pruner.runOnce({ sql, prefix })).deleted, 1)
        assert.deepStrictEqual(yield* states("prune"), { a: "completed", b: "scheduled", c: "suspended" })
        yield* TestClock.adjust("1 hour")
        yield* drain
        yield* TestClock.adjust("10 minutes")
        assert.strictEqual((yield* Pruner.runOnce({ sql, prefix })).deleted, 3)
        const [edges] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_workflow_deps`
        assert.strictEqual(edges!.n, 0)
        void inserted
      }).pipe(onTestClock))

    it.effect("deleting a dependency releases its dependents; deleting a dependent removes its dependency rows", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("deleted").add("a", Step.job({})).add("b", Step.job({}), { deps: ["a"] }).add("c", Step.job({}), { deps: ["b"] })
        )
        assert.isTrue(yield* Oban.deleteJob(inserted.jobs.a.id))
        assert.deepStrictEqual(yield* states("deleted"), { b: "available", c: "suspended" })
        assert.isTrue(yield* Oban.deleteJob(inserted.jobs.c.id))
        const [edges] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_workflow_deps`
        // Only b's row (on the deleted a) is left; c's own row went with it.
        assert.strictEqual(edges!.n, 1)
      }).pipe(onTestClock))

    it.effect("the insert joins the caller's transaction; bad workflows are typed errors", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        const flow = Workflow.make("tx").add("a", Step.job({})).add("b", Step.job({}), { deps: ["a"] })
        yield* sql.withTransaction(Effect.andThen(Oban.insertWorkflow(flow), Effect.fail("rollback"))).pipe(Effect.ignore)
        assert.deepStrictEqual(yield* states("tx"), {})
        const [edges] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_workflow_deps`
        assert.strictEqual(edges!.n, 0)
        yield* Oban.insertWorkflow(flow)
        const again = yield* Effect.flip(Oban.insertWorkflow(flow))
        assert.strictEqual(again._tag, "InvalidWorkflowError")
        // It names the step taken, also inside the caller's transaction (read after its savepoint rolled back).
        assert.strictEqual(again.message, `step "a" is in workflow "tx" already (a step name is the workflow's once)`)
        const inTransaction = yield* Effect.flip(sql.withTransaction(Oban.insertWorkflow(
          Workflow.make<string>("tx").add("new", Step.job({})).add("b", Step.job({}), { deps: ["new"] })
        )))
        assert.deepStrictEqual([inTransaction._tag, inTransaction._tag === "InvalidWorkflowError" && inTransaction.step], [
          "InvalidWorkflowError",
          "b"
        ])
        const twice = yield* Effect.flip(Oban.insertWorkflow(Workflow.make("x").add("a", Step.job({})).add("a", Step.job({}))))
        assert.strictEqual(twice._tag, "InvalidWorkflowError")
        const unknown = yield* Effect.flip(
          Oban.insertWorkflow(Workflow.make<string>("y").add("a", Step.job({}), { deps: ["nope"] }))
        )
        assert.strictEqual(unknown._tag, "InvalidWorkflowError")
        assert.deepStrictEqual(yield* states("y"), {})
        // Options that TypeScript did not see (built elsewhere, or from JavaScript): a misspelt `deps` would insert
        // a step that waits for nothing; refused, naming the option, and nothing is inserted.
        const loose = (options: unknown) => options as Workflow.StepOptions<"a">
        const misread: ReadonlyArray<readonly [unknown, string]> = [
          [{ dep: ["a"] }, `step "b": unknown option "dep" in the step's options (did you mean "deps"?); known: deps`],
          [{ deps: "a" }, `step "b": deps is a list of step names or { step, onFailure }, got string`],
          [{ deps: [{ step: "a", onFailur: "run" }] }, `step "b": unknown option "onFailur" in a dependency (did you mean "onFailure"?); known: step, onFailure`],
          [["a"], `step "b": a step's options are an object ({ deps }), got an array`]
        ]
        for (const [options, message] of misread) {
          const refused = yield* Effect.flip(Oban.insertWorkflow(
            Workflow.make("loose").add("a", Step.job({})).add("b", Step.job({}), loose(options))
          ))
          assert.deepStrictEqual([refused._tag, refused.message], ["InvalidWorkflowError", message])
        }
        assert.deepStrictEqual(yield* states("loose"), {})
        // A step that is no request, or whose options threw in `job`: the request's own refusal, naming the field.
        const none = yield* Effect.flip(Oban.insertWorkflow(Workflow.make("z").add("a", undefined as never)))
        assert.strictEqual(none._tag, "InvalidJobError")
        if (none._tag === "InvalidJobError") assert.include(none.message, "a job request is what worker.job(args, options) returns")
        const throwingUnique = Object.defineProperty({}, "unique", { enumerable: true, get: () => { throw new Error("unique getter") } })
        const unread = yield* Effect.flip(Oban.insertWorkflow(Workflow.make("w").add("a", Step.job({}, throwingUnique))))
        assert.strictEqual(unread._tag, "InvalidJobError")
        if (unread._tag === "InvalidJobError") {
          assert.strictEqual(unread.field, "unique")
          assert.include(unread.message, "reading unique threw: unique getter")
        }
        assert.deepStrictEqual([yield* states("z"), yield* states("w")], [{}, {}])
        // Text PostgreSQL cannot store, in an id, a step name, a dependency's name or a chain key: refused as
        // bad input (it was an SqlError from the driver).
        const unstorable: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string; readonly message: string }, SqlClient>> = [
          Oban.insertWorkflow(Workflow.make("nul\u0000id").add("a", Step.job({}))),
          Oban.insertWorkflow(Workflow.make("v").add("a\ud800", Step.job({}))),
          Oban.insertWorkflow(Workflow.make<string>("v").add("a", Step.job({}), { deps: ["gone\u0000"] })),
          Chain.insert("key\u0000", [Step.job({})])
        ]
        for (const attempt of unstorable) {
          const refused = yield* Effect.flip(attempt)
          assert.strictEqual(refused._tag, "InvalidWorkflowError")
          assert.match(refused.message, /NUL character|lone UTF-16 surrogate/)
        }
        assert.deepStrictEqual(yield* states("v"), {})
        // An onFailure no chain takes is refused on a new chain too (it was only on a chain with jobs).
        const misspeltPolicy = yield* Effect.flip(Chain.insert("fresh-chain", [Step.job({})], { onFailur: "cancel" } as never))
        assert.deepStrictEqual([misspeltPolicy._tag, misspeltPolicy.message], [
          "InvalidWorkflowError",
          `unknown option "onFailur" in the chain's options (did you mean "onFailure"?); known: onFailure`
        ])
        const badPolicy = yield* Effect.flip(Chain.insert("fresh-chain", [Step.job({})], { onFailure: "nah" as "run" }))
        assert.deepStrictEqual([badPolicy._tag, badPolicy.message], ["InvalidWorkflowError", `onFailure must be "cancel", "run" or "wait", got "nah"`])
        assert.deepStrictEqual(yield* states(Chain.workflowId("fresh-chain")), {})
        // No workflow has such an id: status, cancel and retry find none (they failed in the driver).
        assert.deepStrictEqual((yield* Workflow.status("nul\u0000id")).jobs, [])
        assert.deepStrictEqual(yield* Workflow.cancel("nul\u0000id"), [])
        assert.deepStrictEqual(yield* Workflow.retry("lone\ud800"), [])
      }).pipe(onTestClock))
  })
})
