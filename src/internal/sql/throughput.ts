/**
 * SQL of the dashboard's throughput chart: jobs that completed or failed per
 * queue and second since a moment, read through the partial indexes on the
 * terminal timestamps (completed, discarded) and the backlog of retryable
 * jobs, so its cost follows the jobs of the window, not the table.
 */
import type * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { table } from "./tables.ts"

export interface ThroughputRow {
  /** Seconds since the epoch (whole), by the database's clock. */
  readonly second: number
  readonly queue: string
  readonly completed: number
  readonly failed: number
  /** The database's clock, the same on every row. */
  readonly now: Date
}

/**
 * Completed and failed (discarded, or retryable after a failed attempt) jobs
 * per queue and second over the last `seconds` seconds, plus one row with an
 * empty queue carrying the database's clock when nothing happened.
 */
export const throughputSince = (
  sql: SqlClient,
  prefix: string,
  seconds: number
): Effect.Effect<ReadonlyArray<ThroughputRow>, SqlError> => {
  const jobs = table(sql, prefix, "oban_jobs")
  const all = table(sql, prefix, "oban_jobs_all")
  return sql<ThroughputRow>`
    WITH clock AS (SELECT now() AS now, now() - make_interval(secs => ${seconds}) AS since),
    events AS (
      SELECT queue, completed_at AS at, 1 AS completed, 0 AS failed FROM ${all}
        WHERE state = 'completed' AND completed_at >= (SELECT since FROM clock)
      UNION ALL
      SELECT queue, discarded_at, 0, 1 FROM ${all}
        WHERE state = 'discarded' AND discarded_at >= (SELECT since FROM clock)
      UNION ALL
      SELECT queue, attempted_at, 0, 1 FROM ${jobs}
        WHERE state = 'retryable' AND attempted_at >= (SELECT since FROM clock)
    )
    SELECT floor(extract(epoch FROM at))::float8 AS second, queue,
           sum(completed)::int AS completed, sum(failed)::int AS failed, (SELECT now FROM clock) AS now
    FROM events GROUP BY 1, 2
    UNION ALL
    SELECT floor(extract(epoch FROM now))::float8, '', 0, 0, now FROM clock
  `
}
