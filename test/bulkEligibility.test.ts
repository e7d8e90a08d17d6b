/**
 * Which jobs the bulk reschedule and retry touch, with a row in every state
 * (executing ones among them) and no node running: `Jobs.reschedule` moves
 * only available, scheduled and retryable jobs; `Jobs.retry` only jobs that
 * are neither executing, available nor suspended (src/Jobs.ts). Every other
 * row is left exactly as it was, and `changed` counts the eligible rows only.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("auditbulk")
const Audit = Worker.make("Audit", { args: Schema.Struct({ label: Schema.String }), perform: () => Effect.void })

const T0 = "2026-01-01T00:00:00Z"

/**
 * One row per label: its state, attempt, and timestamps, all fixed and in the past
 * (`finished` is moved to `oban_jobs_finished`, as the ack moves completed jobs).
 */
const labels = [
  ["available", "available", 0],
  ["scheduled", "scheduled", 0],
  ["executing", "executing", 1],
  ["executing2", "executing", 3],
  ["retryable", "retryable", 2],
  ["completed", "completed", 1],
  ["finished", "completed", 1],
  ["discarded", "discarded", 20],
  ["cancelled", "cancelled", 1],
  ["suspended", "suspended", 0]
] as const
type Label = (typeof labels)[number][0]

const seed = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const ids = {} as Record<Label, number>
    for (const [label, state, attempt] of labels) {
      const job = yield* Oban.insert(Audit.job({ label }, { queue, maxAttempts: 20 }))
      ids[label] = job.id
      const attempted = attempt > 0
      yield* sql`
        UPDATE ${sql(prefix)}.oban_jobs SET
          state = ${state}::${sql(prefix)}.oban_job_state,
          attempt = ${attempt},
          inserted_at = ${T0}::timestamptz,
          scheduled_at = ${T0}::timestamptz + interval '1 minute',
          attempted_at = CASE WHEN ${attempted} THEN ${T0}::timestamptz + interval '2 minutes' END,
          attempted_by = CASE WHEN ${attempted} THEN ARRAY['ghost-node', 'ghost-producer'] END,
          completed_at = CASE WHEN ${state} = 'completed' THEN ${T0}::timestamptz + interval '3 minutes' END,
          discarded_at = CASE WHEN ${state} = 'discarded' THEN ${T0}::timestamptz + interval '3 minutes' END,
          cancelled_at = CASE WHEN ${state} = 'cancelled' THEN ${T0}::timestamptz + interval '3 minutes' END
        WHERE id = ${job.id}`
    }
    yield* sql`
      WITH moved AS (DELETE FROM ${sql(prefix)}.oban_jobs WHERE id = ${ids.finished} RETURNING *)
      INSERT INTO ${sql(prefix)}.oban_jobs_finished SELECT * FROM moved`
    return ids
  })

/** Every row of `queue` as stored, by id (all columns but the id, as JSON). */
const snapshot = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: number; row: Record<string, unknown> }>`
      SELECT j.id::int AS id, to_jsonb(j) - 'id' AS row FROM ${sql(prefix)}.oban_jobs_all AS j
      WHERE j.queue = ${queue} ORDER BY j.id`
    return new Map(rows.map((row) => [row.id, row.row]))
  })

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
})

/** The rows of `ids` (by label) in `after` equal to those in `before`. */
const assertUntouched = (
  ids: Record<Label, number>,
  untouched: ReadonlyArray<Label>,
  before: Map<number, Record<string, unknown>>,
  after: Map<number, Record<string, unknown>>
) => {
  for (const label of untouched) {
    const was = before.get(ids[label])!
    const now = after.get(ids[label])!
    assert.isDefined(now, `${label} still exists`)
    assert.deepStrictEqual(
      { state: now["state"], scheduled_at: now["scheduled_at"], attempt: now["attempt"] },
      { state: was["state"], scheduled_at: was["scheduled_at"], attempt: was["attempt"] },
      label
    )
    assert.deepStrictEqual(now, was, `${label}: the whole row`)
  }
}

/** A row in every state in the queue under test ("audit") and in one outside the filter ("other"), with their rows before. */
const seedBoth = Effect.gen(function*() {
  yield* reset
  const ids = yield* seed("audit")
  const others = yield* seed("other")
  return { ids, others, before: yield* snapshot("audit"), otherBefore: yield* snapshot("other") }
})

layer(testLayer(prefix, { maxConnections: 4 }), { excludeTestServices: true })("audit: bulk eligibility", (it) => {
  it.effect("Jobs.reschedule moves available, scheduled and retryable jobs only; executing and finished ones are untouched", () =>
    Effect.gen(function*() {
      const { ids, others, before, otherBefore } = yield* seedBoth
      const at = new Date(Date.now() + 2 * 3_600_000)
      for (const batchSize of [2, 1000]) {
        // The second pass finds the same three (still scheduled) and moves them again to `at`.
        const result = yield* Jobs.reschedule({ queues: ["audit"] }, at, { batchSize })
        assert.strictEqual(result.changed, 3, `batchSize ${batchSize}`)
        assert.deepStrictEqual(result.skipped, [])
      }
      const after = yield* snapshot("audit")
      for (const label of ["available", "scheduled", "retryable"] as const) {
        const row = after.get(ids[label])!
        assert.strictEqual(row["state"], "scheduled", label)
        assert.strictEqual(new Date(row["scheduled_at"] as string).getTime(), at.getTime(), label)
        assert.strictEqual(row["attempt"], before.get(ids[label])!["attempt"], label)
      }
      assertUntouched(
        ids,
        ["executing", "executing2", "completed", "finished", "discarded", "cancelled", "suspended"],
        before,
        after
      )
      // The other queue is outside the filter: nothing of it moved.
      assertUntouched(others, labels.map(([label]) => label), otherBefore, yield* snapshot("other"))
    }))

  it.effect("Jobs.retry makes scheduled, retryable and finished jobs available; executing, available and suspended ones are untouched", () =>
    Effect.gen(function*() {
      const { ids, others, before, otherBefore } = yield* seedBoth
      const retried = ["scheduled", "retryable", "completed", "finished", "discarded", "cancelled"] as const
      const result = yield* Jobs.retry({ queues: ["audit"] }, { batchSize: 2 })
      assert.strictEqual(result.changed, retried.length)
      assert.deepStrictEqual(result.skipped, [])
      const after = yield* snapshot("audit")
      for (const label of retried) {
        const row = after.get(ids[label])!
        const was = before.get(ids[label])!
        assert.strictEqual(row["state"], "available", label)
        assert.notStrictEqual(row["scheduled_at"], was["scheduled_at"], label)
        assert.strictEqual(row["attempt"], was["attempt"], label)
        assert.isAbove(row["max_attempts"] as number, row["attempt"] as number, label)
        assert.isNull(row["completed_at"], label)
        assert.isNull(row["discarded_at"], label)
        assert.isNull(row["cancelled_at"], label)
      }
      assertUntouched(ids, ["available", "executing", "executing2", "suspended"], before, after)
      // Everything is back in `oban_jobs`, the finished row included; a second retry finds nothing more.
      const sql = yield* SqlClient
      const finished = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_finished
        WHERE queue = 'audit'`
      assert.strictEqual(finished[0]!.n, 0)
      const again = yield* Jobs.retry({ queues: ["audit"] })
      assert.strictEqual(again.changed, 0)
      assertUntouched(ids, ["available", "executing", "executing2", "suspended"], before, yield* snapshot("audit"))
      assertUntouched(others, labels.map(([label]) => label), otherBefore, yield* snapshot("other"))
    }))

  it.effect("a retry filtered to executing jobs changes nothing; a reschedule filtered to executing and finished jobs neither", () =>
    Effect.gen(function*() {
      yield* reset
      const ids = yield* seed("audit")
      const before = yield* snapshot("audit")
      const retry = yield* Jobs.retry({ queues: ["audit"], states: ["executing", "available", "suspended"] })
      assert.strictEqual(retry.changed, 0)
      const reschedule = yield* Jobs.reschedule(
        { queues: ["audit"], states: ["executing", "completed", "discarded", "cancelled", "suspended"] },
        new Date(Date.now() + 3_600_000)
      )
      assert.strictEqual(reschedule.changed, 0)
      assertUntouched(ids, labels.map(([label]) => label), before, yield* snapshot("audit"))
    }))
})
