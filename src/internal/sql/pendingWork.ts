/**
 * SQL for `ObanTest.advance`: the work a node has not done yet at a moment of
 * virtual time, and when the next scheduled job falls due.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { table } from "./tables.ts"

/** Per queue: jobs available to fetch, and scheduled or retryable jobs already due at `now`. */
export interface QueueWork {
  readonly queue: string
  readonly available: number
  readonly due: number
}

export interface PendingWork {
  readonly queues: ReadonlyArray<QueueWork>
  /** When the next scheduled or retryable job falls due after `now`, if any does. */
  readonly nextDue: Date | undefined
}

export const pendingWork = (sql: SqlClient, prefix: string, now: Fragment): Effect.Effect<PendingWork, SqlError> => {
  const jobs = table(sql, prefix, "oban_jobs")
  return sql<QueueWork & { readonly next: Date | null }>`
    WITH clock AS (SELECT ${now} AS now),
    work AS (
      SELECT j.queue,
             count(*) FILTER (WHERE j.state = 'available')::int AS available,
             count(*) FILTER (WHERE j.state IN ('scheduled', 'retryable'))::int AS due
      FROM ${jobs} AS j, clock
      WHERE j.state = 'available' OR (j.state IN ('scheduled', 'retryable') AND j.scheduled_at <= clock.now)
      GROUP BY j.queue
    ),
    next AS (
      SELECT min(j.scheduled_at) AS next FROM ${jobs} AS j, clock
      WHERE j.state IN ('scheduled', 'retryable') AND j.scheduled_at > clock.now
    )
    SELECT work.queue, work.available, work.due, next.next FROM next LEFT JOIN work ON true
  `.pipe(Effect.map((rows) => ({
    queues: rows.flatMap((row) => row.queue === null ? [] : [{ queue: row.queue, available: row.available, due: row.due }]),
    nextDue: rows[0]?.next ?? undefined
  })))
}
