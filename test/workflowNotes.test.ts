import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../src/Migrations.ts"
import { migratedPrefix, pgLayer } from "./support/db.ts"

/**
 * A two-step workflow written as the library writes one: step `a` executing, step `b` suspended
 * until `a` finishes. Returns the two ids.
 */
const twoSteps = (prefix: string, workflow = "wf") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [a] = yield* sql.unsafe<{ id: number }>(`
      INSERT INTO "${prefix}".oban_jobs (state, queue, worker, workflow_id, meta, attempt, attempted_at)
      VALUES ('executing', 'q', 'W', '${workflow}', '{"workflow": {"step": "a"}}', 1, now()) RETURNING id::int AS id`)
    const [b] = yield* sql.unsafe<{ id: number }>(`
      INSERT INTO "${prefix}".oban_jobs (state, queue, worker, workflow_id, meta)
      VALUES ('suspended', 'q', 'W', '${workflow}', '{"workflow": {"step": "b"}}') RETURNING id::int AS id`)
    yield* sql.unsafe(`INSERT INTO "${prefix}".oban_workflow_deps (job_id, dep_id) VALUES (${b!.id}, ${a!.id})`)
    yield* sql.unsafe(`INSERT INTO "${prefix}".oban_workflow_waits (job_id, pending) VALUES (${b!.id}, 1)`)
    return { a: a!.id, b: b!.id }
  })

/** Two fresh prefixes, each holding a two-step workflow. */
const twoPrefixes = (first: string, second: string) =>
  Effect.gen(function*() {
    const prefixes = [yield* migratedPrefix(first), yield* migratedPrefix(second)] as const
    return { prefixes, one: yield* twoSteps(prefixes[0]), two: yield* twoSteps(prefixes[1]) }
  })

const stateOf = (prefix: string, id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql.unsafe<{ state: string }>(`SELECT state::text FROM "${prefix}".oban_jobs_all WHERE id = ${id}`)
    return row?.state ?? "gone"
  })

layer(pgLayer(), { excludeTestServices: true })("workflow notes (migration 19)", (it) => {
  it.effect("one statement that finishes steps of two prefixes releases each prefix's dependents, in its own prefix", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { one, prefixes: [first, second], two } = yield* twoPrefixes("notes_a", "notes_b")
      // In a transaction, so that notes left behind would still be there for the next statement
      // (the settings are transaction-local: after an autocommitted statement they are gone anyway).
      const left = yield* sql.withTransaction(Effect.gen(function*() {
        // Both updates in one statement: their row triggers note before either statement trigger runs.
        yield* sql.unsafe(`
          WITH x AS (UPDATE "${first}".oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${one.a} RETURNING id),
               y AS (UPDATE "${second}".oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${two.a} RETURNING id)
          SELECT (SELECT count(*) FROM x) + (SELECT count(*) FROM y) AS n`)
        const [row] = yield* sql<{ finished: string | null; deleted: string | null }>`
          SELECT current_setting('oban.workflow_finished', true) AS finished,
                 current_setting('oban.workflow_deleted', true) AS deleted`
        return row!
      }))
      assert.deepStrictEqual(
        [yield* stateOf(first, one.b), yield* stateOf(second, two.b)],
        ["available", "available"]
      )
      // Nothing is left noted for a later statement of the transaction: each statement trigger took its notes.
      assert.deepStrictEqual([left.finished ?? "", left.deleted ?? ""], ["", ""])
    }))

  it.effect("a table's statement trigger takes the notes that carry its table's oid and leaves the others", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const prefix = yield* migratedPrefix("notes_f")
      // The ids alone would collide: every prefix numbers its jobs from 1.
      const taken = yield* sql.unsafe<{
        set: boolean
        taken: ReadonlyArray<number> | null
        left: string
        none: ReadonlyArray<number> | null
        unset: ReadonlyArray<number> | null
      }>(`
        SELECT set_config('oban.workflow_finished', '100:1,200:1,100:7,2000:7,1000:9', true) IS NOT NULL AS set,
               "${prefix}".oban_workflow_take_notes('oban.workflow_finished', 100)::int[] AS taken,
               current_setting('oban.workflow_finished') AS left,
               "${prefix}".oban_workflow_take_notes('oban.workflow_finished', 300)::int[] AS none,
               "${prefix}".oban_workflow_take_notes('oban.workflow_deleted', 100)::int[] AS unset`)
      assert.deepStrictEqual(taken, [{ set: true, taken: [1, 7], left: "200:1,2000:7,1000:9", none: null, unset: null }])
    }))

  it.effect("a step deleted in one prefix and a step finished in another, in one statement: both dependents settle", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { one, prefixes: [first, second], two } = yield* twoPrefixes("notes_c", "notes_d")
      yield* sql.unsafe(`
        WITH x AS (DELETE FROM "${first}".oban_jobs WHERE id = ${one.a} RETURNING id),
             y AS (UPDATE "${second}".oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${two.a} RETURNING id)
        SELECT (SELECT count(*) FROM x) + (SELECT count(*) FROM y) AS n`)
      // A deleted dependency counts as done (migration 9): the dependent runs.
      assert.deepStrictEqual([yield* stateOf(first, one.b), yield* stateOf(second, two.b)], ["available", "available"])
    }))

  it.effect("down to 18 and up again: the notes work under either version", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const prefix = yield* migratedPrefix("notes_e")
      yield* Migrations.down({ prefix, to: 18 })
      const before = yield* twoSteps(prefix)
      yield* sql.unsafe(`UPDATE "${prefix}".oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${before.a}`)
      assert.strictEqual(yield* stateOf(prefix, before.b), "available")
      yield* Migrations.run({ prefix })
      yield* sql.unsafe(`UPDATE "${prefix}".oban_jobs SET workflow_id = 'old' WHERE workflow_id = 'wf'`)
      const after = yield* twoSteps(prefix)
      yield* sql.unsafe(`UPDATE "${prefix}".oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${after.a}`)
      assert.strictEqual(yield* stateOf(prefix, after.b), "available")
    }))
})
