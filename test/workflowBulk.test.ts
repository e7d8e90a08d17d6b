/**
 * The operators' bulk retry on workflow steps, against real PostgreSQL: a
 * step cancelled because its dependency failed waits again for that
 * dependency instead of running before it, and a suspended step is left
 * alone.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Jobs, Worker, Workflow } from "effect-oban"
import { uniquePrefix } from "./support/db.ts"
import { drainDefault, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("workflow_bulk")

/** Fails while `failing` is set; records the order of completed performs. */
let failing = true
const ran: Array<string> = []
const Step = Worker.make("BulkStep", {
  args: Schema.Struct({ name: Schema.String }),
  maxAttempts: 1,
  perform: (job) =>
    Effect.suspend(() => {
      if (failing && job.args.name === "first") return Effect.fail("boom")
      ran.push(job.args.name)
      return Effect.void
    })
})

const TestLive = workflowTestLayer(prefix, [Step])

const drain = drainDefault

const stateOf = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ state: string }>`
      SELECT state::text AS state FROM ${sql(prefix)}.oban_jobs_all WHERE args ->> 'name' = ${name}`
    return row!.state
  })

describe("bulk retry of workflow steps", () => {
  layer(TestLive)((it) => {
    it.effect("a step cancelled by its failed dependency waits for it again; a suspended step is left alone", () =>
      Effect.gen(function*() {
        yield* Workflow.insert(
          Workflow.make("bulk-1")
            .add("first", Step.job({ name: "first" }))
            .add("second", Step.job({ name: "second" }), { deps: ["first"] })
            .add("third", Step.job({ name: "third" }), { deps: [{ step: "second", onFailure: "wait" }] })
        )
        yield* drain
        assert.deepStrictEqual(
          [yield* stateOf("first"), yield* stateOf("second"), yield* stateOf("third")],
          ["discarded", "cancelled", "suspended"]
        )
        // Retry everything that did not complete, dependent first in id order or not: the dependency
        // comes back, the dependent waits for it, the suspended step stays as it is.
        failing = false
        const outcome = yield* Jobs.retry({ states: ["discarded", "cancelled", "suspended"] }, { batchSize: 1 })
        assert.strictEqual(outcome.changed, 2)
        assert.deepStrictEqual(
          [yield* stateOf("first"), yield* stateOf("second"), yield* stateOf("third")],
          ["available", "suspended", "suspended"]
        )
        yield* drain
        assert.deepStrictEqual(ran, ["first", "second", "third"])
      }))

    it.effect("a bulk delete of a waiting step removes its dependency rows and counter with it", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const inserted = yield* Workflow.insert(
          Workflow.make("bulk-2").add("x", Step.job({ name: "x" })).add("y", Step.job({ name: "y" }), { deps: ["x"] })
        )
        const y = inserted.jobs.y.id
        const rowsOf = Effect.gen(function*() {
          const [row] = yield* sql<{ deps: number; waits: number }>`
            SELECT (SELECT count(*)::int FROM ${sql(prefix)}.oban_workflow_deps WHERE job_id = ${y}) AS deps,
                   (SELECT count(*)::int FROM ${sql(prefix)}.oban_workflow_waits WHERE job_id = ${y}) AS waits`
          return row!
        })
        assert.deepStrictEqual(yield* rowsOf, { deps: 1, waits: 1 })
        const outcome = yield* Jobs.remove({ ids: [y] })
        assert.strictEqual(outcome.changed, 1)
        assert.deepStrictEqual(yield* rowsOf, { deps: 0, waits: 0 })
      }))
  })
})
