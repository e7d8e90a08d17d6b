/**
 * SQL of operations on a whole workflow: its status, cancelling it, and
 * retrying its failed part.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { cancelSet } from "./fragments.ts"
import { retryJob } from "./jobs.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"
import { transaction } from "./transaction.ts"

/** One job of a workflow with its dependencies, for `status`. */
export interface StatusRow {
  readonly id: bigint | number
  readonly step: string | null
  readonly state: string
  readonly worker: string
  readonly queue: string
  /** `[{ id, step, state, on_failure }]` */
  readonly deps: ReadonlyArray<{ readonly id: number; readonly step: string | null; readonly state: string | null; readonly on_failure: string }>
}

/** Every job of a workflow in id order, each with its dependencies and their states. */
export const workflowJobs = (
  sql: SqlClient,
  prefix: string,
  workflowId: string
): Effect.Effect<ReadonlyArray<StatusRow>, SqlError> =>
  sql<StatusRow>`
    SELECT j.id, j.meta #>> '{workflow,step}' AS step, j.state::text AS state, j.worker, j.queue,
           COALESCE((
             SELECT jsonb_agg(jsonb_build_object('id', e.dep_id, 'step', d.meta #>> '{workflow,step}',
                                                 'state', d.state, 'on_failure', e.on_failure) ORDER BY e.dep_id)
             FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
             LEFT JOIN ${table(sql, prefix, "oban_jobs")} AS d ON d.id = e.dep_id
             WHERE e.job_id = j.id
           ), '[]'::jsonb) AS deps
    FROM ${table(sql, prefix, "oban_jobs")} AS j
    WHERE j.workflow_id = ${workflowId}
    ORDER BY j.id
  `

/**
 * Cancels every unfinished job of a workflow (locked in id order); executing
 * ones are signalled to their nodes and only get a cancel request, like
 * `cancelJob` (they end `cancelled` once their attempt has ended; their
 * dependents are cancelled here already). Returns the jobs changed and the
 * state each was in.
 */
export const cancelWorkflow = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  workflowId: string
): Effect.Effect<ReadonlyArray<{ readonly id: bigint | number; readonly previous_state: string }>, SqlError> =>
  sql<{ readonly id: bigint | number; readonly previous_state: string }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    target AS (
      SELECT id, state FROM ${table(sql, prefix, "oban_jobs")}
      WHERE workflow_id = ${workflowId} AND state NOT IN ('completed', 'discarded', 'cancelled')
      ORDER BY id
      FOR UPDATE
    ),
    updated AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j SET ${sql.literal(cancelSet(prefix))}
      FROM target, clock WHERE j.id = target.id
      RETURNING j.id, target.state::text AS previous_state, j.attempted_by[1] AS node
    ),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "signal")},
        json_build_object('action', 'cancel', 'job_id', id, 'node', node)::text)) AS sent
      FROM updated WHERE previous_state = 'executing'
    )
    SELECT updated.id, updated.previous_state FROM updated CROSS JOIN notified
  `

/**
 * Retries the failed part of a workflow: its discarded and cancelled jobs
 * get another attempt through `retryJob`, one at a time in id order (a step
 * comes after the steps it depends on), so each one's dependencies and
 * counters are read again: a job whose dependencies have all completed is
 * available now, the others wait (`suspended`) and are released by the last
 * of them. The marks a cancel left in their meta are removed. Returns the
 * ids of the jobs retried.
 *
 * A step that was skipped because none of its `failed` dependencies failed
 * (a batch's `onFailure`) stays so unless one of its dependencies is retried:
 * retried alone, it found every dependency completed and ran, though nothing
 * had failed. A failed job that depends on a step left so is left too: it
 * would wait for good for a dependency that never runs again.
 */
export const retryWorkflow = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  workflowId: string
): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  transaction(sql, Effect.gen(function*() {
    const jobs = table(sql, prefix, "oban_jobs")
    const failed = yield* sql<{ readonly id: string; readonly skipped: boolean; readonly deps: ReadonlyArray<string> }>`
      SELECT s.id::text AS id, s.meta #> '{workflow,skipped}' IS NOT NULL AS skipped,
             ARRAY(SELECT d.dep_id::text FROM ${table(sql, prefix, "oban_workflow_deps")} AS d WHERE d.job_id = s.id) AS deps
      FROM ${jobs} AS s
      WHERE s.workflow_id = ${workflowId} AND s.state IN ('discarded', 'cancelled')
      ORDER BY s.id
      FOR UPDATE OF s
    `
    const ids = toRetry(failed.map((row) => ({ id: Number(row.id), skipped: row.skipped, deps: row.deps.map(Number) })))
    if (ids.length === 0) return []
    yield* sql`
      UPDATE ${jobs} AS j SET meta = j.meta #- '{workflow,cancelled_by}' #- '{workflow,skipped}'
      WHERE j.id = ANY(${`{${ids.join(",")}}`}::bigint[])
    `
    const retried: Array<number> = []
    for (const id of ids) {
      if ((yield* retryJob(sql, prefix, now, id)) !== undefined) retried.push(id)
    }
    return retried
  }))

/**
 * Which of a workflow's failed jobs a retry runs again (see `retryWorkflow`), in id order: all of
 * them but the skipped steps none of whose dependencies is retried, and, in turn, those that depend
 * on a failed job left out.
 */
export const toRetry = (
  failed: ReadonlyArray<{ readonly id: number; readonly skipped: boolean; readonly deps: ReadonlyArray<number> }>
): ReadonlyArray<number> => {
  const candidates = new Set(failed.map((job) => job.id))
  const chosen = new Set(candidates)
  let changed = true
  while (changed) {
    changed = false
    for (const job of failed) {
      if (!chosen.has(job.id)) continue
      const leftOutDep = job.deps.some((dep) => candidates.has(dep) && !chosen.has(dep))
      const noDepRetried = job.skipped && !job.deps.some((dep) => chosen.has(dep))
      if (leftOutDep || noDepRetried) {
        chosen.delete(job.id)
        changed = true
      }
    }
  }
  return failed.map((job) => job.id).filter((id) => chosen.has(id)).sort((x, y) => x - y)
}
