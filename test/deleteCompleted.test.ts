/**
 * `deleteCompleted`: a job that completes is deleted by the statement that
 * would have marked it `completed`; every other outcome is written as always,
 * in the same batch.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cron from "../src/Cron.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("delete_completed")

const ran = new Map<number, number>()
const Mixed = Worker.make("Mixed", {
  args: Schema.Struct({ mode: Schema.Literals(["ok", "fail", "snooze"]) }),
  queue: "mixed",
  maxAttempts: 1,
  perform: (job): Effect.Effect<void, string | Worker.Snooze> => {
    ran.set(job.id, (ran.get(job.id) ?? 0) + 1)
    if (job.args.mode === "fail") return Effect.fail("boom")
    if (job.args.mode === "snooze") return Worker.snooze("1 hour")
    return Effect.void
  }
})

const Kept = Worker.make("Kept", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "kept",
  perform: (job) => Effect.sync(() => void ran.set(job.id, (ran.get(job.id) ?? 0) + 1))
})

const Square = Worker.make("Square", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "results",
  result: Schema.Int,
  perform: (job) => Effect.succeed(job.args.n * job.args.n)
})

const sums: Array<number> = []
const Sum = Worker.make("Sum", {
  args: Schema.Struct({}),
  queue: "results",
  perform: (job) =>
    Effect.flatMap(Workflow.results(job, Square), (squares) =>
      Effect.sync(() => void sums.push(squares.reduce((total, entry) => total + entry.value, 0)))).pipe(Effect.orDie)
})

const rows = Effect.gen(function*() {
  const sql = yield* SqlClient
  return yield* sql<{ id: number; state: string }>`
    SELECT id::int AS id, state::text AS state FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
})

layer(testLayer(prefix), { excludeTestServices: true })("deleteCompleted", (it) => {
  it.effect("a node deleting completed jobs keeps the results a workflow's next step reads", () =>
    Effect.gen(function*() {
      sums.length = 0
      yield* Oban.insertWorkflow(
        Workflow.make("squares")
          .add("a", Square.job({ n: 3 }))
          .add("b", Square.job({ n: 4 }))
          .add("sum", Sum.job({}), { deps: ["a", "b"] })
      )
      yield* startNode({ prefix, queues: { results: 5 }, workers: [Square, Sum], deleteCompleted: true })
      yield* waitFor("the sum ran", Effect.sync(() => sums.length === 1), "20 seconds")
      // Before, deleteCompleted deleted the squares with their results: the sum found none (InvalidResultError).
      assert.deepStrictEqual(sums, [25])
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished CASCADE`
    }).pipe(Effect.scoped))

  it.effect("completed jobs are deleted; failed and snoozed ones are written as always, each job run once", () =>
    Effect.gen(function*() {
      const modes = Array.from({ length: 300 }, (_, n): "ok" | "fail" | "snooze" =>
        n % 10 === 3 ? "fail" : n % 10 === 7 ? "snooze" : "ok")
      const jobs = yield* Oban.insertAll(modes.map((mode) => Mixed.job({ mode })))
      yield* startNode({ prefix, queues: { mixed: 20 }, workers: [Mixed], deleteCompleted: true })
      yield* waitFor(
        "only the failed and snoozed jobs left, none executing",
        Effect.map(rows, (left) => left.length === 60 && left.every((row) => row.state !== "executing")),
        "20 seconds"
      )
      const left = new Map((yield* rows).map((row) => [row.id, row.state]))
      jobs.forEach((job, index) => {
        assert.strictEqual(ran.get(job.id), 1, `job ${job.id} ran once`)
        const expected = modes[index] === "ok" ? undefined : modes[index] === "fail" ? "discarded" : "scheduled"
        assert.strictEqual(left.get(job.id), expected, `job ${job.id} (${modes[index]})`)
      })
    }).pipe(Effect.scoped))

  it.effect("completed jobs whose row still matters are kept: unique ones (cron slots too) refuse their duplicate", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [unique, plain] = yield* Oban.insertAll([
        Kept.job({ n: 1 }, { unique: { period: "forever" } }),
        Kept.job({ n: 2 })
      ])
      const entries = yield* Cron.parse([Cron.entry("*/10 * * * * *", Kept, { n: 3 }, { name: "kept-tick" })])
      const from = new Date("2026-03-01T10:00:00.000Z")
      const to = new Date("2026-03-01T10:00:30.000Z")
      assert.deepStrictEqual(yield* Cron.runOnce({ sql, prefix, entries, from, to }), { inserted: 3, duplicates: 0 })
      yield* startNode({ prefix, queues: { kept: 5 }, workers: [Kept], deleteCompleted: true })
      const states = sql<{ id: number; state: string; unique_key: string | null }>`
        SELECT id::int AS id, state::text AS state, unique_key FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'kept' ORDER BY id`
      yield* waitFor(
        "every kept job ran and the plain one is gone",
        Effect.map(states, (left) => left.length === 4 && left.every((row) => row.state === "completed")),
        "20 seconds"
      )
      const left = yield* states
      assert.deepStrictEqual(left.map((row) => row.id).includes(plain!.id), false)
      assert.isTrue(left.some((row) => row.id === unique!.id))
      // The unique job refuses a second insert; the look back of a new leader inserts no slot again.
      const again = yield* Oban.insert(Kept.job({ n: 1 }, { unique: { period: "forever" } }))
      assert.deepStrictEqual([again.conflict, again.id], [true, unique!.id])
      assert.deepStrictEqual(yield* Cron.runOnce({ sql, prefix, entries, from, to }), { inserted: 0, duplicates: 3 })
      yield* Effect.sleep("200 millis")
      assert.strictEqual((yield* states).length, 4)
      for (const row of left) assert.strictEqual(ran.get(row.id), 1, `job ${row.id} ran once`)
    }).pipe(Effect.scoped))
})
