/**
 * `ObanTest.reset` between tests of one file: each test's TestClock starts at
 * the same moment, so without it a unique job of one test conflicted with the
 * same job of the next, and the second test's drain ran nothing (a walkthrough).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Oban, Worker, Workflow } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { uniquePrefix } from "./support/db.ts"
import { onTestClock, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("kit_reset")

const SyncCustomer = Worker.make("ResetSyncCustomer", {
  args: Schema.Struct({ customerId: Schema.String }),
  unique: { period: "1 hour" },
  perform: () => Effect.void
})

/** What each test does: the same unique job, inserted and drained, from a clean schema. */
const syncOnce = Effect.gen(function*() {
  yield* ObanTest.reset
  const job = yield* Oban.insert(SyncCustomer.job({ customerId: "c1" }))
  assert.isFalse(job.conflict)
  assert.strictEqual((yield* ObanTest.drainQueue({ queue: "default" })).completed, 1)
})

describe("ObanTest.reset", () => {
  layer(workflowTestLayer(prefix, [SyncCustomer]), { excludeTestServices: true })((it) => {
    it.effect("a first test inserts a unique job, a workflow and a queue's limits", () =>
      Effect.gen(function*() {
        yield* syncOnce
        yield* Oban.insertWorkflow(
          Workflow.make("w")
            .add("a", SyncCustomer.job({ customerId: "c2" }, { unique: false }))
            .add("b", SyncCustomer.job({ customerId: "c3" }, { unique: false }), { deps: ["a"] })
        )
        const sql = yield* SqlClient
        yield* sql`INSERT INTO ${sql(prefix)}.oban_queues (name, global_limit) VALUES ('limited', 1)`
        // What the next test must not see.
        const [left] = yield* sql<{ deps: number }>`SELECT count(*)::int AS deps FROM ${sql(prefix)}.oban_workflow_deps`
        assert.strictEqual(left!.deps, 1)
      }).pipe(onTestClock))

    it.effect("a second test starts from nothing: the same unique job is new and runs", () =>
      Effect.gen(function*() {
        yield* syncOnce
        const sql = yield* SqlClient
        const [left] = yield* sql<{ jobs: number; queues: number; deps: number }>`
          SELECT (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs_all) AS jobs,
                 (SELECT count(*)::int FROM ${sql(prefix)}.oban_queues) AS queues,
                 (SELECT count(*)::int FROM ${sql(prefix)}.oban_workflow_deps) AS deps`
        assert.deepStrictEqual(left, { jobs: 1, queues: 0, deps: 0 })
      }).pipe(onTestClock))
  })
})
