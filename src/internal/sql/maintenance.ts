/**
 * SQL of the leader's maintenance: rescuing orphaned jobs, pruning old ones,
 * and inserting cron jobs at most once per slot.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment, Statement } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { pruneFinished } from "./finishedJobs.ts"
import { rescueSet, uniqueKeyConflict, wakeQueues } from "./fragments.ts"
import { heardFromSql, reportedRescueAfterSql } from "../lateness.ts"
import { table } from "./tables.ts"
import { transaction } from "./transaction.ts"

export interface RescuedRow {
  readonly id: number
  readonly state: "available" | "discarded" | "cancelled"
  readonly queue: string
  readonly worker: string
  readonly attempt: number
  readonly lost_node: string | null
  /** The job's `meta.workflow`, for a workflow step. */
  readonly workflow: Readonly<Record<string, unknown>> | null
}

/**
 * Returns `executing` jobs whose producer incarnation (the id in
 * `attempted_by[2]`) has not beaten its heart for `afterMillis` (or has no
 * row at all) to `available`, or discards them when
 * no attempts are left, with a `rescued` errors entry naming the lost node
 * (a job whose cancel was requested while it ran becomes `cancelled`
 * instead: migration 0012). Returns the rescued jobs.
 *
 * A stale row is marked dead (`dead_at`, migration 22), not removed: it keeps
 * the commands stored for that node, which the node takes again if it comes
 * back (see `registerProducer`). Rows dead for `forgetAfterMillis` are
 * removed. The stale row of a node of an earlier release (not `revivable`)
 * is removed at once, as that release did: its heartbeat does not skip dead
 * rows. A job is an orphan when this statement marked or removed its
 * producer's row, or the row is dead already or gone: never because the row looked
 * stale in this statement's snapshot, since a heartbeat may commit
 * meanwhile, and then the mark (or removal) skips the row (it is checked again on its
 * newest version) and its producer lives on.
 *
 * `spared` names producers known to be alive whatever their rows say (the
 * calling node's own): their rows are never marked or removed here.
 */
export const rescueOrphans = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  afterMillis: number | "reported",
  forgetAfterMillis: number | undefined,
  limit: number,
  spared: ReadonlyArray<string> = []
): Effect.Effect<ReadonlyArray<RescuedRow>, SqlError> => {
  const producers = table(sql, prefix, "oban_producers")
  const notSpared = spared.length === 0
    ? sql``
    : sql` AND p.id <> ALL(${`{${spared.join(",")}}`}::uuid[])`
  // "reported": each producer silent for longer than its own node's rescueAfter (a rescue outside any node).
  const stale = afterMillis === "reported"
    ? sql.literal(`NOT (${heardFromSql("clock.now")})`)
    : sql.literal("p.updated_at <= clock.stale_before")
  const staleBefore = afterMillis === "reported" ? 0 : afterMillis
  return sql<RescuedRow>`
    WITH clock AS (
      SELECT ${now} AS now, ${now} - ${staleBefore} * interval '1 millisecond' AS stale_before,
             ${now} - ${forgetAfterMillis ?? 0} * interval '1 millisecond' AS forget_before,
             set_config('oban.now', (${now})::text, true) AS release_clock
    ),
    marked AS (
      UPDATE ${producers} AS p SET dead_at = clock.now FROM clock
      WHERE p.dead_at IS NULL AND ${stale} AND p.revivable${notSpared}
      RETURNING p.id::text AS id
    ),
    -- The row of a node of a release before migration 22, which would beat a marked row as its own:
    -- removed, as that release did, so that it registers again.
    swept AS (
      DELETE FROM ${producers} AS p USING clock
      WHERE p.dead_at IS NULL AND ${stale} AND NOT p.revivable${notSpared}
      RETURNING p.id::text AS id
    ),
    orphans AS (
      SELECT j.id FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE j.state = 'executing'
        AND (
          j.attempted_by[2] IN (SELECT id FROM marked UNION ALL SELECT id FROM swept)
          OR NOT EXISTS (SELECT 1 FROM ${producers} AS p WHERE p.id::text = j.attempted_by[2] AND p.dead_at IS NULL)
        )
      ORDER BY j.id
      LIMIT ${limit}
      FOR UPDATE OF j SKIP LOCKED
    ),
    rescued AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      ${
    rescueSet(
      sql,
      prefix,
      sql`'node ' || COALESCE(j.attempted_by[1], '(unknown)') || ' stopped heart-beating while running this job ' ||
        '(it crashed, lost the database, or did not run for longer than rescueAfter: paused, or blocked by a CPU-bound job)'`
    )
  }
      FROM orphans, clock
      WHERE j.id = orphans.id
      RETURNING j.id, j.state, j.queue, j.worker, j.attempt, j.attempted_by[1] AS lost_node, j.meta -> 'workflow' AS workflow
    ),
    notified AS (${wakeQueues(sql, prefix, "rescued WHERE state = 'available'")}),
    forgotten AS (${
    forgetAfterMillis === undefined ? sql`SELECT NULL::text AS node WHERE false` : sql`
      DELETE FROM ${producers} AS p USING clock
      WHERE p.dead_at <= clock.forget_before
      RETURNING p.node`
  })
    SELECT rescued.id::int AS id, rescued.state::text AS state, rescued.queue, rescued.worker, rescued.attempt,
           rescued.lost_node, rescued.workflow
    -- marked, swept and forgotten run whether read or not (a data-modifying WITH always runs to completion).
    FROM rescued, notified
  `
}

/**
 * Deletes up to `limit` completed, cancelled and discarded jobs that finished
 * more than `maxAgeMillis` ago, oldest first: those in `oban_jobs`, then with
 * what is left of `limit` those in `oban_jobs_finished`. Returns how many were
 * deleted.
 *
 * The cutoff is written into each branch (not read from a CTE), so the planner
 * sees the range; each branch orders by its timestamp, so even a generic plan
 * of the prepared statement walks that state's partial index rather than the
 * table, and a run with nothing due reads a handful of index pages whatever
 * the table's size. The delete finds its rows through the primary key.
 *
 * Jobs outside workflows go in one statement. A workflow step stays while a
 * dependent of it has not finished, and a dependent may be being inserted at
 * this moment (its transaction holds the step `FOR SHARE` until it commits the
 * new edge, which the first statement's snapshot cannot see): so the steps
 * are only locked by the first statement (`SKIP LOCKED`: a step being depended
 * on is left for a later run), and deleted by a second one, in the same
 * transaction (`transaction`: one a dead connection cannot hang), whose
 * new snapshot sees every edge committed before the lock.
 */
export const pruneJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  maxAgeMillis: number,
  limit: number
): Effect.Effect<number, SqlError> =>
  transaction(
    sql,
    Effect.gen(function*() {
      const [first] = yield* pruneStatement(sql, prefix, now, maxAgeMillis, limit)
      const steps = first?.steps ?? []
      const more = steps.length === 0 ? 0 : yield* pruneSteps(sql, prefix, steps)
      const hot = (first?.n ?? 0) + more
      return hot + (yield* pruneFinished(sql, prefix, now, maxAgeMillis, limit - hot))
    })
  )

/** A workflow job is needed while a dependent of it has not finished (it may still read its result). */
const needed = (sql: SqlClient, prefix: string): Fragment =>
  sql`EXISTS (
    SELECT 1 FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
    JOIN ${table(sql, prefix, "oban_jobs")} AS w ON w.id = e.job_id
    WHERE e.dep_id = d.id AND w.state NOT IN ('completed', 'cancelled', 'discarded'))`

/**
 * The first statement of `pruneJobs` (exported for tests that EXPLAIN it):
 * deletes the due jobs outside workflows, and locks the due workflow steps
 * that no unfinished dependent needs, returning their ids (`steps`).
 */
export const pruneStatement = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  maxAgeMillis: number,
  limit: number
): Statement<{ readonly n: number; readonly steps: ReadonlyArray<string> }> => {
  const jobs = table(sql, prefix, "oban_jobs")
  const cutoff = sql`${now} - ${maxAgeMillis} * interval '1 millisecond'`
  const due = (state: "completed" | "cancelled" | "discarded") => {
    const at = sql.literal(`${state}_at`)
    return sql`SELECT id, workflow_id FROM ${jobs} AS d
      WHERE state = ${sql.literal(`'${state}'`)} AND ${at} < ${cutoff}
        AND (workflow_id IS NULL OR NOT ${needed(sql, prefix)})
      ORDER BY ${at} LIMIT ${limit}
      FOR UPDATE OF d SKIP LOCKED`
  }
  return sql<{ readonly n: number; readonly steps: ReadonlyArray<string> }>`
    WITH completed AS (${due("completed")}),
    cancelled AS (${due("cancelled")}),
    discarded AS (${due("discarded")}),
    doomed AS (
      (SELECT id, workflow_id FROM completed)
      UNION ALL (SELECT id, workflow_id FROM cancelled)
      UNION ALL (SELECT id, workflow_id FROM discarded)
      LIMIT ${limit}
    ),
    deleted AS (
      DELETE FROM ${jobs} AS j
      WHERE j.id = ANY(ARRAY(SELECT id FROM doomed WHERE workflow_id IS NULL))
        AND j.state IN ('completed', 'cancelled', 'discarded')
      RETURNING j.id
    )
    SELECT (SELECT count(*)::int FROM deleted) AS n,
           ARRAY(SELECT id::text FROM doomed WHERE workflow_id IS NOT NULL) AS steps
  `
}

/**
 * The second statement of `pruneJobs`: deletes the locked workflow steps that
 * no unfinished dependent needs now, with their edges. Returns how many.
 */
const pruneSteps = (
  sql: SqlClient,
  prefix: string,
  steps: ReadonlyArray<string>
): Effect.Effect<number, SqlError> =>
  sql<{ readonly n: number }>`
    WITH deleted AS (
      DELETE FROM ${table(sql, prefix, "oban_jobs")} AS d
      WHERE d.id = ANY(${`{${steps.join(",")}}`}::bigint[])
        AND d.state IN ('completed', 'cancelled', 'discarded') AND NOT ${needed(sql, prefix)}
      RETURNING d.id
    ),
    unlinked AS (
      DELETE FROM ${table(sql, prefix, "oban_workflow_deps")} AS e
      USING deleted
      WHERE e.job_id = deleted.id OR e.dep_id = deleted.id
      RETURNING 1
    )
    SELECT (SELECT count(*)::int FROM deleted) AS n, (SELECT count(*) FROM unlinked) AS edges
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0))

/**
 * Which of `keys` a job in `oban_jobs` holds, among jobs that hold their key
 * in every state (cron slots): found through the unique index.
 */
export const existingKeys = (
  sql: SqlClient,
  prefix: string,
  keys: ReadonlyArray<string>
): Effect.Effect<ReadonlySet<string>, SqlError> =>
  keys.length === 0 ? Effect.succeed(new Set()) : Effect.map(
    sql<{ readonly unique_key: string }>`
      SELECT unique_key FROM ${table(sql, prefix, "oban_jobs")}
      WHERE unique_key IN ${sql.in(keys)} AND unique_states IS NULL`,
    (rows) => new Set(rows.map((row) => row.unique_key))
  )

/**
 * Inserts a job unless one with the same `unique_key` exists. Returns whether
 * it was inserted. The row is built like `insertJobs` builds them; it holds
 * its key in every state (`unique_states` is NULL).
 */
export const insertUnique = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  rowJson: string,
  uniqueKey: string,
  /** Added to the row's meta (a cron job's entry and slot). */
  extraMeta: Readonly<Record<string, unknown>> = {}
): Effect.Effect<boolean, SqlError> =>
  sql<{ readonly id: bigint }>`
    WITH clock AS (SELECT ${now} AS now),
    input AS (
      SELECT x.*, r.row -> 'args' AS args, COALESCE(r.row -> 'meta', '{}'::jsonb) || ${JSON.stringify(extraMeta)}::jsonb AS meta,
             clock.now AS now
      FROM clock, (SELECT ${rowJson}::jsonb AS row) AS r,
        jsonb_to_record(r.row) AS x(queue text, worker text, tags text[], max_attempts smallint, priority smallint)
    ),
    inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at, unique_key)
      SELECT 'available', queue, worker, args, meta, tags, max_attempts, priority, now, now, ${uniqueKey} FROM input
      ON CONFLICT ${uniqueKeyConflict(sql, prefix)} DO NOTHING
      RETURNING id, queue
    ),
    notified AS (
      SELECT count(pg_notify(${channel(prefix, "insert")}, json_build_object('queue', queue)::text)) AS sent
      FROM inserted
    )
    SELECT inserted.id FROM inserted CROSS JOIN notified
  `.pipe(Effect.map((rows) => rows.length > 0))

/** Executing jobs under one node's producers that still answer for them (see `heardFromSql`). */
export interface AnsweringNode {
  readonly node: string
  readonly jobs: number
  /** The longest silence of the node's producers. */
  readonly silentSeconds: number
  /** The shortest `rescueAfter` its producers reported. */
  readonly rescueAfterSeconds: number
}

/**
 * The nodes whose producers still answer for executing jobs, with how long they have been silent and after
 * how long their jobs would be rescued: what `effect-oban jobs rescue` says of what it left.
 */
export const answeringNodes = (
  sql: SqlClient,
  prefix: string
): Effect.Effect<ReadonlyArray<AnsweringNode>, SqlError> =>
  sql<{ readonly node: string; readonly jobs: number; readonly silent_s: number; readonly after_s: number }>`
    SELECT p.node, count(*)::int AS jobs, extract(epoch FROM now() - min(p.updated_at))::float8 AS silent_s,
           (min(${sql.literal(reportedRescueAfterSql)}) / 1000.0)::float8 AS after_s
    FROM ${table(sql, prefix, "oban_jobs")} AS j
    JOIN ${table(sql, prefix, "oban_producers")} AS p ON p.id::text = j.attempted_by[2]
    WHERE j.state = 'executing' AND p.dead_at IS NULL AND ${sql.literal(heardFromSql("now()"))}
    GROUP BY p.node
    ORDER BY p.node
  `.pipe(Effect.map((rows) =>
    rows.map((row) => ({
      node: row.node,
      jobs: row.jobs,
      silentSeconds: Math.round(row.silent_s),
      rescueAfterSeconds: Math.round(row.after_s)
    }))
  ))
