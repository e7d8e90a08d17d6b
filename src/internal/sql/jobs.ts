/**
 * SQL on `oban_jobs`. Components call these functions and never write job SQL
 * of their own, so the storage seam stays in one module.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import type { Job } from "../../Job.ts"
import { jobColumns, jobFromRow, type JobRow } from "../jobRow.ts"
import { table } from "./tables.ts"

/**
 * Inserts the jobs described by `rowsJson`, a JSON array of objects with the
 * keys `ord, queue, worker, args, meta, tags, max_attempts, priority,
 * schedule_in_ms, scheduled_at`, in one statement. Jobs due now are
 * `available` and wake their queue with one NOTIFY per queue (delivered on
 * commit); later ones are `scheduled`. Returns the jobs in input order.
 */
export const insertJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  rowsJson: string
): Effect.Effect<ReadonlyArray<Job>, SqlError> =>
  sql<JobRow>`
    WITH clock AS (SELECT ${now} AS now),
    input AS (
      SELECT x.*,
             COALESCE(x.scheduled_at, clock.now + COALESCE(x.schedule_in_ms, 0) * interval '1 millisecond') AS at,
             clock.now AS now
      FROM clock,
           jsonb_to_recordset(${rowsJson}::jsonb) AS x(
             ord integer, queue text, worker text, args jsonb, meta jsonb, tags text[],
             max_attempts smallint, priority smallint, schedule_in_ms double precision, scheduled_at timestamptz
           )
    ),
    inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
      SELECT CASE WHEN at > now THEN 'scheduled' ELSE 'available' END::${table(sql, prefix, "oban_job_state")},
             queue, worker, args, meta, tags, max_attempts, priority, now, at
      FROM input
      ORDER BY ord
      RETURNING ${sql.literal(jobColumns)}
    ),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "insert")}, json_build_object('queue', queue)::text)) AS sent
      FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS due
    )
    SELECT inserted.* FROM inserted CROSS JOIN notified ORDER BY inserted.id
  `.pipe(Effect.map((rows) => rows.map(jobFromRow)))
