/**
 * SQL of the operators' reads of jobs (through `oban_jobs_all`, which holds the
 * finished table too): a page of jobs in keyset order,
 * and the counts per queue and state (exact for the states that have partial
 * indexes, estimated from the planner's statistics for the rest on a large
 * table; see docs/cli.md#counts).
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment, Statement } from "effect/sql/Statement"
import type { Job } from "../../Job.ts"
import { jobColumnsOf, jobFromRow, type JobRow } from "../jobRow.ts"
import { table } from "./tables.ts"

/** The column a page is sorted by (then by id). */
export type SortColumn = "id" | "scheduled_at" | "inserted_at"

/** Where the previous page ended: the sort column's value in microseconds since the epoch (or `infinity`, `-infinity`), and the id. */
export interface Keyset {
  readonly micros: string | null
  readonly id: number
}

export interface PageRow {
  readonly job: Job
  /** The sort column in microseconds since the epoch, `infinity` or `-infinity` (null when sorting by id). */
  readonly micros: string | null
}

/**
 * Up to `limit` jobs matching `condition`, after `keyset`, in the order of
 * `column` then id. Sorting by id walks the primary key; timestamps are
 * compared at full (microsecond) precision, so a page boundary never falls
 * between two jobs that a millisecond rounding would make equal.
 */
export const listJobs = (
  sql: SqlClient,
  prefix: string,
  options: {
    readonly condition: Fragment
    readonly column: SortColumn
    readonly descending: boolean
    readonly keyset: Keyset | undefined
    readonly limit: number
  }
): Effect.Effect<ReadonlyArray<PageRow>, SqlError> => {
  const { column, descending, keyset } = options
  const direction = descending ? "DESC" : "ASC"
  const compare = descending ? "<" : ">"
  // A time plain SQL set to infinity or -infinity is its position as that word (no bigint holds it).
  const micros = column === "id"
    ? sql`NULL::text`
    : sql.literal(
      `CASE WHEN isfinite(j.${column}) THEN (extract(epoch FROM j.${column}) * 1000000)::bigint::text ELSE j.${column}::text END`
    )
  const position = keyset?.micros === "infinity" || keyset?.micros === "-infinity"
    ? sql`${keyset.micros}::timestamptz`
    : sql`to_timestamp(0) + ${keyset?.micros ?? null}::bigint * interval '1 microsecond'`
  const after = keyset === undefined
    ? sql`true`
    : column === "id"
    ? sql`j.id ${sql.literal(compare)} ${keyset.id}`
    : sql`(j.${sql.literal(column)}, j.id) ${sql.literal(compare)} (${position}, ${keyset.id}::bigint)`
  const order = column === "id" ? `j.id ${direction}` : `j.${column} ${direction}, j.id ${direction}`
  return sql<JobRow & { readonly sort_micros: string | null }>`
    SELECT ${sql.literal(jobColumnsOf("j."))}, ${micros} AS sort_micros
    FROM ${table(sql, prefix, "oban_jobs_all")} AS j
    WHERE ${options.condition} AND ${after}
    ORDER BY ${sql.literal(order)}
    LIMIT ${options.limit}
  `.pipe(Effect.map((rows) => rows.map((row) => ({ job: jobFromRow(row), micros: row.sort_micros }))))
}

export interface CountRow {
  readonly queue: string
  readonly state: string
  readonly count: number
}

/**
 * Exact counts of the live states, each through its partial index: available
 * jobs through the fetch index and executing jobs through the executing index
 * (both lead with the queue: index-only scans), scheduled and retryable jobs
 * in one pass over the staging index (which holds both, so one bitmap scan
 * reads their rows once).
 */
export const countLive = (sql: SqlClient, prefix: string): Statement<CountRow> => {
  const jobs = table(sql, prefix, "oban_jobs")
  return sql<CountRow>`
    SELECT queue, 'available' AS state, count(*)::int AS count FROM ${jobs} WHERE state = 'available' GROUP BY queue
    UNION ALL
    SELECT queue, 'executing', count(*)::int FROM ${jobs} WHERE state = 'executing' GROUP BY queue
    UNION ALL
    SELECT queue, state::text, count(*)::int FROM ${jobs} WHERE state IN ('scheduled', 'retryable') GROUP BY queue, state
  `
}

/** Exact counts of the states without a queue-leading index (reads them all: for small tables). */
export const countRest = (sql: SqlClient, prefix: string): Effect.Effect<ReadonlyArray<CountRow>, SqlError> =>
  sql<CountRow>`
    SELECT queue, state::text AS state, count(*)::int AS count FROM ${table(sql, prefix, "oban_jobs_all")}
    WHERE state IN ('completed', 'discarded', 'cancelled', 'suspended')
    GROUP BY queue, state
  `

/** What the planner knows about a jobs table: its row estimate and the common states and queues. */
export interface TableStatistics {
  /** The row estimate of the last ANALYZE or VACUUM; negative when the table was never analyzed. */
  readonly rows: number
  readonly states: ReadonlyArray<{ readonly value: string; readonly frequency: number }>
  readonly queues: ReadonlyArray<{ readonly value: string; readonly frequency: number }>
  /** The planner's estimate of distinct queues (negative: a fraction of the rows). */
  readonly distinctQueues: number
}

export const tableStatistics = (
  sql: SqlClient,
  prefix: string,
  relation: "oban_jobs" | "oban_jobs_finished" = "oban_jobs"
): Effect.Effect<TableStatistics, SqlError> =>
  sql<{
    readonly rows: number
    readonly attname: string | null
    readonly vals: ReadonlyArray<string> | null
    readonly freqs: ReadonlyArray<number> | null
    readonly n_distinct: number | null
  }>`
    SELECT c.reltuples::float8 AS rows, s.attname::text AS attname,
           s.most_common_vals::text::text[] AS vals, s.most_common_freqs::float8[] AS freqs,
           s.n_distinct::float8 AS n_distinct
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname IN ('state', 'queue')
    WHERE n.nspname = ${prefix} AND c.relname = ${relation}
  `.pipe(Effect.map((rows) => {
    const column = (name: string) => {
      const row = rows.find((r) => r.attname === name)
      return (row?.vals ?? []).map((value, index) => ({ value, frequency: Number(row?.freqs?.[index] ?? 0) }))
    }
    return {
      rows: Number(rows[0]?.rows ?? -1),
      states: column("state"),
      queues: column("queue"),
      distinctQueues: Number(rows.find((r) => r.attname === "queue")?.n_distinct ?? 0)
    }
  }))
