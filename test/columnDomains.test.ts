import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../src/Migrations.ts"
import { migratedPrefix, pgLayer } from "./support/db.ts"

/** The messages of an error and of its causes, joined. */
const messagesOf = (error: unknown): string => {
  const messages: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const { cause, message } = current as { readonly message?: unknown; readonly cause?: unknown }
    if (typeof message === "string") messages.push(message)
    current = cause
  }
  return messages.join(" / ")
}

/** Runs `statement`; the name of the check constraint it violated, or "accepted". */
const violatedCheck = (statement: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const outcome = yield* sql.unsafe(statement).pipe(Effect.as("accepted"), Effect.catch((error) => Effect.succeed(messagesOf(error))))
    if (outcome === "accepted") return outcome
    const match = /violates check constraint "([^"]+)"/.exec(outcome)
    return match === null ? `failed otherwise: ${outcome}` : match[1]!
  })

/** An insert into `table` of one job whose columns are the defaults overridden by `columns`. */
const insertInto = (prefix: string, table: string, columns: Record<string, string>): string => {
  const all: Record<string, string> = {
    queue: "'q'",
    worker: "'W'",
    // The finished table takes its ids from oban_jobs's identity: here, one above those it holds.
    ...(table === "oban_jobs_finished"
      ? { id: `(SELECT coalesce(max(id), 0) + 1 FROM "${prefix}".oban_jobs_finished)`, state: "'completed'", completed_at: "now()" }
      : {}),
    ...columns
  }
  return `INSERT INTO "${prefix}".${table} (${Object.keys(all).join(", ")}) VALUES (${Object.values(all).join(", ")})`
}

/** What each table refuses, and the check that refuses it at the latest version (the table's before migration 18). */
const refusals: ReadonlyArray<readonly [Record<string, string>, string, string]> = [
  [{ queue: "''" }, "oban_queue_name_length", "oban_jobs_queue_length"],
  [{ queue: "repeat('q', 129)" }, "oban_queue_name_length", "oban_jobs_queue_length"],
  [{ worker: "''" }, "oban_worker_name_length", "oban_jobs_worker_length"],
  [{ meta: "'[]'" }, "oban_job_meta_object", "oban_jobs_meta_object"],
  [{ errors: "'{}'" }, "oban_job_errors_array", "oban_jobs_errors_array"],
  [{ priority: "10" }, "oban_job_priority_range", "oban_jobs_priority_range"],
  [{ priority: "-1" }, "oban_job_priority_range", "oban_jobs_priority_range"],
  [{ max_attempts: "0" }, "oban_job_max_attempts_positive", "oban_jobs_max_attempts_positive"],
  [{ attempt: "3", max_attempts: "2" }, "oban_jobs_attempt_range", "oban_jobs_attempt_range"],
  [{ attempt: "-1" }, "oban_jobs_attempt_range", "oban_jobs_attempt_range"]
]

const tables = ["oban_jobs", "oban_jobs_finished"] as const

/** Relation file numbers of the two jobs tables: they change only when a table is rewritten. */
const fileNodes = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ relname: string; relfilenode: number }>`
      SELECT relname, relfilenode::int AS relfilenode FROM pg_class
      WHERE relnamespace = ${prefix}::regnamespace AND relname IN ('oban_jobs', 'oban_jobs_finished') ORDER BY relname`
    return rows.map((row) => `${row.relname}:${row.relfilenode}`)
  })

/** The type of each checked column of `table`, as PostgreSQL names it. */
const columnTypes = (prefix: string, table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ attname: string; type: string }>`
      SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = ${`"${prefix}".${table}`}::regclass
        AND attname IN ('queue', 'worker', 'meta', 'errors', 'priority', 'max_attempts')
      ORDER BY attname`
    return Object.fromEntries(rows.map((row) => [row.attname, row.type.replace(`"${prefix}".`, "").replace(`${prefix}.`, "")]))
  })

/** The check constraints of `table`, each with whether it is validated. */
const checksOf = (prefix: string, table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ conname: string; convalidated: boolean }>`
      SELECT conname, convalidated FROM pg_constraint
      WHERE conrelid = ${`"${prefix}".${table}`}::regclass AND contype = 'c' ORDER BY conname`
    return rows.map((row) => `${row.conname}${row.convalidated ? "" : " (not valid)"}`)
  })

const domainTypes = {
  errors: "oban_job_errors",
  max_attempts: "oban_job_max_attempts",
  meta: "oban_job_meta",
  priority: "oban_job_priority",
  queue: "oban_queue_name",
  worker: "oban_worker_name"
}
const baseTypes = { errors: "jsonb", max_attempts: "smallint", meta: "jsonb", priority: "smallint", queue: "text", worker: "text" }

layer(pgLayer(), { excludeTestServices: true })("the jobs tables' column checks (migration 18)", (it) => {
  it.effect("both jobs tables refuse what their checks always refused, by the domain's check or the attempt range", () =>
    Effect.gen(function*() {
      const prefix = yield* migratedPrefix("domains")
      for (const table of tables) {
        assert.strictEqual(yield* violatedCheck(insertInto(prefix, table, {})), "accepted", `a valid row goes into ${table}`)
        for (const [columns, check] of refusals) {
          assert.strictEqual(yield* violatedCheck(insertInto(prefix, table, columns)), check, `${table} ${JSON.stringify(columns)}`)
        }
      }
      // An update is checked too, on the column it writes.
      assert.strictEqual(
        yield* violatedCheck(`UPDATE "${prefix}".oban_jobs SET priority = 10`),
        "oban_job_priority_range"
      )
      assert.strictEqual(
        yield* violatedCheck(`UPDATE "${prefix}".oban_jobs SET attempt = max_attempts + 1`),
        "oban_jobs_attempt_range"
      )
    }))

  it.effect("migrating 17 -> 18 keeps every row without rewriting either table; down restores the table checks", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const prefix = yield* migratedPrefix("domains_up", 17)
      yield* sql.unsafe(`INSERT INTO "${prefix}".oban_jobs (queue, worker, args, meta, priority, max_attempts)
        SELECT 'q' || (g % 3), 'W', jsonb_build_object('i', g), '{"m": 1}', g % 10, 5 FROM generate_series(1, 500) AS g`)
      yield* sql.unsafe(`INSERT INTO "${prefix}".oban_jobs_finished
        (id, state, queue, worker, args, errors, completed_at, attempt, max_attempts)
        VALUES (100000, 'completed', 'q', 'W', '{"i": -1}', '[{"attempt": 1}]', now(), 1, 1)`)
      const snapshot = `SELECT id, state, queue, worker, args, meta, errors, priority, attempt, max_attempts
        FROM "${prefix}".oban_jobs_all ORDER BY id`
      const before = yield* sql.unsafe(snapshot)
      const filesBefore = yield* fileNodes(prefix)
      const checksBefore = yield* Effect.forEach(tables, (table) => checksOf(prefix, table))
      for (const table of tables) assert.deepStrictEqual(yield* columnTypes(prefix, table), baseTypes)

      yield* Migrations.run({ prefix, to: 18 })
      assert.deepStrictEqual(yield* fileNodes(prefix), filesBefore, "neither table was rewritten")
      assert.deepStrictEqual(yield* sql.unsafe(snapshot), before, "every row, with the same values, seen through the view")
      for (const table of tables) assert.deepStrictEqual(yield* columnTypes(prefix, table), domainTypes)
      assert.strictEqual(yield* violatedCheck(insertInto(prefix, "oban_jobs", { priority: "10" })), "oban_job_priority_range")
      // The finished table is not read to check its attempt range again: it comes back NOT VALID.
      assert.deepStrictEqual(yield* Effect.forEach(tables, (table) => checksOf(prefix, table)), [
        ["oban_jobs_attempt_range"],
        ["oban_jobs_attempt_range (not valid)", "oban_jobs_finished_state"]
      ])

      yield* Migrations.down({ prefix, to: 17 })
      assert.deepStrictEqual(yield* sql.unsafe(snapshot), before)
      assert.deepStrictEqual(yield* Effect.forEach(tables, (table) => checksOf(prefix, table)), checksBefore, "every check back, validated")
      for (const table of tables) {
        assert.deepStrictEqual(yield* columnTypes(prefix, table), baseTypes)
        for (const [columns, , check] of refusals) {
          assert.strictEqual(yield* violatedCheck(insertInto(prefix, table, columns)), check, `${table} ${JSON.stringify(columns)}`)
        }
      }
      const [domains] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_type WHERE typnamespace = ${prefix}::regnamespace AND typtype = 'd'`
      assert.strictEqual(domains!.n, 0, "the domains are gone")
    }))
})
