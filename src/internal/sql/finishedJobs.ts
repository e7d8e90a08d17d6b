/**
 * SQL of `oban_jobs_finished` (migration 0016): the table completed jobs move
 * to when the ack writes them, so that `oban_jobs` keeps to live jobs and its
 * pages stay few. Reads that may meet a finished job go through the view
 * `oban_jobs_all`; the writes that need a finished job back in `oban_jobs`
 * (retry, delete) move it back first with `restoreFinished`.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { table } from "./tables.ts"

/** Every column of `oban_jobs`, in table order (the finished table has the same ones). */
export const allJobColumns = [
  "id",
  "state",
  "queue",
  "worker",
  "args",
  "meta",
  "tags",
  "errors",
  "attempt",
  "max_attempts",
  "priority",
  "inserted_at",
  "scheduled_at",
  "attempted_at",
  "completed_at",
  "discarded_at",
  "cancelled_at",
  "attempted_by",
  "unique_key",
  "unique_states",
  "workflow_id",
  "result",
  "cancel_requested_at"
] as const

/** `allJobColumns` as a column list for `INSERT` and `SELECT`. */
export const allJobColumnList = allJobColumns.join(", ")

/**
 * The row `j` as a `SELECT`/`RETURNING` list of every column, each named,
 * with `values` in place of the columns it gives (SQL expressions).
 */
export const rowWith = (values: ReadonlyMap<string, string>): string =>
  allJobColumns.map((column) => `${values.get(column) ?? `j.${column}`} AS ${column}`).join(", ")

/**
 * Whether a job row `j` that finishes (in `state`, a finished state; by
 * default `completed`) may leave `oban_jobs`: it is no workflow step (its
 * dependents read its state) and `deletableOnCompletion` holds.
 */
export const movableOnCompletion = (
  sql: SqlClient,
  prefix: string,
  state: Fragment = sql.literal("'completed'")
): Fragment => sql`j.workflow_id IS NULL AND ${deletableOnCompletion(sql, prefix, state)}`

/**
 * Whether a job row `j` that finishes in `state` may stop existing in
 * `oban_jobs` (moved, or deleted by `deleteCompleted`): no cancel was
 * requested (migration 0012's trigger must make it `cancelled`), and it does
 * not hold its unique key in that state (the unique index is on `oban_jobs`,
 * and the row is what refuses a duplicate; cron slots hold theirs in every
 * state).
 */
export const deletableOnCompletion = (
  sql: SqlClient,
  prefix: string,
  state: Fragment = sql.literal("'completed'")
): Fragment =>
  sql`j.cancel_requested_at IS NULL
    AND (j.unique_key IS NULL
         OR (j.unique_states IS NOT NULL AND NOT ${sql.literal(`"${prefix}"`)}.oban_state_in(${state}, j.unique_states)))`

/**
 * Moves the finished jobs (aliased `j`) that match `condition` back into
 * `oban_jobs` as they are, at most `limit` of them in id order. Returns how
 * many moved. Run before a statement that changes finished jobs in
 * `oban_jobs` (retry, delete), in the same transaction when it must be atomic.
 */
export const restoreFinished = (
  sql: SqlClient,
  prefix: string,
  condition: Fragment,
  limit?: number
): Effect.Effect<number, SqlError> => {
  const columns = sql.literal(allJobColumnList)
  const finished = table(sql, prefix, "oban_jobs_finished")
  return sql<{ readonly n: number }>`
    WITH chosen AS (
      SELECT j.id FROM ${finished} AS j WHERE ${condition}
      ORDER BY j.id ${limit === undefined ? sql`` : sql`LIMIT ${limit}`}
      FOR UPDATE
    ),
    moved AS (
      DELETE FROM ${finished} AS f USING chosen WHERE f.id = chosen.id
      RETURNING ${sql.literal(allJobColumns.map((column) => `f.${column}`).join(", "))}
    ),
    restored AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")} (${columns}) OVERRIDING SYSTEM VALUE
      SELECT ${columns} FROM moved
      RETURNING id
    )
    SELECT count(*)::int AS n FROM restored
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
}

/**
 * Deletes up to `limit` jobs of `oban_jobs_finished` that finished more than
 * `maxAgeMillis` before `now`, oldest first in each state, through the
 * state's partial index (the cutoff is written into each branch, as in
 * `pruneStatement`). Returns how many.
 */
export const pruneFinished = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  maxAgeMillis: number,
  limit: number
): Effect.Effect<number, SqlError> => {
  if (limit <= 0) return Effect.succeed(0)
  const finished = table(sql, prefix, "oban_jobs_finished")
  const due = (state: "completed" | "cancelled" | "discarded") => {
    const at = sql.literal(`${state}_at`)
    return sql`SELECT id FROM ${finished}
      WHERE state = ${sql.literal(`'${state}'`)} AND ${at} < ${now} - ${maxAgeMillis} * interval '1 millisecond'
      ORDER BY ${at} LIMIT ${limit}
      FOR UPDATE SKIP LOCKED`
  }
  return sql<{ readonly n: number }>`
    WITH completed AS (${due("completed")}),
    cancelled AS (${due("cancelled")}),
    discarded AS (${due("discarded")}),
    doomed AS (
      (SELECT id FROM completed) UNION ALL (SELECT id FROM cancelled) UNION ALL (SELECT id FROM discarded)
      LIMIT ${limit}
    ),
    deleted AS (
      DELETE FROM ${finished} AS f WHERE f.id = ANY(ARRAY(SELECT id FROM doomed)) RETURNING f.id
    )
    SELECT count(*)::int AS n FROM deleted
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
}
