/**
 * Qualified names of effect-oban's tables (and of its functions that
 * statements call). The prefix is validated as a plain
 * lowercase identifier before it gets here, so quoting it is enough.
 */
import type { SqlClient } from "effect/sql/SqlClient"
import type { Fragment } from "effect/sql/Statement"

export type Table =
  | "oban_jobs"
  | "oban_jobs_finished"
  | "oban_peers"
  | "oban_producers"
  | "oban_migrations"
  | "oban_queues"
  | "oban_rate_windows"
  | "oban_workflow_deps"
  | "oban_workflow_waits"

/** Objects that are not tables but are named like them: the view of all jobs, a type and functions of the migrations. */
type Named =
  | Table
  | "oban_jobs_all"
  | "oban_job_state"
  | "oban_executing_counts"
  | "oban_rate_window_counts"
  | "oban_available_candidates"

export const qualified = (prefix: string, table: Named): string => `"${prefix}".${table}`

export const table = (sql: SqlClient, prefix: string, name: Named): Fragment =>
  sql.literal(qualified(prefix, name))
