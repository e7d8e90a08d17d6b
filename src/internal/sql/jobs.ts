/**
 * SQL on `oban_jobs`. Components call these functions and never write job SQL
 * of their own, so the storage seam stays in one module.
 */
import { Cause, Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment, Statement } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import type { Job } from "../../Job.ts"
import { jobColumns, jobFromRow, type JobRow } from "../jobRow.ts"
import { cancelSet, keyedById, retrySet, wakeQueues } from "./fragments.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"

export const qualifiedJobColumns = jobColumns.split(", ").map((column) => `j.${column}`).join(", ")

/** The job of a statement that returns at most one. */
const firstJob = (rows: ReadonlyArray<JobRow>): Job | undefined => rows[0] === undefined ? undefined : jobFromRow(rows[0])

/** One recorded outcome of an attempt, as the acker writes it. */
export interface AckRow {
  readonly id: number
  /** The attempt that ran. */
  readonly attempt: number
  /** The claim the attempt ran under (`attempted_by[3]`); an ack for any other claim is ignored. */
  readonly claim: string
  readonly state: "completed" | "retryable" | "discarded" | "cancelled" | "scheduled" | "available"
  /** For retryable, scheduled and available: run again this long from now. */
  readonly delay_ms: number | null
  /** Give the attempt back (snooze, shutdown). */
  readonly give_back: boolean
  /** An `errors` entry without `at`, which is stamped here. */
  readonly error: { readonly attempt: number; readonly kind: string; readonly message: string; readonly cause?: string } | null
  /** The recorded result (completed jobs of workers with a result schema), as encoded JSON. */
  readonly result?: unknown
}

/** An ack that changed nothing, and what the job looked like instead. */
export interface StaleAck {
  readonly id: number
  readonly claim: string
  /** The job's state now; null when it no longer exists. */
  readonly state: string | null
  /** The claim the job is under now, if any. */
  readonly currentClaim: string | null
}

/** What one ack statement did: the ids written, and the acks that matched no row. */
export interface AckResult {
  readonly written: ReadonlyArray<number>
  readonly stale: ReadonlyArray<StaleAck>
}

/**
 * How long an outcome waits for a row lock that someone else holds (an open
 * transaction that touched the job) before the statement gives up; the
 * acker then writes the batch row by row, so only the locked job waits.
 */
export const ackLockTimeoutMillis = 1_000

/**
 * Whether an outcome is a bare completion: the job completed and nothing else
 * is written with it but the time (no recorded result; with `deleteCompleted`,
 * every completion, since the row goes).
 */
const bareCompletion = (row: AckRow, deleteCompleted: boolean): boolean =>
  row.state === "completed" && (deleteCompleted || !("result" in row))

/**
 * The entry of a bare completion in its statement's rows keyed by id (see
 * `keyedById`): its claim and attempt, `["<claim>", <attempt>]`. The attempt
 * is written with the completion: a job claimed ahead counts its attempt only
 * in its outcome (see `fetchJobs`).
 */
const claimOf = (row: AckRow): string => `[${JSON.stringify(row.claim)},${row.attempt}]`

/**
 * Writes many outcomes in one statement. Only rows still `executing` under
 * the same claim on this node change, so a retried or late ack is harmless
 * even after the job was snoozed and claimed again; such acks come back as
 * `stale`, looked up by a second statement only when some ack missed.
 *
 * Bare completions, nearly every outcome of a busy queue, take a short path:
 * their rows get `completed` and the time (or are deleted, with
 * `deleteCompleted`), matched by claim alone. The other outcomes travel keyed
 * by job id (see `keyedById`) with every field, and each row reads its own.
 * At most one outcome per job: the caller splits batches that repeat one.
 * Jobs put back to `available` wake their queue. A job whose cancel was
 * requested while it ran ends `cancelled` whatever its outcome (migration
 * 0012), and is never deleted by `deleteCompleted`: its dependents must see
 * the cancel.
 */
export const ackJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  node: string,
  acks: ReadonlyArray<AckRow>,
  options: { readonly deleteCompleted: boolean } = { deleteCompleted: false }
): Effect.Effect<AckResult, SqlError> => {
  const jobs = table(sql, prefix, "oban_jobs")
  const bare = acks.filter((row) => bareCompletion(row, options.deleteCompleted))
  const full = bare.length === acks.length ? [] : acks.filter((row) => !bareCompletion(row, options.deleteCompleted))
  const completions = keyedById(bare, claimOf)
  const outcomes = keyedById(full)
  const ack = sql.literal("(input.acks -> j.id::text)")
  // A batch that takes both paths locks its rows in id order first, as every other statement that
  // locks many jobs does (a workflow cancel, the bulk actions): the two paths would otherwise lock
  // them in two runs, and could deadlock with such a statement. The rows are those of both paths' ids.
  const mixed = full.length > 0 && bare.length > 0
  const inOrder = mixed ? sql`AND EXISTS (SELECT 1 FROM locked)` : sql``
  // Only jobs still executing on this node under the claim of their outcome.
  const onThisNode = sql`j.state = 'executing' AND j.attempted_by[1] = ${node}`
  // The rows of the bare completions, and how they complete (the delete with `deleteCompleted`, and what it keeps).
  const bareRows = sql`j.id = ANY(${completions.ids}::bigint[]) AND ${onThisNode} ${inOrder}
        AND j.attempted_by[3] = input.claims -> j.id::text ->> 0`
  const completeBare = sql`UPDATE ${jobs} AS j
      SET state = 'completed', completed_at = clock.now, attempt = (input.claims -> j.id::text ->> 1)::smallint
      FROM input, clock
      WHERE ${bareRows}`
  return sql<{ readonly id: bigint | number }>`
    WITH clock AS (
      SELECT ${now} AS now, set_config('synchronous_commit', 'off', true) AS relaxed,
             set_config('lock_timeout', ${`${ackLockTimeoutMillis}ms`}, true) AS patient,
             set_config('oban.now', (${now})::text, true) AS release_clock
    ),
    input AS MATERIALIZED (SELECT ${outcomes.json}::jsonb AS acks, ${completions.json}::jsonb AS claims),
    locked AS MATERIALIZED (${
    mixed
      ? sql`SELECT j.id FROM ${jobs} AS j, clock
      WHERE j.id = ANY(${outcomes.ids}::bigint[] || ${completions.ids}::bigint[]) ORDER BY j.id FOR UPDATE OF j`
      : sql`SELECT NULL::bigint AS id WHERE false`
  }),
    updated AS (${
    full.length > 0 ? sql`
      UPDATE ${jobs} AS j
      SET (state, attempt, scheduled_at, completed_at, discarded_at, cancelled_at, errors, result) = (
        SELECT (a.v ->> 'state')::${table(sql, prefix, "oban_job_state")},
               (a.v ->> 'attempt')::smallint - CASE WHEN (a.v -> 'give_back')::boolean THEN 1 ELSE 0 END,
               CASE WHEN jsonb_typeof(a.v -> 'delay_ms') = 'number'
                    THEN clock.now + (a.v ->> 'delay_ms')::double precision * interval '1 millisecond'
                    ELSE j.scheduled_at END,
               CASE WHEN a.v ->> 'state' = 'completed' THEN clock.now ELSE j.completed_at END,
               CASE WHEN a.v ->> 'state' = 'discarded' THEN clock.now ELSE j.discarded_at END,
               CASE WHEN a.v ->> 'state' = 'cancelled' THEN clock.now ELSE j.cancelled_at END,
               CASE WHEN jsonb_typeof(a.v -> 'error') = 'object'
                    THEN j.errors || jsonb_build_array((a.v -> 'error') || jsonb_build_object('at', clock.now))
                    ELSE j.errors END,
               CASE WHEN a.v ? 'result' THEN a.v -> 'result' ELSE j.result END
        FROM (SELECT ${ack} AS v) AS a
      )
      FROM input, clock
      WHERE j.id = ANY(${outcomes.ids}::bigint[]) AND ${onThisNode} ${inOrder} AND j.attempted_by[3] = ${ack} ->> 'claim'
      RETURNING j.id, j.state, j.queue` : sql`
      SELECT NULL::bigint AS id, NULL::text AS state, NULL::text AS queue WHERE false`
  }),
    completed AS (${
    bare.length === 0
      ? sql`SELECT NULL::bigint AS id WHERE false`
      : options.deleteCompleted
      ? sql`
      DELETE FROM ${jobs} AS j
      USING input
      WHERE ${bareRows}
        AND j.cancel_requested_at IS NULL
      RETURNING j.id`
      : sql`
      ${completeBare}
      RETURNING j.id`
  }),
    kept AS (${
    bare.length === 0 || !options.deleteCompleted
      ? sql`SELECT NULL::bigint AS id WHERE false`
      // What the delete left of the bare completions still executing under their claim: jobs whose cancel was
      // requested, also when the request committed while this statement waited for the row (the delete then
      // re-read the row and skipped it, while a test of cancel_requested_at here would still see the snapshot's
      // NULL). They stay, for their dependents: the trigger of migration 0012 makes them cancelled.
      : sql`
      ${completeBare}
        AND NOT (j.id = ANY(ARRAY(SELECT completed.id FROM completed)))
      RETURNING j.id`
  }),
    notified AS (${wakeQueues(sql, prefix, "updated WHERE state = 'available'")})
    SELECT updated.id FROM updated, notified
    UNION ALL SELECT completed.id FROM completed
    UNION ALL SELECT kept.id FROM kept
  `.pipe(
    Effect.flatMap((rows) => {
      const written = rows.map((row) => Number(row.id))
      if (written.length === acks.length) return Effect.succeed({ written, stale: [] })
      const done = new Set(written)
      // Only for the logs: the outcomes are written, and a failed lookup must not make them count as failed.
      return staleAcks(sql, prefix, acks.filter((ack) => !done.has(ack.id))).pipe(
        Effect.map((stale): AckResult => ({ written, stale })),
        Effect.catchCause((cause) =>
          Effect.as(
            Effect.logWarning("could not look up the jobs of acks that matched no row", Cause.pretty(cause)),
            { written, stale: [] }
          )
        )
      )
    })
  )
}

/** What the jobs of acks that changed nothing look like now. */
const staleAcks = (
  sql: SqlClient,
  prefix: string,
  missed: ReadonlyArray<AckRow>
): Effect.Effect<ReadonlyArray<StaleAck>, SqlError> =>
  sql<{ readonly id: bigint | number; readonly state: string | null; readonly current_claim: string | null }>`
    SELECT a.id, j.state::text AS state, j.attempted_by[3] AS current_claim
    FROM unnest(${`{${missed.map((ack) => ack.id).join(",")}}`}::bigint[]) AS a(id)
    LEFT JOIN ${table(sql, prefix, "oban_jobs")} AS j ON j.id = a.id
  `.pipe(Effect.map((rows) => {
    const now = new Map(rows.map((row) => [Number(row.id), row]))
    return missed.map((ack) => ({
      id: ack.id,
      claim: ack.claim,
      state: now.get(ack.id)?.state ?? null,
      currentClaim: now.get(ack.id)?.current_claim ?? null
    }))
  }))

/**
 * The last resort for an outcome the database refuses: the attempt is
 * recorded as a failure (`retryable` after `delayMillis` while attempts
 * remain, else `discarded`) with an `errors` entry of kind `defect` holding
 * only `message`, or, when `withError` is false, with no entry at all. Same
 * matching as `ackJobs`. Returns whether the job changed.
 */
export const failAck = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  node: string,
  ack: {
    readonly id: number
    readonly claim: string
    /** The attempt that ran (a job claimed ahead counts its attempt only from its start). */
    readonly attempt: number
    readonly delayMillis: number
    readonly message: string
    readonly withError: boolean
  }
): Effect.Effect<boolean, SqlError> =>
  sql`
    WITH clock AS (${clockWithSetting(sql, now)})
    UPDATE ${table(sql, prefix, "oban_jobs")} AS j
    SET state = CASE WHEN ${ack.attempt} >= j.max_attempts THEN 'discarded' ELSE 'retryable' END::${
    table(sql, prefix, "oban_job_state")
  },
        attempt = ${ack.attempt},
        scheduled_at = clock.now + ${ack.delayMillis} * interval '1 millisecond',
        discarded_at = CASE WHEN ${ack.attempt} >= j.max_attempts THEN clock.now ELSE j.discarded_at END,
        errors = CASE WHEN ${ack.withError} THEN j.errors || jsonb_build_array(jsonb_build_object(
                   'attempt', ${ack.attempt}::int, 'at', clock.now, 'kind', 'defect', 'message', ${ack.message}::text))
                 ELSE j.errors END
    FROM clock
    WHERE j.id = ${ack.id} AND j.state = 'executing' AND j.attempted_by[3] = ${ack.claim} AND j.attempted_by[1] = ${node}
    RETURNING j.id
  `.pipe(Effect.map((rows) => rows.length > 0))

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
  sql<JobRow>`SELECT ${sql.literal(jobColumns)} FROM ${table(sql, prefix, "oban_jobs")} WHERE id = ${id}`.pipe(
    Effect.map(firstJob)
  )

/**
 * Cancels a job that has not finished. When it was executing, a signal asks
 * the node running it to interrupt it. An executing workflow step is not
 * finished here: its cancel is requested (`cancel_requested_at`), and it
 * ends `cancelled` when its attempt has ended (see `cancelSet`). Returns the
 * job as the statement left it, if it changed.
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
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j SET ${sql.literal(cancelSet)}
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
 * release it.
 */
export const retryJob = (
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

/** The id of the job other than `id` that holds `id`'s unique key in the unique index, if one does. */
export const uniqueKeyHolder = (sql: SqlClient, prefix: string, id: number): Effect.Effect<number | undefined, SqlError> =>
  sql<{ readonly id: number }>`
    SELECT h.id::float8 AS id
    FROM ${table(sql, prefix, "oban_jobs")} AS j
    JOIN ${table(sql, prefix, "oban_jobs")} AS h ON h.unique_key = j.unique_key AND h.id <> j.id
    WHERE j.id = ${id}
      AND (h.unique_states IS NULL OR ${sql.literal(`"${prefix}"`)}.oban_state_in(h.state, h.unique_states))
    LIMIT 1
  `.pipe(Effect.map((rows) => rows[0]?.id))

/**
 * Deletes a job that is not executing, and the rows of its own workflow
 * dependencies and counters (its dependents' rows stay: the delete releases them, a
 * deleted dependency counting as completed). Returns whether a row was deleted.
 */
export const deleteJob = (sql: SqlClient, prefix: string, id: number): Effect.Effect<boolean, SqlError> =>
  sql`
    WITH deleted AS (
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
  queue: string,
  until: Fragment
): Effect.Effect<number, SqlError> =>
  sql<{ readonly id: bigint }>`
    UPDATE ${table(sql, prefix, "oban_jobs")} SET state = 'available'
    WHERE queue = ${queue} AND state IN ('scheduled', 'retryable') AND scheduled_at <= ${until}
    RETURNING id
  `.pipe(Effect.map((rows) => rows.length))
