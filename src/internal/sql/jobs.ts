/**
 * SQL on single jobs of `oban_jobs` (read, cancel, retry, delete), staging
 * and counts. Components call these functions (and `acks.ts`, `claims.ts`,
 * `insertJobs.ts` for outcomes, claims and inserts) and never write job SQL
 * of their own, so the storage seam stays in these modules.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment, Statement } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import type { Job } from "../../Job.ts"
import { jobColumns, jobColumnsOf, jobFromRow, type JobRow } from "../jobRow.ts"
import { restoreFinished } from "./finishedJobs.ts"
import { cancelSet, retrySet } from "./fragments.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"
import { transaction } from "./transaction.ts"

export const qualifiedJobColumns = jobColumnsOf("j.")

/** The job of a statement that returns at most one. */
const firstJob = (rows: ReadonlyArray<JobRow>): Job | undefined => rows[0] === undefined ? undefined : jobFromRow(rows[0])

/**
 * Moves up to `limit` due scheduled and retryable jobs to available and
 * notifies each queue that received jobs. Returns the count per queue.
 */
export const stageJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  limit: number
): Effect.Effect<ReadonlyArray<{ readonly queue: string; readonly count: number }>, SqlError> =>
  sql<{ readonly queue: string; readonly count: number }>`
    WITH clock AS (SELECT ${now} AS now),
    due AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}, clock
      WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= clock.now
      ORDER BY scheduled_at, id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    ),
    staged AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j SET state = 'available'
      FROM due WHERE j.id = due.id
      RETURNING j.queue
    ),
    queues AS (SELECT queue, count(*)::int AS count FROM staged GROUP BY queue),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "insert")}, json_build_object('queue', queue)::text)) AS sent FROM queues
    )
    SELECT queues.queue, queues.count FROM queues CROSS JOIN notified
  `

export const getJob = (sql: SqlClient, prefix: string, id: number): Effect.Effect<Job | undefined, SqlError> =>
  sql<JobRow>`SELECT ${sql.literal(jobColumns)} FROM ${table(sql, prefix, "oban_jobs_all")} WHERE id = ${id}`.pipe(
    Effect.map(firstJob)
  )

/** What job `id` recorded as its result: its worker, state and result as JSON text (null when none); undefined when no such job. */
export const getResultText = (
  sql: SqlClient,
  prefix: string,
  id: number
): Effect.Effect<{ readonly worker: string; readonly state: string; readonly result: string | null } | undefined, SqlError> =>
  sql<{ readonly worker: string; readonly state: string; readonly result: string | null }>`
    SELECT worker, state, result::text AS result FROM ${table(sql, prefix, "oban_jobs_all")} WHERE id = ${id}`.pipe(
    Effect.map((rows) => rows[0])
  )

/** Job `id` and its recorded result as JSON text (null when none), in one statement; undefined when no such job. */
export const getJobWithResult = (
  sql: SqlClient,
  prefix: string,
  id: number
): Effect.Effect<{ readonly job: Job; readonly result: string | null } | undefined, SqlError> =>
  sql<JobRow & { readonly result_text: string | null }>`
    SELECT ${sql.literal(jobColumns)}, result::text AS result_text FROM ${table(sql, prefix, "oban_jobs_all")} WHERE id = ${id}`.pipe(
    Effect.map(([row]) => row === undefined ? undefined : { job: jobFromRow(row), result: row.result_text })
  )

/** The jobs of `ids` that exist, by id, in one statement. */
export const getJobs = (
  sql: SqlClient,
  prefix: string,
  ids: ReadonlyArray<number>
): Effect.Effect<ReadonlyMap<number, Job>, SqlError> =>
  ids.length === 0 ? Effect.succeed(new Map()) : sql<JobRow>`
    SELECT ${sql.literal(jobColumns)} FROM ${table(sql, prefix, "oban_jobs_all")}
    WHERE id = ANY(${`{${ids.join(",")}}`}::bigint[])`.pipe(
    Effect.map((rows) => new Map(rows.map((row) => {
      const job = jobFromRow(row)
      return [job.id, job] as const
    })))
  )

/**
 * Cancels a job that has not finished. When it was executing, a signal asks
 * the node running it to interrupt it, and the row is not finished here: its
 * cancel is requested (`cancel_requested_at`), and it ends `cancelled` when
 * its attempt has ended (see `cancelSet`). Returns the job as the statement
 * left it, if it changed.
 */
export const cancelJob = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  id: number
): Effect.Effect<Job | undefined, SqlError> =>
  sql<JobRow & { readonly previous_state: string }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    target AS (
      SELECT id, state FROM ${table(sql, prefix, "oban_jobs")}
      WHERE id = ${id} AND state NOT IN ('completed', 'discarded', 'cancelled')
      FOR UPDATE
    ),
    updated AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j SET ${sql.literal(cancelSet(prefix))}
      FROM target, clock WHERE j.id = target.id
      RETURNING ${sql.literal(qualifiedJobColumns)},
                target.state AS previous_state
    ),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "signal")},
        json_build_object('action', 'cancel', 'job_id', id, 'node', attempted_by[1])::text)) AS sent
      FROM updated WHERE previous_state = 'executing'
    )
    SELECT updated.* FROM updated CROSS JOIN notified
  `.pipe(Effect.map(firstJob))

/**
 * Makes a job that is not executing available again now, allowing one more
 * attempt when it had used them all. Returns the job, if it changed.
 *
 * A workflow step whose dependencies have not all completed (or failed
 * under "run") goes back to `suspended` instead, to be released by the
 * last of them; a step already `suspended` is left alone. The
 * dependencies are read locked (`FOR SHARE`), which returns their latest
 * committed state: an ack finishing one of them either committed before
 * (and is seen here) or waits for this retry (and its release then sees
 * the step suspended). The step's edges and counters (migration 0009) are
 * recomputed from the states read, so the dependencies still to finish
 * release it. A job in `oban_jobs_finished` moves back first, in the same
 * transaction.
 */
export const retryJob = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  id: number
): Effect.Effect<Job | undefined, SqlError> =>
  transaction(sql, Effect.andThen(restoreFinished(sql, prefix, sql`j.id = ${id}`), retryStatement(sql, prefix, now, id)))

const retryStatement = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  id: number
): Effect.Effect<Job | undefined, SqlError> =>
  sql<JobRow>`
    WITH clock AS (SELECT ${now} AS now),
    target AS (
      SELECT id, workflow_id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE id = ${id} AND state NOT IN ('executing', 'available', 'suspended')
      FOR UPDATE
    ),
    deps AS (
      SELECT d.id, d.state IN ('discarded', 'cancelled') AS failed,
             d.state = 'completed' OR (d.state IN ('discarded', 'cancelled') AND e.on_failure IN ('run', 'failed'))
               AS satisfied
      FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
      JOIN ${table(sql, prefix, "oban_jobs")} AS d ON d.id = e.dep_id
      WHERE e.job_id = (SELECT id FROM target WHERE workflow_id IS NOT NULL)
      FOR SHARE OF d
    ),
    waiting AS (SELECT count(*) > 0 AS blocked FROM deps WHERE NOT satisfied),
    recounted AS (
      UPDATE ${table(sql, prefix, "oban_workflow_deps")} AS e
      SET done = NOT EXISTS (SELECT 1 FROM deps WHERE deps.id = e.dep_id AND NOT deps.satisfied)
      FROM target
      WHERE e.job_id = target.id AND target.workflow_id IS NOT NULL
      RETURNING e.done,
                e.on_failure = 'failed' AND EXISTS (SELECT 1 FROM deps WHERE deps.id = e.dep_id AND deps.failed) AS failure
    ),
    counters AS (
      UPDATE ${table(sql, prefix, "oban_workflow_waits")} AS w
      SET pending = r.pending, failures = r.failures
      FROM target, (SELECT count(*) FILTER (WHERE NOT done)::int AS pending,
                           count(*) FILTER (WHERE failure)::int AS failures FROM recounted) AS r
      WHERE w.job_id = target.id
      RETURNING w.job_id
    ),
    updated AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      SET state = (CASE WHEN waiting.blocked THEN 'suspended' ELSE 'available' END)::${
    table(sql, prefix, "oban_job_state")
  },
          ${sql.literal(retrySet)}
      FROM clock, target, waiting
      WHERE j.id = target.id
      RETURNING ${sql.literal(qualifiedJobColumns)}
    ),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "insert")}, json_build_object('queue', queue)::text)) AS sent
      FROM updated WHERE state = 'available'
    )
    SELECT updated.* FROM updated CROSS JOIN notified CROSS JOIN (SELECT count(*) FROM counters) AS c
  `.pipe(Effect.map(firstJob))

/**
 * The id of the job other than `id` that holds `id`'s unique key in the
 * unique index, if one does (`id` may be in the finished table; holders are
 * always in `oban_jobs`, where the index is).
 */
export const uniqueKeyHolder = (sql: SqlClient, prefix: string, id: number): Effect.Effect<number | undefined, SqlError> =>
  sql<{ readonly id: number }>`
    SELECT h.id::float8 AS id
    FROM ${table(sql, prefix, "oban_jobs_all")} AS j
    JOIN ${table(sql, prefix, "oban_jobs")} AS h ON h.unique_key = j.unique_key AND h.id <> j.id
    WHERE j.id = ${id}
      AND (h.unique_states IS NULL OR ${sql.literal(`"${prefix}"`)}.oban_state_in(h.state, h.unique_states))
    LIMIT 1
  `.pipe(Effect.map((rows) => rows[0]?.id))

/**
 * Deletes a job that is not executing, and the rows of its own workflow
 * dependencies and counters (its dependents' rows stay: the delete releases them, a
 * deleted dependency counting as completed), or the job's row in
 * `oban_jobs_finished`. Returns whether a row was deleted.
 *
 * A statement that finds nothing looks once more: it may have waited for the
 * job's finished row while a retry moved it back (`restoreFinished`), and then
 * found the row gone from `oban_jobs_finished` without seeing it in
 * `oban_jobs`, which it reads as of its start. The second statement reads the
 * tables as they are after that wait.
 */
export const deleteJob = (sql: SqlClient, prefix: string, id: number): Effect.Effect<boolean, SqlError> =>
  Effect.flatMap(
    deleteStatement(sql, prefix, id),
    (deleted) => deleted ? Effect.succeed(true) : deleteStatement(sql, prefix, id)
  )

const deleteStatement = (sql: SqlClient, prefix: string, id: number): Effect.Effect<boolean, SqlError> =>
  sql`
    WITH finished AS (
      DELETE FROM ${table(sql, prefix, "oban_jobs_finished")} WHERE id = ${id} RETURNING id
    ),
    deleted AS (
      DELETE FROM ${table(sql, prefix, "oban_jobs")} WHERE id = ${id} AND state <> 'executing' RETURNING id, workflow_id
    ),
    unlinked AS (
      DELETE FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
      USING deleted WHERE deleted.workflow_id IS NOT NULL AND e.job_id = deleted.id
      RETURNING 1
    ),
    unwaited AS (
      DELETE FROM ${table(sql, prefix, "oban_workflow_waits")} AS w
      USING deleted WHERE deleted.workflow_id IS NOT NULL AND w.job_id = deleted.id
      RETURNING 1
    )
    SELECT deleted.id FROM deleted, (SELECT count(*) FROM unlinked) AS u, (SELECT count(*) FROM unwaited) AS v
    UNION ALL SELECT id FROM finished
  `.pipe(Effect.map((rows) => rows.length > 0))

/**
 * The most available jobs `countAvailable` counts in one queue: a sample reads
 * at most this many index entries per queue, however long the backlog.
 */
export const availableCountCap = 10_000

/**
 * Available jobs per queue, for the queues given, each count capped at `cap`
 * (a count equal to `cap` means "at least `cap`"). Queues without available
 * jobs are absent from the map.
 */
export const countAvailable = (
  sql: SqlClient,
  prefix: string,
  queues: ReadonlyArray<string>,
  cap: number = availableCountCap
): Effect.Effect<ReadonlyMap<string, number>, SqlError> =>
  queues.length === 0
    ? Effect.succeed(new Map())
    : countAvailableStatement(sql, prefix, queues, cap).pipe(
      Effect.map((rows) => new Map(rows.filter((row) => row.n > 0).map((row) => [row.queue, row.n])))
    )

/**
 * The statement behind `countAvailable` (for tests that EXPLAIN it): per
 * queue, a count over at most `cap` entries of the fetch index. The order is
 * the index's own, which keeps the planner on it (a sequential scan would
 * read the whole table for a queue with few available jobs).
 */
export const countAvailableStatement = (
  sql: SqlClient,
  prefix: string,
  queues: ReadonlyArray<string>,
  cap: number
): Statement<{ readonly queue: string; readonly n: number }> =>
  sql<{ readonly queue: string; readonly n: number }>`
    SELECT q.queue, capped.n
    FROM jsonb_array_elements_text(${JSON.stringify(queues)}::jsonb) AS q(queue)
    CROSS JOIN LATERAL (
      SELECT count(*)::int AS n FROM (
        SELECT 1 FROM ${table(sql, prefix, "oban_jobs")} AS j
        WHERE j.state = 'available' AND j.queue = q.queue
        ORDER BY j.priority, j.scheduled_at, j.id
        LIMIT ${cap}
      ) AS sample
    ) AS capped
  `

/** Makes the scheduled and retryable jobs of `queue` due by `until` available (testing). */
export const stageQueue = (
  sql: SqlClient,
  prefix: string,
  /** Undefined: every queue. */
  queue: string | undefined,
  until: Fragment
): Effect.Effect<number, SqlError> =>
  sql<{ readonly id: bigint }>`
    UPDATE ${table(sql, prefix, "oban_jobs")} SET state = 'available'
    WHERE ${queue === undefined ? sql`true` : sql`queue = ${queue}`} AND state IN ('scheduled', 'retryable') AND scheduled_at <= ${until}
    RETURNING id
  `.pipe(Effect.map((rows) => rows.length))

/** The queues that have available jobs, by name. */
export const queuesWithAvailable = (sql: SqlClient, prefix: string): Effect.Effect<ReadonlyArray<string>, SqlError> =>
  sql<{ readonly queue: string }>`
    SELECT DISTINCT queue FROM ${table(sql, prefix, "oban_jobs")} WHERE state = 'available' ORDER BY queue
  `.pipe(Effect.map((rows) => rows.map((row) => row.queue)))
