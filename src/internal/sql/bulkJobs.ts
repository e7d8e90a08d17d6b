/**
 * SQL of the bulk actions on `oban_jobs`: each statement changes one batch of
 * jobs that match a filter, in id order after a cursor and up to an id fixed
 * when the action started (jobs inserted meanwhile are left alone, and a job
 * an action changed is never visited twice, even when it still matches).
 * The caller runs one statement per batch, each its own short transaction.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { restoreFinished } from "./finishedJobs.ts"
import { cancelSet, retrySet, wakeQueues } from "./fragments.ts"
import { table } from "./tables.ts"
import { transaction } from "./transaction.ts"

export type BulkAction =
  | { readonly _tag: "cancel" }
  | { readonly _tag: "retry" }
  | { readonly _tag: "delete" }
  | { readonly _tag: "reschedule"; readonly at: Date }

/** A job one batch changed. */
export interface ChangedRow {
  readonly id: number
  readonly previous_state: string
  /** Its state after the change: `executing` for a running job whose cancel is only requested. */
  readonly state: string
  /** The node running it, for a cancelled job that was executing (its cancel is then usually only requested). */
  readonly node: string | null
}

/** What one batch did: the jobs it changed, and the highest id it locked (none when it found nothing). */
export interface BatchResult {
  readonly changed: ReadonlyArray<ChangedRow>
  readonly last: number | undefined
}

/** The states each action applies to (the single-job functions use the same rules). */
export const eligible: Record<BulkAction["_tag"], string> = {
  cancel: "j.state NOT IN ('completed', 'discarded', 'cancelled')",
  retry: "j.state NOT IN ('executing', 'available', 'suspended')",
  delete: "j.state <> 'executing'",
  reschedule: "j.state IN ('available', 'scheduled', 'retryable')"
}

/** The highest job id now: the upper bound of an action. */
export const maxJobId = (sql: SqlClient, prefix: string): Effect.Effect<number, SqlError> =>
  sql<{ readonly max: string | null }>`
    SELECT greatest((SELECT max(id) FROM ${table(sql, prefix, "oban_jobs")}),
                    (SELECT max(id) FROM ${table(sql, prefix, "oban_jobs_finished")}))::text AS max`.pipe(
    Effect.map((rows) => Number(rows[0]?.max ?? 0))
  )

const change = (sql: SqlClient, prefix: string, action: BulkAction): Fragment => {
  const jobs = table(sql, prefix, "oban_jobs")
  const state = table(sql, prefix, "oban_job_state")
  switch (action._tag) {
    case "cancel":
      return sql`
        UPDATE ${jobs} AS j SET ${sql.literal(cancelSet(prefix))}
        FROM batch, clock WHERE j.id = batch.id
        RETURNING j.id, j.queue, j.state, batch.previous_state, j.attempted_by[1] AS node`
    case "retry":
      // Workflow steps are left to `retryJob` one by one (see `runBulk`): a step whose dependencies
      // have not all completed must wait again, not run.
      return sql`
        UPDATE ${jobs} AS j
        SET state = 'available', ${sql.literal(retrySet)}
        FROM batch, clock WHERE j.id = batch.id AND j.workflow_id IS NULL
        RETURNING j.id, j.queue, j.state, batch.previous_state, NULL::text AS node`
    case "delete":
      return sql`
        DELETE FROM ${jobs} AS j USING batch WHERE j.id = batch.id
        RETURNING j.id, j.queue, j.state, batch.previous_state, NULL::text AS node`
    case "reschedule":
      return sql`
        UPDATE ${jobs} AS j
        SET scheduled_at = ${action.at},
            state = (CASE WHEN ${action.at} > clock.now THEN 'scheduled' ELSE 'available' END)::${state}
        FROM batch, clock WHERE j.id = batch.id
        RETURNING j.id, j.queue, j.state, batch.previous_state, NULL::text AS node`
  }
}

/**
 * The workflow rows of deleted jobs (their own dependencies and counters;
 * their dependents' rows stay, as with `deleteJob`). Data-modifying CTEs run
 * whether or not the query reads them.
 */
const unlinkDeleted = (sql: SqlClient, prefix: string): Fragment =>
  sql`
    unlinked AS (
      DELETE FROM ${table(sql, prefix, "oban_workflow_deps")} AS e USING changed WHERE e.job_id = changed.id
    ),
    unwaited AS (
      DELETE FROM ${table(sql, prefix, "oban_workflow_waits")} AS w USING changed WHERE w.job_id = changed.id
    ),`

/**
 * Applies `action` to the next `limit` matching jobs with `after < id <= upTo`,
 * locking them first (a job being acked is waited for, not skipped). A
 * cancelled job that was executing gets a cancel signal to its node (it
 * stays `executing` with a cancel request, see `cancelSet`); jobs
 * that became available wake their queues. A retry or delete first moves the
 * finished jobs it would take back from `oban_jobs_finished`, in the batch's
 * transaction.
 */
export const runBatch = (
  sql: SqlClient,
  prefix: string,
  options: Parameters<typeof runBatchStatement>[2]
): Effect.Effect<BatchResult, SqlError> =>
  options.action._tag === "retry" || options.action._tag === "delete"
    ? transaction(sql, Effect.andThen(
      restoreFinished(
        sql,
        prefix,
        sql`${options.condition} AND ${sql.literal(eligible[options.action._tag])}
          AND j.id > ${options.after} AND j.id <= ${options.upTo}`,
        options.limit
      ),
      runBatchStatement(sql, prefix, options)
    ))
    : runBatchStatement(sql, prefix, options)

const runBatchStatement = (
  sql: SqlClient,
  prefix: string,
  options: {
    readonly now: Fragment
    readonly action: BulkAction
    readonly condition: Fragment
    readonly after: number
    readonly upTo: number
    readonly limit: number
  }
): Effect.Effect<BatchResult, SqlError> =>
  sql<{
    readonly last: string | null
    readonly id: string | null
    readonly previous_state: string | null
    readonly state: string | null
    readonly node: string | null
  }>`
    WITH clock AS (SELECT ${options.now} AS now),
    batch AS (
      SELECT j.id, j.state::text AS previous_state FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE ${options.condition} AND ${sql.literal(eligible[options.action._tag])}
        AND j.id > ${options.after} AND j.id <= ${options.upTo}
      ORDER BY j.id
      LIMIT ${options.limit}
      FOR UPDATE
    ),
    changed AS (${change(sql, prefix, options.action)}),${
    options.action._tag === "delete" ? unlinkDeleted(sql, prefix) : sql.literal("")
  }
    signalled AS (
      SELECT count(pg_notify(${channel(prefix, "signal")},
        json_build_object('action', 'cancel', 'job_id', id, 'node', node)::text)) AS sent
      FROM changed WHERE previous_state = 'executing'
    ),
    woken AS (${wakeQueues(sql, prefix, "changed WHERE state = 'available'")})
    SELECT b.last::text AS last, c.id::text AS id, c.previous_state, c.state::text AS state, c.node
    FROM (SELECT max(id) AS last FROM batch) AS b
    LEFT JOIN (SELECT changed.* FROM changed, signalled, woken) AS c ON true
  `.pipe(Effect.map((rows) => ({
    last: rows[0]?.last === null || rows[0]?.last === undefined ? undefined : Number(rows[0].last),
    changed: rows.filter((row) => row.id !== null).map((row) => ({
      id: Number(row.id),
      previous_state: row.previous_state!,
      state: row.state!,
      node: row.node
    }))
  })))

/** The ids the next batch would take (no lock): for going through a batch one job at a time. */
export const batchIds = (
  sql: SqlClient,
  prefix: string,
  options: {
    readonly action: BulkAction
    readonly condition: Fragment
    readonly after: number
    readonly upTo: number
    readonly limit: number
  }
): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  sql<{ readonly id: string }>`
    SELECT j.id::text AS id FROM ${table(sql, prefix, "oban_jobs_all")} AS j
    WHERE ${options.condition} AND ${sql.literal(eligible[options.action._tag])}
      AND j.id > ${options.after} AND j.id <= ${options.upTo}
    ORDER BY j.id
    LIMIT ${options.limit}
  `.pipe(Effect.map((rows) => rows.map((row) => Number(row.id))))

/** The workflow steps among `ids` that `action` applies to (a bulk retry hands them to `retryJob`). */
export const workflowSteps = (
  sql: SqlClient,
  prefix: string,
  action: BulkAction,
  ids: ReadonlyArray<number>
): Effect.Effect<ReadonlyArray<{ readonly id: number; readonly state: string }>, SqlError> =>
  sql<{ readonly id: string; readonly state: string }>`
    SELECT j.id::text AS id, j.state::text AS state FROM ${table(sql, prefix, "oban_jobs")} AS j
    WHERE j.id = ANY(${`{${ids.join(",")}}`}::bigint[]) AND j.workflow_id IS NOT NULL
      AND ${sql.literal(eligible[action._tag])}
    ORDER BY j.id
  `.pipe(Effect.map((rows) => rows.map((row) => ({ id: Number(row.id), state: row.state }))))
