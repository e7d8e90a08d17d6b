/**
 * How the ack statement finds its rows: by primary key, whatever the planner
 * believes about executing jobs. Statistics taken before a burst (no job
 * executing) made the planner read the partial index of executing jobs, that
 * is every executing job of every node, to find a batch. The scans are
 * counted by the server for the current transaction
 * (`pg_stat_get_xact_numscans`), so the ack runs in one.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("ack_plan")
const node = "plan-node"
const Noop = Worker.make("Noop", { args: Schema.Struct({ i: Schema.Number }), queue: "plan", perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("ack plan", (it) => {
  it.effect("a batch of outcomes is found through the primary key, not the index of executing jobs", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const inserted = yield* Oban.insertAll(Array.from({ length: 2_000 }, (_, i) => Noop.job({ i })))
      // Statistics of a table where nothing executes yet, then a burst: every job starts.
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
      const jobs = yield* Effect.flatMap(now(sql), (time) => claimJobs(sql, prefix, time, inserted.map((job) => job.id), node))
      assert.strictEqual(jobs.length, 2_000)
      const scans = (index: string) =>
        Effect.map(
          sql<{ n: number }>`SELECT pg_stat_get_xact_numscans(${`"${prefix}".${index}`}::regclass)::int AS n`,
          ([row]) => row!.n
        )
      const ackIn = (acks: Parameters<typeof ackJobs>[4], deleteCompleted: boolean) =>
        sql.withTransaction(Effect.gen(function*() {
          const before = { executing: yield* scans("oban_jobs_executing_idx"), pkey: yield* scans("oban_jobs_pkey") }
          const result = yield* Effect.flatMap(now(sql), (time) => ackJobs(sql, prefix, time, node, acks, { deleteCompleted }))
          assert.strictEqual(result.written.length, acks.length)
          return {
            executing: (yield* scans("oban_jobs_executing_idx")) - before.executing,
            pkey: (yield* scans("oban_jobs_pkey")) - before.pkey
          }
        }))
      const failed = (index: number) =>
        ackOf(jobs[index]!, "retryable", { delay_ms: 1_000, error: { attempt: 1, kind: "failure", message: "boom" } })
      // Bare completions (marked completed, then deleted), and a batch mixing them with other outcomes.
      const batches = [
        { acks: jobs.slice(0, 500).map((job) => ackOf(job, "completed")), deleteCompleted: false },
        { acks: jobs.slice(500, 1_000).map((job) => ackOf(job, "completed")), deleteCompleted: true },
        { acks: [...jobs.slice(1_000, 1_400).map((job) => ackOf(job, "completed")), failed(1_400), failed(1_401)], deleteCompleted: true }
      ]
      for (const { acks, deleteCompleted } of batches) {
        const counted = yield* ackIn(acks, deleteCompleted)
        assert.strictEqual(counted.executing, 0, JSON.stringify(counted))
        assert.isAbove(counted.pkey, 0)
      }
    }).pipe(Effect.scoped))
})
