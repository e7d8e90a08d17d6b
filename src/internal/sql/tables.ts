/**
 * Qualified names of effect-oban's tables. The prefix is validated as a plain
 * lowercase identifier before it gets here, so quoting it is enough.
 */
import type { SqlClient } from "effect/sql/SqlClient"
import type { Fragment } from "effect/sql/Statement"

export type Table =
  | "oban_jobs"
  | "oban_peers"
  | "oban_producers"
  | "oban_migrations"
  | "oban_queues"
  | "oban_rate_windows"
  | "oban_workflow_deps"
  | "oban_workflow_waits"

export const qualified = (prefix: string, table: Table | "oban_job_state"): string => `"${prefix}".${table}`

export const table = (sql: SqlClient, prefix: string, name: Table | "oban_job_state"): Fragment =>
  sql.literal(qualified(prefix, name))
