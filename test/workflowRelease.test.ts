/**
 * Release per statement (migration 0011): the workflow jobs one statement
 * finishes are released together, after its rows are written. One statement
 * with mixed outcomes settles each dependent as one-by-one writes would; an
 * ack that deletes some jobs and updates others releases the dependents of
 * both; and a statement that finishes jobs of two schemas releases each
 * schema's dependents in that schema. A statement that finishes no workflow
 * job calls no trigger function at all (migration 0015).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Config, Migrations, Oban, Worker, Workflow } from "effect-oban"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { dropSchemaOnClose, testLayer, uniquePrefix } from "./support/db.ts"
import { stepStates, truncateWorkflows } from "./support/workflows.ts"

const prefix = uniquePrefix("wfrelease")

/** Never performed here: the tests write outcomes themselves. */
const Step = Worker.make("Step", { args: Schema.Struct({}), perform: () => Effect.void })

/** Finishes steps of a workflow in one UPDATE: each named step gets the given state. */
const finish = (schema: string, workflowId: string, outcomes: Record<string, "completed" | "discarded">) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const steps = Object.keys(outcomes)
    yield* sql`UPDATE ${sql(schema)}.oban_jobs
      SET state = (${JSON.stringify(outcomes)}::jsonb ->> (meta #>> '{workflow,step}'))::${sql(schema)}.oban_job_state
      WHERE workflow_id = ${workflowId} AND meta #>> '{workflow,step}' IN ${sql.in(steps)}`
  })

/**
 * How often this transaction called each of the workflow trigger functions so far
 * (`track_functions` must be on for the transaction).
 */
const triggerCalls = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ name: string; calls: number }>`
    SELECT p.proname AS name, COALESCE(pg_stat_get_xact_function_calls(p.oid), 0)::int AS calls
    FROM pg_proc AS p
    WHERE p.pronamespace = ${prefix}::regnamespace AND p.proname IN ('oban_workflow_settle', 'oban_workflow_settle_noted')`
  return Object.fromEntries(rows.map((row) => [row.name, row.calls]))
})

/** Who cancelled a step (`meta.workflow.cancelled_by.step`), per cancelled step. */
const cancelledBy = (workflowId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ step: string; culprit: string }>`
      SELECT meta #>> '{workflow,step}' AS step, meta #>> '{workflow,cancelled_by,step}' AS culprit
      FROM ${sql(prefix)}.oban_jobs_all WHERE workflow_id = ${workflowId} AND state = 'cancelled' ORDER BY 1`
    return Object.fromEntries(rows.map((row) => [row.step, row.culprit]))
  })

describe("workflow release per statement", () => {
  layer(testLayer(prefix))((it) => {
    it.effect("one statement completing one dependency and discarding another settles each dependent as one by one", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        yield* Oban.insertWorkflow(
          Workflow.make("mixed")
            .add("a", Step.job({}))
            .add("b", Step.job({}))
            .add("both", Step.job({}), { deps: ["a", "b"] })
            .add("after-a", Step.job({}), { deps: ["a"] })
            .add("runs-anyway", Step.job({}), { deps: [{ step: "b", onFailure: "run" }] })
            .add("after-both", Step.job({}), { deps: ["both"] })
        )
        yield* finish(prefix, "mixed", { a: "completed", b: "discarded" })
        assert.deepStrictEqual(yield* stepStates(prefix, "mixed"), {
          a: "completed",
          b: "discarded",
          both: "cancelled",
          "after-a": "available",
          "runs-anyway": "available",
          "after-both": "cancelled"
        })
        // The cancellation cascades from the failed dependency, then from the cancelled step.
        assert.deepStrictEqual(yield* cancelledBy("mixed"), { "after-both": "both", both: "b" })
      }))

    it.effect("a step with two dependencies waits for the second after the first completes", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        yield* Oban.insertWorkflow(
          Workflow.make("fan-in")
            .add("a", Step.job({}))
            .add("b", Step.job({}))
            .add("both", Step.job({}), { deps: ["a", "b"] })
        )
        yield* finish(prefix, "fan-in", { a: "completed" })
        assert.strictEqual((yield* stepStates(prefix, "fan-in"))["both"], "suspended")
        yield* finish(prefix, "fan-in", { b: "completed" })
        assert.strictEqual((yield* stepStates(prefix, "fan-in"))["both"], "available")
      }))

    it.effect("an ack deleting a completed step and discarding another in one statement releases the dependents of both", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        const sql = yield* SqlClient
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("ack-delete")
            .add("root", Step.job({}))
            .add("a", Step.job({}), { deps: ["root"] })
            .add("b", Step.job({}))
            .add("after-a", Step.job({}), { deps: ["a"] })
            .add("after-b", Step.job({}), { deps: ["b"] })
        )
        yield* finish(prefix, "ack-delete", { root: "completed" })
        const a = inserted.jobs["a"]!.id
        const b = inserted.jobs["b"]!.id
        // Running on node "n" under claim "c<id>", as a claim would leave them.
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
                   attempted_by = ARRAY['n', 'p', 'c' || id::text] WHERE id IN (${a}, ${b})`
        const acks = [{ id: a, state: "completed" as const }, { id: b, state: "discarded" as const }].map((row) => ({
          ...row, attempt: 1, claim: `c${row.id}`, delay_ms: null, give_back: false, error: null
        }))
        const result = yield* ackJobs(sql, prefix, sql.literal("now()"), "n", acks, { deleteCompleted: true })
        assert.deepStrictEqual([...result.written].sort(), [a, b].sort())
        const states = yield* stepStates(prefix, "ack-delete")
        assert.deepStrictEqual(states, { root: "completed", b: "discarded", "after-a": "available", "after-b": "cancelled" })
        // The deleted step's own counter went with it.
        const [counters] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_workflow_waits WHERE job_id = ${a}`
        assert.strictEqual(counters!.n, 0)
      }))

    it.effect("with deleteCompleted, a completion with a recorded result keeps its row and the result; one without is deleted", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        const sql = yield* SqlClient
        const inserted = yield* Oban.insertWorkflow(
          Workflow.make("ack-result").add("a", Step.job({})).add("after-a", Step.job({}), { deps: ["a"] })
        )
        const a = inserted.jobs["a"]!.id
        const [plain, bare] = yield* Oban.insertAll([Step.job({}), Step.job({})])
        const ids = [a, plain!.id, bare!.id]
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
                   attempted_by = ARRAY['n', 'p', 'c' || id::text] WHERE id IN ${sql.in(ids)}`
        const ack = (id: number, result?: unknown) => ({
          id, state: "completed" as const, attempt: 1, claim: `c${id}`, delay_ms: null, give_back: false, error: null,
          ...(result === undefined ? {} : { result })
        })
        const result = yield* ackJobs(sql, prefix, sql.literal("now()"), "n", [ack(a, { square: 49 }), ack(plain!.id, 7), ack(bare!.id)], {
          deleteCompleted: true
        })
        assert.deepStrictEqual([...result.written].sort(), [...ids].sort())
        // Before, deleteCompleted deleted every completion, result or not: a dependent found no result to read.
        const rows = yield* sql<{ id: string; state: string; result: unknown; finished: boolean }>`
          SELECT id::text, state::text, result, false AS finished FROM ${sql(prefix)}.oban_jobs WHERE id IN ${sql.in(ids)}
          UNION ALL
          SELECT id::text, state::text, result, true FROM ${sql(prefix)}.oban_jobs_finished WHERE id IN ${sql.in(ids)}
          ORDER BY 1`
        assert.deepStrictEqual(rows.map((row) => [Number(row.id), row.state, row.result, row.finished]), [
          [a, "completed", { square: 49 }, false],
          [plain!.id, "completed", 7, true]
        ])
        assert.deepStrictEqual(yield* stepStates(prefix, "ack-result"), { a: "completed", "after-a": "available" })
      }))

    it.effect("a statement that finishes no workflow job calls no trigger function; one that finishes a step calls each once", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        const sql = yield* SqlClient
        yield* Oban.insertWorkflow(Workflow.make("calls").add("a", Step.job({})).add("b", Step.job({}), { deps: ["a"] }))
        const plain = yield* Oban.insert(Step.job({}))
        const calls = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`SET LOCAL track_functions = 'pl'`
          // What a claim and an ack that keeps a job outside workflows in oban_jobs do to its row. (An ack that moves
          // it to oban_jobs_finished deletes it, which runs the delete statement trigger once: see migration 0016.)
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing' WHERE id = ${plain.id}`
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed' WHERE id = ${plain.id}`
          // A workflow step claimed: a state change that finishes nothing.
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing'
                     WHERE workflow_id = 'calls' AND meta #>> '{workflow,step}' = 'a'`
          const before = yield* triggerCalls
          yield* finish(prefix, "calls", { a: "completed" })
          return { before, after: yield* triggerCalls }
        }))
        assert.deepStrictEqual(calls.before, { oban_workflow_settle: 0, oban_workflow_settle_noted: 0 })
        assert.deepStrictEqual(calls.after, { oban_workflow_settle: 1, oban_workflow_settle_noted: 1 })
        assert.deepStrictEqual(yield* stepStates(prefix, "calls"), { a: "completed", b: "available" })
      }))

    it.effect("one statement finishing jobs of two schemas releases each schema's dependents in that schema", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        const sql = yield* SqlClient
        const other = uniquePrefix("wfrelease_other")
        yield* dropSchemaOnClose(other)
        const inOther = Effect.provide(Config.layer({ prefix: other }))
        yield* inOther(Migrations.run())
        const flow = Workflow.make("two-schemas").add("x", Step.job({})).add("y", Step.job({}), { deps: ["x"] })
        yield* Oban.insertWorkflow(flow)
        yield* inOther(Oban.insertWorkflow(flow))
        yield* sql`
          WITH here AS (
            UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed'
            WHERE workflow_id = 'two-schemas' AND meta #>> '{workflow,step}' = 'x' RETURNING id
          )
          UPDATE ${sql(other)}.oban_jobs SET state = 'completed'
          WHERE workflow_id = 'two-schemas' AND meta #>> '{workflow,step}' = 'x' AND EXISTS (SELECT 1 FROM here)`
        assert.deepStrictEqual(yield* stepStates(prefix, "two-schemas"), { x: "completed", y: "available" })
        assert.deepStrictEqual(yield* stepStates(other, "two-schemas"), { x: "completed", y: "available" })
      }))
  })
})
