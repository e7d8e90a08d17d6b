/**
 * Review findings on workflows and chains, against real PostgreSQL on
 * TestClock: a manual retry must not run a step before its dependencies, a
 * chain's "cancel" policy cancels what was inserted so far and not later
 * inserts, and the pruner must not delete a step a dependent is being added
 * to at that moment.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Batch, Chain, Oban, Pruner, Worker, Workflow } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { report, uniquePrefix } from "./support/db.ts"
import { drainDefault, onTestClock, stepStates, truncateWorkflows, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("wfreview")

/** Every perform, in order: the step name of the job. */
const ran: Array<string> = []

const Step = Worker.make("Step", {
  args: Schema.Struct({ fail: Schema.optional(Schema.Boolean) }),
  maxAttempts: 1,
  result: Schema.String,
  perform: (job) =>
    Effect.suspend(() => {
      ran.push(Workflow.stepOf(job))
      return job.args.fail === true ? Effect.fail("boom") : Effect.succeed(`result of ${Workflow.stepOf(job)}`)
    })
})

const TestLive = workflowTestLayer(prefix, [Step])

/**
 * Waits (on the real clock) until `fiber` has finished or some session is waiting for a lock held by
 * the backend `holder`: the race a test stages has then really happened, rather than maybe after a sleep.
 */
const blockedOrDone = <A, E>(holder: number, fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const deadline = Date.now() + 20_000
    while (fiber.pollUnsafe() === undefined) {
      const [row] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${holder}::int = ANY(pg_blocking_pids(pid))`
      if (row!.n > 0) return
      if (Date.now() > deadline) return yield* Effect.die(new Error("neither blocked nor done"))
      yield* TestClock.withLive(Effect.sleep("10 millis"))
    }
  })

const reset = Effect.gen(function*() {
  ran.length = 0
  yield* truncateWorkflows(prefix)
})

const drain = drainDefault

const states = (workflowId: string) => stepStates(prefix, workflowId)

describe("workflows (review)", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("Oban.retryJob of a suspended step does not run it before its dependency", () =>
      Effect.gen(function*() {
        yield* reset
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("retry-suspended")
            .add("a", Step.job({}, { scheduleIn: "1 hour" }))
            .add("b", Step.job({}), { deps: ["a"] })
        )
        yield* Oban.retryJob(inserted.jobs.b.id)
        yield* ObanTest.drainQueue({ queue: "default" })
        // "a" has not run: "b" must still wait for it.
        assert.deepStrictEqual(ran, [])
        assert.strictEqual((yield* states("retry-suspended"))["b"], "suspended")
      }).pipe(onTestClock))

    it.effect("Oban.retryJob of a step cancelled by its failed dependency waits for that dependency's retry", () =>
      Effect.gen(function*() {
        yield* reset
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("retry-cancelled")
            .add("a", Step.job({ fail: true }))
            .add("b", Step.job({}), { deps: ["a"] })
        )
        yield* drain
        assert.deepStrictEqual(yield* states("retry-cancelled"), { a: "discarded", b: "cancelled" })
        // "Retry the failed part", dependent first: "b" must not run while "a" is still discarded.
        ran.length = 0
        yield* Oban.retryJob(inserted.jobs.b.id)
        yield* drain
        assert.deepStrictEqual(ran, [])
        assert.strictEqual((yield* states("retry-cancelled"))["b"], "suspended")
        // Then the dependency, fixed: both run, in order.
        const sql = yield* SqlClient
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{}'::jsonb WHERE id = ${inserted.jobs.a.id}`
        yield* Oban.retryJob(inserted.jobs.a.id)
        yield* drain
        assert.deepStrictEqual(ran, ["a", "b"])
      }).pipe(onTestClock))

    it.effect("Oban.retryJob of a step while its dependency completes in another transaction: not stranded", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("retry-race").add("a", Step.job({ fail: true })).add("b", Step.job({}), { deps: ["a"] })
        )
        yield* drain
        assert.deepStrictEqual(yield* states("retry-race"), { a: "discarded", b: "cancelled" })
        // "a" is being retried (not finished, so no release), then completes in a transaction held open.
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'retryable' WHERE id = ${inserted.jobs.a.id}`
        const completing = yield* Deferred.make<number>()
        const mayCommit = yield* Deferred.make<void>()
        const complete = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now()
                     WHERE id = ${inserted.jobs.a.id}`
          const [self] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          yield* Deferred.succeed(completing, self!.pid)
          yield* Deferred.await(mayCommit)
        })))
        const holder = yield* Deferred.await(completing)
        // Meanwhile "b" is retried: its release by "a" is already past (it was cancelled then), so the retry
        // must see "a" completed, not leave "b" suspended for a release that will never come.
        const retry = yield* Effect.forkChild(Oban.retryJob(inserted.jobs.b.id))
        yield* blockedOrDone(holder, retry)
        yield* Deferred.succeed(mayCommit, undefined)
        yield* Fiber.join(complete)
        yield* Fiber.join(retry)
        assert.deepStrictEqual(yield* states("retry-race"), { a: "completed", b: "available" })
      }).pipe(onTestClock))

    it.effect("a dependency that finishes again (retried, then deleted) counts once: its dependent still waits for the others", () =>
      Effect.gen(function*() {
        yield* reset
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("counted-once")
            .add("a", Step.job({}))
            .add("b", Step.job({}, { scheduleIn: "1 hour" }))
            .add("c", Step.job({}), { deps: ["a", "b"] })
        )
        yield* drain
        // "a" completes a second time, then is deleted (a deleted dependency counts as completed): "c" still waits for "b".
        yield* Oban.retryJob(inserted.jobs.a.id)
        yield* drain
        assert.isTrue(yield* Oban.deleteJob(inserted.jobs.a.id))
        assert.deepStrictEqual(yield* states("counted-once"), { b: "scheduled", c: "suspended" })
        yield* TestClock.adjust("1 hour")
        yield* drain
        assert.deepStrictEqual(ran, ["a", "a", "b", "c"])
      }).pipe(onTestClock))

    it.effect("Oban.retryJob of a finished step whose dependency is being re-run: it runs again once that dependency has", () =>
      Effect.gen(function*() {
        yield* reset
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("rerun").add("a", Step.job({})).add("b", Step.job({}), { deps: ["a"] })
        )
        yield* drain
        // Both re-run: "a" is available again, so "b" goes back to waiting for it (its edge is no longer done).
        yield* Oban.retryJob(inserted.jobs.a.id)
        const b = yield* Oban.retryJob(inserted.jobs.b.id)
        assert.strictEqual(Option.getOrThrow(b).state, "suspended")
        yield* drain
        assert.deepStrictEqual(ran, ["a", "b", "a", "b"])
        assert.deepStrictEqual(yield* states("rerun"), { a: "completed", b: "completed" })
      }).pipe(onTestClock))

    it.effect("a chain's onFailure: \"cancel\" cancels the jobs inserted so far, not the ones inserted later", () =>
      Effect.gen(function*() {
        yield* reset
        yield* Chain.insert("account-1", [Step.job({ fail: true }), Step.job({})], { onFailure: "cancel" })
        yield* drain
        assert.deepStrictEqual(yield* states(Chain.workflowId("account-1")), { "1": "discarded", "2": "cancelled" })
        // Documented: "the rest of the chain inserted so far is cancelled". A job inserted afterwards runs.
        const [later] = yield* Chain.insert("account-1", [Step.job({})], { onFailure: "cancel" })
        yield* drain
        assert.strictEqual((yield* states(Chain.workflowId("account-1")))["3"], "completed")
        assert.strictEqual(later!.state, "available")
      }).pipe(onTestClock))

    it.effect("acking a dependency of a wide batch costs the same as of a narrow one (release is not O(width))", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        /** Real milliseconds to ack `acked` jobs of a batch of `width` (3 callbacks) in one statement, as a node does. */
        const ackMillis = (width: number, acked: number) =>
          Effect.gen(function*() {
            yield* reset
            const batch = yield* Batch.insert(
              Batch.make(`wide-${width}`).add(...Array.from({ length: width }, () => Step.job({})))
                .onCompleted(Step.job({})).onFailure(Step.job({})).onFinished(Step.job({}))
            )
            const ids = batch.jobs.slice(0, acked).map((job) => job.id)
            // Running on node "n" under claim "c<id>", as a claim would leave them.
            yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
                       attempted_by = ARRAY['n', 'p', 'c' || id::text] WHERE workflow_id = ${`wide-${width}`}
                       AND state = 'available'`
            yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
            yield* sql`ANALYZE ${sql(prefix)}.oban_workflow_deps`
            const started = yield* Clock.currentTimeMillis
            const result = yield* ackJobs(sql, prefix, sql.literal("now()"), "n", ids.map((id) => ({
              id, attempt: 1, claim: `c${id}`, state: "completed" as const, delay_ms: null, give_back: false, error: null
            })))
            const millis = (yield* Clock.currentTimeMillis) - started
            assert.strictEqual(result.written.length, acked)
            return millis
          })
        // The best of three of each: a stall of a loaded machine in one measurement does not decide it.
        const best = (width: number) => Effect.map(Effect.forEach([1, 2, 3], () => ackMillis(width, 250)), (all) => Math.min(...all))
        const narrow = yield* best(500)
        const wide = yield* best(5000)
        report(`250 acks in one statement: ${narrow} ms in a batch of 500, ${wide} ms in a batch of 5,000`)
        // A node acks up to 500 outcomes per statement with a 15 s deadline; a statement that misses it is
        // retried as it is. Each release re-reads every edge of each callback, so a wide batch multiplies the
        // cost of every ack by its width.
        assert.isBelow(wide, 3 * Math.max(narrow, 200), `250 acks: ${narrow} ms in a batch of 500, ${wide} ms in a batch of 5,000`)
      }), 60_000)

    it.effect("the pruner does not delete a step while a dependent of it is being inserted", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* Oban.insertWorkflow(Workflow.make("prune-race").add("a", Step.job({})))
        yield* drain
        yield* TestClock.adjust("2 days")
        // A transaction adds "b" depending on the completed, old "a", and stays open a moment.
        const added = yield* Deferred.make<{ readonly b: number; readonly holder: number }>()
        const mayCommit = yield* Deferred.make<void>()
        const insert = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          const more = yield* Oban.insertWorkflow(Workflow.make<string>("prune-race").add("b", Step.job({}), { deps: ["a"] }))
          const [self] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          yield* Deferred.succeed(added, { b: more.jobs["b"]!.id, holder: self!.pid })
          yield* Deferred.await(mayCommit)
        })))
        const { b, holder } = yield* Deferred.await(added)
        // The pruner runs meanwhile (it must leave "a", locked by the insert, alone), then the insert commits.
        const prune = yield* Effect.forkChild(Pruner.runOnce({ sql, prefix }))
        yield* blockedOrDone(holder, prune)
        yield* Deferred.succeed(mayCommit, undefined)
        yield* Fiber.join(insert)
        yield* Fiber.join(prune)
        // "b" has not finished: "a" must still be there, and "b" can read its result.
        assert.deepStrictEqual(yield* states("prune-race"), { a: "completed", b: "available" })
        const result = yield* Workflow.result({ id: b }, "a", Step)
        assert.strictEqual(result, "result of a")
      }).pipe(onTestClock))
  })
})
