/**
 * SQL that writes the outcomes of attempts: the acker's batched statement
 * (bare completions on a short path, every other outcome through one
 * per-row update, rows locked in id order). The lookup of acks that matched
 * no row and the minimal failure for a row the database refuses are in
 * `ackFallbacks.ts`.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { allJobColumnList, deletableOnCompletion, movableOnCompletion, rowWith } from "./finishedJobs.ts"
import { latestErrors } from "./errorEntries.ts"
import { keyedById, wakeQueues } from "./fragments.ts"
import { textArrayLiteral } from "./arrayLiteral.ts"
import { table } from "./tables.ts"
import { settleStaleAcks } from "./ackFallbacks.ts"

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
  /** A snooze: `meta.snoozed` counts it. */
  readonly snoozed?: true
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
  /** Whether the job's last errors entry is a rescue: the rescuer, not this node, ended its attempt. */
  readonly rescued: boolean
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
 * is written with it but the time. A completion with a recorded result is
 * never bare, also with `deleteCompleted`: its row is kept (moved to the
 * finished table, or completed in place) with the result, which a workflow's
 * dependents read.
 */
const bareCompletion = (row: AckRow): boolean => row.state === "completed" && !("result" in row)

/**
 * The bare completions of a statement as array literals: `ids` in ascending
 * order, and for each id its `attempt` and the position (from 1) of its claim
 * in `claims`, which holds each distinct claim once (a batch usually has one
 * or two). The statement finds a row's position with `width_bucket` on the
 * sorted ids: a binary search, without the jsonb the other outcomes travel in,
 * which costs more to send and to parse than the rows' deletes. The attempt is
 * written with the completion: a job claimed ahead counts its attempt only in
 * its outcome (see `fetchJobs`).
 */
const completionArrays = (rows: ReadonlyArray<AckRow>) => {
  let sorted = true
  for (let index = 1; index < rows.length && sorted; index++) sorted = rows[index - 1]!.id < rows[index]!.id
  const inOrder = sorted ? rows : rows.toSorted((a, b) => a.id - b.id)
  const positions = new Map<string, number>()
  let ids = "{"
  let claimOf = "{"
  let attempts = "{"
  for (let index = 0; index < inOrder.length; index++) {
    const row = inOrder[index]!
    let position = positions.get(row.claim)
    if (position === undefined) {
      position = positions.size + 1
      positions.set(row.claim, position)
    }
    const separator = index === 0 ? "" : ","
    ids += `${separator}${row.id}`
    claimOf += `${separator}${position}`
    attempts += `${separator}${row.attempt}`
  }
  return { ids: ids + "}", claims: textArrayLiteral([...positions.keys()]), claimOf: claimOf + "}", attempts: attempts + "}" }
}

/**
 * The columns of a bare completion moved to the finished table, as the
 * `RETURNING` list of its delete: the row as the completion writes it.
 */
const movedColumns = (prefix: string): string =>
  rowWith(
    new Map([
      ["state", `'completed'::"${prefix}".oban_job_state`],
      ["attempt", "input.attempts[width_bucket(j.id, input.ids)]"],
      ["completed_at", "clock.now"]
    ])
  )

/**
 * The columns an outcome other than a bare completion writes, each with its
 * value given the outcome's JSON (`v`), the row as `j` and the time as
 * `clock.now`: for the update of a row that stays, and the row moved to the
 * finished table.
 */
const outcomeValues = (prefix: string): ReadonlyMap<string, (v: string) => string> =>
  new Map<string, (v: string) => string>([
    ["state", (v) => `(${v} ->> 'state')::"${prefix}".oban_job_state`],
    ["attempt", (v) => `(${v} ->> 'attempt')::smallint - CASE WHEN (${v} -> 'give_back')::boolean THEN 1 ELSE 0 END`],
    ["scheduled_at", (v) =>
      `CASE WHEN jsonb_typeof(${v} -> 'delay_ms') = 'number'
        THEN clock.now + (${v} ->> 'delay_ms')::double precision * interval '1 millisecond' ELSE j.scheduled_at END`],
    ["completed_at", (v) => `CASE WHEN ${v} ->> 'state' = 'completed' THEN clock.now ELSE j.completed_at END`],
    ["discarded_at", (v) => `CASE WHEN ${v} ->> 'state' = 'discarded' THEN clock.now ELSE j.discarded_at END`],
    ["cancelled_at", (v) => `CASE WHEN ${v} ->> 'state' = 'cancelled' THEN clock.now ELSE j.cancelled_at END`],
    ["errors", (v) =>
      `CASE WHEN jsonb_typeof(${v} -> 'error') = 'object'
        THEN ${latestErrors("j.errors", 1)} || jsonb_build_array((${v} -> 'error') || jsonb_build_object('at', clock.now)) ELSE j.errors END`],
    ["result", (v) => `CASE WHEN ${v} ? 'result' THEN ${v} -> 'result' ELSE j.result END`],
    // A snooze counts itself in meta, as Oban does: the attempt is given back, and a worker that means to
    // snooze only so often reads `job.meta.snoozed`. A `snoozed` of the caller's own that is no number restarts at 1.
    ["meta", (v) =>
      `CASE WHEN ${v} ? 'snoozed' THEN jsonb_set(j.meta, '{snoozed}', to_jsonb(1 + CASE WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
        THEN (j.meta ->> 'snoozed')::numeric ELSE 0 END)) ELSE j.meta END`]
  ])

/**
 * Writes many outcomes in one statement. Only rows still `executing` under
 * the same claim on this node change, so a retried or late ack is harmless
 * even after the job was snoozed and claimed again; such acks come back as
 * `stale`, looked up by a second statement only when some ack missed.
 *
 * Bare completions, nearly every outcome of a busy queue, take a short path:
 * their rows move to `oban_jobs_finished` as `completed` with the time (or are
 * deleted, with `deleteCompleted`; the few that must stay in `oban_jobs`, see
 * `movableOnCompletion`, are updated there), matched by claim alone; they travel as arrays (see
 * `completionArrays`). The other outcomes travel keyed by job id (see
 * `keyedById`) with every field, and each row reads its own; those that
 * finish a job that may leave `oban_jobs` move its row as well. Either way no
 * join to the table: each row finds its entry, and rows are found by primary key.
 * At most one outcome per job: the caller splits batches that repeat one.
 * Jobs put back to `available` wake their queue. A job whose cancel was
 * requested while it ran ends `cancelled` whatever its outcome (migration
 * 0012). `deleteCompleted` deletes bare completions only (a completion with
 * a recorded result keeps its row, as without it), and spares the rows
 * `deletableOnCompletion` keeps: a job whose cancel was requested (its
 * dependents must see the cancel) and a job that holds its unique key when
 * completed (a cron slot among them: the key is what stops the slot from
 * running twice) are completed in `oban_jobs` instead. A completed workflow
 * step without a result is deleted (the trigger releases its dependents on
 * the delete).
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
  const bare = acks.filter(bareCompletion)
  const full = bare.length === acks.length ? [] : acks.filter((row) => !bareCompletion(row))
  const completions = completionArrays(bare)
  const outcomes = keyedById(full)
  const ackText = "(input.acks -> j.id::text)"
  const ack = sql.literal(ackText)
  const stateType = table(sql, prefix, "oban_job_state")
  const values = outcomeValues(prefix)
  // A batch that takes both paths, or more than one row of the full path (which deletes the rows it
  // moves, then updates the rest), locks its rows in id order first, as every other statement that
  // locks many jobs does (a workflow cancel, the bulk actions): it would otherwise lock them in two
  // runs, and could deadlock with such a statement. A bulk cancel of running jobs did: their cancels
  // are only requested, so the delete leaves them to the update. The rows are those of both paths' ids.
  const mixed = (full.length > 0 && bare.length > 0) || full.length > 1
  const inOrder = mixed ? sql`AND EXISTS (SELECT 1 FROM locked)` : sql``
  // Only jobs still executing on this node under the claim of their outcome. The rows are found by primary key
  // (`j.id = ANY(input...)`): the state is tested as `IS TRUE`, which the planner cannot match with the partial
  // index on executing jobs. Statistics taken before a burst see almost no executing job, and the planner then
  // prefers that index and reads every executing row of every node (and the dead entries the last acks left) to
  // find the batch: 10x slower with 100,000 executing jobs (bench/scale/statements.ts). State is NOT NULL, so the
  // test is the same. The ids are read from `input` rather than from a parameter, which a custom plan would see as
  // 500 constants and could then prefer a sequential scan of a small table (35 us a row instead of 8 in a drain).
  const onThisNode = sql`(j.state = 'executing') IS TRUE AND j.attempted_by[1] = ${node}`
  // The rows of the other outcomes, each matched by the claim of its own outcome.
  const fullRows = sql`j.id = ANY(input.acked_ids) AND ${onThisNode} ${inOrder} AND j.attempted_by[3] = ${ack} ->> 'claim'`
  // A row's place in the bare completions' arrays (ids sorted, see `completionArrays`).
  const position = sql.literal("width_bucket(j.id, input.ids)")
  // The rows of the bare completions, and how they complete (the delete with `deleteCompleted`, and what it keeps).
  const bareMatch = sql`${onThisNode} ${inOrder} AND j.attempted_by[3] = input.claims[input.claim_of[${position}]]`
  const bareRows = sql`j.id = ANY(input.ids) AND ${bareMatch}`
  const completeBare = (rows: Fragment) =>
    sql`UPDATE ${jobs} AS j
      SET state = 'completed', completed_at = clock.now, attempt = input.attempts[${position}]
      FROM input, clock
      WHERE ${rows}`
  return sql<{ readonly id: bigint | number }>`
    WITH clock AS (
      SELECT ${now} AS now, set_config('synchronous_commit', 'off', true) AS relaxed,
             set_config('lock_timeout', ${`${ackLockTimeoutMillis}ms`}, true) AS patient,
             set_config('oban.now', (${now})::text, true) AS release_clock
    ),
    input AS MATERIALIZED (
      SELECT ${outcomes.json}::jsonb AS acks, ${outcomes.ids}::bigint[] AS acked_ids,
             ${completions.ids}::bigint[] AS ids, ${completions.claims}::text[] AS claims,
             ${completions.claimOf}::smallint[] AS claim_of, ${completions.attempts}::smallint[] AS attempts
    ),
    locked AS MATERIALIZED (${
    mixed
      ? sql`SELECT j.id FROM ${jobs} AS j, clock, input
      WHERE j.id = ANY(input.acked_ids || input.ids) ORDER BY j.id FOR UPDATE OF j`
      : sql`SELECT NULL::bigint AS id WHERE false`
  }),
    moved AS (${
    full.length > 0 ? sql`
      DELETE FROM ${jobs} AS j
      USING input, clock
      WHERE ${fullRows} AND ${ack} ->> 'state' IN ('completed', 'discarded', 'cancelled')
        AND ${movableOnCompletion(sql, prefix, sql`(${ack} ->> 'state')::${stateType}`)}
      RETURNING ${
      sql.literal(rowWith(new Map([...values].map(([column, value]) => [column, value(ackText)]))))
    }` : sql`SELECT NULL::bigint AS id WHERE false`
  }),
    updated AS (${
    full.length > 0 ? sql`
      UPDATE ${jobs} AS j
      SET (${sql.literal([...values.keys()].join(", "))}) = (
        SELECT ${sql.literal([...values.values()].map((value) => value("a.v")).join(", "))}
        FROM (SELECT ${ack} AS v) AS a
      )
      FROM input, clock
      WHERE ${fullRows} AND j.id NOT IN (SELECT moved.id FROM moved)
      RETURNING j.id, j.state, j.queue` : sql`
      SELECT NULL::bigint AS id, NULL::text AS state, NULL::text AS queue WHERE false`
  }),
    archived_outcomes AS (${
    full.length > 0
      ? sql`
      INSERT INTO ${table(sql, prefix, "oban_jobs_finished")} (${sql.literal(allJobColumnList)})
      SELECT ${sql.literal(allJobColumnList)} FROM moved
      RETURNING id`
      : sql`SELECT NULL::bigint AS id WHERE false`
  }),
    completed AS (${
    bare.length === 0
      ? sql`SELECT NULL::bigint AS id WHERE false`
      : options.deleteCompleted
      ? sql`
      DELETE FROM ${jobs} AS j
      USING input
      WHERE ${bareRows}
        AND ${deletableOnCompletion(sql, prefix)}
      RETURNING j.id`
      // The row moves to the finished table as its bare completion would have written it.
      : sql`
      DELETE FROM ${jobs} AS j
      USING input, clock
      WHERE ${bareRows}
        AND ${movableOnCompletion(sql, prefix)}
      RETURNING ${sql.literal(movedColumns(prefix))}`
  }),
    archived AS (${
    bare.length === 0 || options.deleteCompleted
      ? sql`SELECT NULL::bigint AS id WHERE false`
      : sql`
      INSERT INTO ${table(sql, prefix, "oban_jobs_finished")} (${sql.literal(allJobColumnList)})
      SELECT ${sql.literal(allJobColumnList)} FROM completed
      RETURNING id`
  }),
    kept AS (${
    bare.length === 0
      ? sql`SELECT NULL::bigint AS id WHERE false`
      // What the delete left of the bare completions still executing under their claim: jobs that stay in
      // `oban_jobs` when completed (workflow steps, jobs that keep their unique key; see `movableOnCompletion`) and
      // jobs whose cancel was requested, also when the request committed while this statement waited for the row
      // (the delete then re-read the row and skipped it, while a test of cancel_requested_at here would still see the
      // snapshot's NULL). The trigger of migration 0012 makes the latter cancelled. Only the ids the delete left are
      // looked up (usually none), not the whole batch again.
      : sql`
      ${
        completeBare(sql`j.id = ANY(ARRAY(SELECT b.id FROM unnest(${completions.ids}::bigint[]) AS b(id)
                                      WHERE b.id NOT IN (SELECT completed.id FROM completed)))
        AND ${bareMatch}`)
      }
      RETURNING j.id`
  }),
    notified AS (${wakeQueues(sql, prefix, "updated WHERE state = 'available'")})
    SELECT updated.id FROM updated, notified, (SELECT count(*) FROM archived) AS a,
      (SELECT count(*) FROM archived_outcomes) AS o
    UNION ALL SELECT moved.id FROM moved
    UNION ALL SELECT completed.id FROM completed
    UNION ALL SELECT kept.id FROM kept
  `.pipe(
    Effect.flatMap((rows) => {
      const written = rows.map((row) => Number(row.id))
      if (written.length === acks.length) return Effect.succeed({ written, stale: [] })
      const done = new Set(written)
      // The outcomes are written, and a failed lookup must not make them count as failed.
      return settleStaleAcks(sql, prefix, node, acks.filter((ack) => !done.has(ack.id))).pipe(
        Effect.map((stale): AckResult => ({ written, stale })),
        Effect.catchCause((cause) =>
          Effect.as(
            Effect.logWarning("could not look up (or count the attempts of) the jobs of acks that matched no row", Cause.pretty(cause)),
            { written, stale: [] }
          )
        )
      )
    })
  )
}
