/**
 * SQL of workflows: inserting a workflow's jobs and their dependency edges,
 * and reading, cancelling and retrying a workflow as a whole. Releasing a
 * dependent when its dependencies finish is not here: it is the database's
 * own `oban_workflow_release` (migration 0009), run by a trigger in the
 * transaction that finishes a dependency.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { JobState } from "../../Job.ts"
import type { EncodedRequest } from "../encodeRequest.ts"
import { jobColumns, type JobRow } from "../jobRow.ts"
import { wakeQueues } from "./fragments.ts"
import { table } from "./tables.ts"

/**
 * The `clock` CTE of a statement that may finish workflow jobs: "now", also
 * handed to the release trigger as the transaction's `oban.now` setting, so
 * releases compare times with the same clock as the statement (TestClock in
 * tests).
 */
export const clockWithSetting = (sql: SqlClient, now: Fragment): Fragment =>
  sql`SELECT ${now} AS now, set_config('oban.now', (${now})::text, true) AS release_clock`

/** One job of a workflow insert. */
export interface WorkflowRow {
  readonly request: EncodedRequest
  readonly suspended: boolean
  /** `meta.workflow` of the job. */
  readonly workflow: {
    readonly id: string
    readonly step: string
    readonly deps: ReadonlyArray<{ readonly step: string; readonly on_failure: string }>
  }
}

export interface InsertedWorkflowRow {
  readonly id: bigint | number | string
  /** `available`, `scheduled` or `suspended` as inserted; any state once a finished dependency released it. */
  readonly state: JobState
  readonly inserted_at: Date
  readonly scheduled_at: Date
  /** JSON text, for `parseJson` (see `jsonParse.ts`). */
  readonly meta: string
}

const tagsJson = (tags: ReadonlyArray<string>): string => JSON.stringify(tags)

/**
 * Inserts the jobs of a workflow in one statement, in order (ids are drawn
 * in input order), and wakes the queues of those that are available.
 */
export const insertWorkflowJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  workflowId: string,
  rows: ReadonlyArray<WorkflowRow>
): Effect.Effect<ReadonlyArray<InsertedWorkflowRow>, SqlError> => {
  // args and meta are JSON text already: spliced in as they are.
  let json = "["
  rows.forEach((row, index) => {
    const r = row.request
    json += `${index === 0 ? "" : ","}{"queue":${JSON.stringify(r.queue)},"worker":${JSON.stringify(r.worker)},` +
      `"args":${r.args},"meta":${r.meta},"tags":${tagsJson(r.tags)},"max_attempts":${r.maxAttempts},` +
      `"priority":${r.priority},"schedule_in_ms":${r.scheduleIn ?? "null"},` +
      `"scheduled_at":${r.scheduledAt === null ? "null" : JSON.stringify(r.scheduledAt.toISOString())},` +
      `"suspended":${row.suspended},"workflow":${JSON.stringify(row.workflow)}}`
  })
  json += "]"
  const jobs = table(sql, prefix, "oban_jobs")
  return sql<InsertedWorkflowRow>`
    WITH clock AS (SELECT ${now} AS now),
    input AS (
      SELECT r.v, r.ord,
             COALESCE((r.v ->> 'scheduled_at')::timestamptz,
                      clock.now + COALESCE((r.v ->> 'schedule_in_ms')::float8, 0) * interval '1 millisecond') AS due,
             clock.now
      FROM clock, jsonb_array_elements(${json}::jsonb) WITH ORDINALITY AS r(v, ord)
    ),
    inserted AS (
      INSERT INTO ${jobs}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at, workflow_id)
      SELECT (CASE WHEN (v ->> 'suspended')::boolean THEN 'suspended'
                   WHEN due > now THEN 'scheduled' ELSE 'available' END)::${table(sql, prefix, "oban_job_state")},
             v ->> 'queue', v ->> 'worker', v -> 'args',
             (v -> 'meta') || jsonb_build_object('workflow', v -> 'workflow'),
             ARRAY(SELECT jsonb_array_elements_text(v -> 'tags')),
             (v ->> 'max_attempts')::smallint, (v ->> 'priority')::smallint, now, due, ${workflowId}
      FROM input
      ORDER BY ord
      RETURNING id, state, queue, inserted_at, scheduled_at, meta
    ),
    notified AS (${wakeQueues(sql, prefix, "inserted WHERE state = 'available'")})
    SELECT inserted.id, inserted.state, inserted.inserted_at, inserted.scheduled_at, inserted.meta::text AS meta
    FROM inserted, notified
    ORDER BY inserted.id
  `
}

/**
 * The jobs of already inserted steps of a workflow, by step name. With
 * `lock`, they are held against a concurrent change of state (`FOR SHARE`)
 * until the inserting transaction ends: an ack that would finish one of them
 * waits, then its release sees the new dependents.
 */
export const findSteps = (
  sql: SqlClient,
  prefix: string,
  workflowId: string,
  steps: ReadonlyArray<string>,
  /** Hold them `FOR SHARE` (dependencies of new steps); without, only read (an error's message). */
  lock = true
): Effect.Effect<ReadonlyArray<{ readonly id: bigint | number; readonly step: string; readonly state: JobState }>, SqlError> =>
  sql<{ readonly id: bigint | number; readonly step: string; readonly state: JobState }>`
    SELECT id, meta #>> '{workflow,step}' AS step, state::text AS state FROM ${table(sql, prefix, "oban_jobs")}
    WHERE workflow_id = ${workflowId}
      AND (meta #>> '{workflow,step}') IN (SELECT jsonb_array_elements_text(${JSON.stringify(steps)}::jsonb))
    ORDER BY id
    ${sql.literal(lock ? "FOR SHARE" : "")}
  `

/**
 * The whole jobs of already inserted steps of a workflow, by step name, held
 * `FOR SHARE` until the inserting transaction ends (steps a workflow insert
 * keeps, see `ExistingSteps`).
 */
export const readSteps = (
  sql: SqlClient,
  prefix: string,
  workflowId: string,
  steps: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<JobRow & { readonly step: string }>, SqlError> =>
  sql<JobRow & { readonly step: string }>`
    SELECT ${sql.literal(jobColumns)}, meta #>> '{workflow,step}' AS step FROM ${table(sql, prefix, "oban_jobs")}
    WHERE workflow_id = ${workflowId}
      AND (meta #>> '{workflow,step}') IN (SELECT jsonb_array_elements_text(${JSON.stringify(steps)}::jsonb))
    ORDER BY id
    FOR SHARE
  `

/** What a step just inserted is now, after `releaseDependents` may have released or cancelled it. */
export interface StepNow {
  readonly id: bigint | number
  readonly state: JobState
  readonly scheduled_at: Date
  readonly cancelled_at: Date | null
  /** JSON text, for `parseJson` (see `jsonParse.ts`). */
  readonly meta: string
}

/** The steps `ids` as their rows are now (a workflow step is never moved to the finished table). */
export const stepsNow = (
  sql: SqlClient,
  prefix: string,
  ids: ReadonlyArray<number>
): Effect.Effect<ReadonlyArray<StepNow>, SqlError> =>
  sql<StepNow>`
    SELECT id, state::text AS state, scheduled_at, cancelled_at, meta::text AS meta
    FROM ${table(sql, prefix, "oban_jobs")} WHERE id = ANY(${`{${ids.join(",")}}`}::bigint[])
  `

/**
 * Writes dependency edges, none done yet, and each dependent's counters
 * (`oban_workflow_waits`: every edge pending). Edges to already finished
 * steps are marked done by `releaseDependents`.
 */
export const insertEdges = (
  sql: SqlClient,
  prefix: string,
  edges: ReadonlyArray<{ readonly job: number; readonly dep: number; readonly onFailure: string }>
): Effect.Effect<void, SqlError> =>
  edges.length === 0 ? Effect.void : sql`
    WITH inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_workflow_deps")} (job_id, dep_id, on_failure)
      SELECT (e ->> 'job')::bigint, (e ->> 'dep')::bigint, e ->> 'onFailure'
      FROM jsonb_array_elements(${JSON.stringify(edges)}::jsonb) AS e
      RETURNING job_id, on_failure
    )
    INSERT INTO ${table(sql, prefix, "oban_workflow_waits")} AS w (job_id, pending, awaits_failure)
    SELECT job_id, count(*)::int, bool_or(on_failure = 'failed') FROM inserted GROUP BY job_id
    ON CONFLICT (job_id) DO UPDATE
    SET pending = w.pending + excluded.pending, awaits_failure = w.awaits_failure OR excluded.awaits_failure
  `.pipe(Effect.asVoid)

/**
 * Settles the suspended dependents of `finished` now (used after new
 * dependents of already inserted jobs were written): releases those whose
 * dependencies have all completed, cancels those whose policy says so.
 */
export const releaseDependents = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  finished: ReadonlyArray<number>
): Effect.Effect<void, SqlError> =>
  finished.length === 0 ? Effect.void : sql`
    WITH clock AS (${clockWithSetting(sql, now)})
    SELECT ${sql.literal(`"${prefix}"`)}.oban_workflow_release(${`{${finished.join(",")}}`}::bigint[]) FROM clock
  `.pipe(Effect.asVoid)

/** A dependency of a job, with its recorded result. */
export interface DepResultRow {
  readonly id: bigint | number
  readonly step: string | null
  readonly worker: string
  readonly state: string
  /** JSON text, for `parseJson` (see `jsonParse.ts`); null with no result. */
  readonly result: string | null
  readonly has_result: boolean
}

/** The dependencies of a job, in the order they were given, with their results. */
export const depResults = (
  sql: SqlClient,
  prefix: string,
  jobId: number
): Effect.Effect<ReadonlyArray<DepResultRow>, SqlError> =>
  sql<DepResultRow>`
    SELECT d.id, d.meta #>> '{workflow,step}' AS step, d.worker, d.state::text AS state, d.result::text AS result,
           d.result IS NOT NULL AS has_result
    FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
    JOIN ${table(sql, prefix, "oban_jobs")} AS d ON d.id = e.dep_id
    WHERE e.job_id = ${jobId}
    ORDER BY d.id
  `

/** How many of a job's dependencies are in each state. */
export const depStateCounts = (
  sql: SqlClient,
  prefix: string,
  jobId: number
): Effect.Effect<ReadonlyArray<{ readonly state: string; readonly n: number }>, SqlError> =>
  sql<{ readonly state: string; readonly n: number }>`
    SELECT d.state::text AS state, count(*)::int AS n
    FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
    JOIN ${table(sql, prefix, "oban_jobs")} AS d ON d.id = e.dep_id
    WHERE e.job_id = ${jobId}
    GROUP BY d.state
  `

/**
 * Serialises inserts into one chain until the transaction ends (a
 * transaction-scoped advisory lock on the chain's workflow id).
 */
export const lockChain = (sql: SqlClient, prefix: string, workflowId: string): Effect.Effect<void, SqlError> =>
  sql`SELECT pg_advisory_xact_lock(hashtextextended(${`${prefix}:${workflowId}`}, 0))`.pipe(Effect.asVoid)

/**
 * The step name and state of a chain's last job, locked (`FOR SHARE`) so that it
 * cannot be pruned before the new job's dependency on it is written; none
 * when the chain has no jobs. A tail deleted while waiting for its lock
 * yields no row: the caller asks again (under the chain's lock, the chain
 * only shrinks meanwhile).
 */
export const chainTail = (
  sql: SqlClient,
  prefix: string,
  workflowId: string
): Effect.Effect<{ readonly step: string; readonly state: string } | "gone" | undefined, SqlError> =>
  sql<{ readonly step: string | null; readonly state: string | null; readonly n: number }>`
    SELECT t.step, t.state, 1 AS n FROM (
      SELECT meta #>> '{workflow,step}' AS step, state::text AS state FROM ${table(sql, prefix, "oban_jobs")}
      WHERE workflow_id = ${workflowId}
      ORDER BY id DESC
      LIMIT 1
      FOR SHARE
    ) AS t
    UNION ALL
    SELECT NULL, NULL, count(*)::int FROM (
      SELECT 1 FROM ${table(sql, prefix, "oban_jobs")} WHERE workflow_id = ${workflowId} LIMIT 1
    ) AS any_left
  `.pipe(Effect.map((rows) => {
    const tail = rows.find((row) => row.step !== null)
    if (tail !== undefined) return { step: tail.step!, state: tail.state! }
    return rows.some((row) => row.step === null && row.n > 0) ? "gone" : undefined
  }))
