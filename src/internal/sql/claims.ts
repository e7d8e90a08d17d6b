/**
 * SQL that claims jobs: a producer's fetch, the testing kit's inline claim,
 * and the release of a fetch whose reply was lost.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { Job } from "../../Job.ts"
import { claimedJob, jobColumnsOf, jobFromRow, type JobRow, plainArray } from "../jobRow.ts"
import { qualifiedJobColumns } from "./jobs.ts"
import { latestErrors } from "./errorEntries.ts"
import { keyedById, rescueSet, wakeQueues } from "./fragments.ts"
import { textArrayLiteral } from "./arrayLiteral.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"

/** Who claims, for a producer's fetch, limited or not. */
export interface ClaimBy {
  readonly node: string
  readonly producer: string
  /** Names this fetch's claim; a fresh one per fetch. */
  readonly claim: string
  /**
   * Claim only while the producer's row is live (a node's producers): a claim sent after the rescuer
   * marked the row dead (the process stalled, its statement on its way) takes nothing, rather than
   * jobs the next rescue would take back with the attempt it counted.
   */
  readonly liveProducer?: boolean | undefined
  /** `now` is virtual time, read before the statement was sent: see `startAttempt`. */
  readonly virtualClock?: boolean | undefined
}

/** A virtual clock's stamp of an attempt (see `startAttempt`). */
const stagedNoEarlierThanDue =
  "CASE WHEN j.scheduled_at > j.inserted_at THEN GREATEST(clock.now, j.scheduled_at) ELSE clock.now END"

/**
 * What starting an attempt writes, for every way of claiming jobs: executing,
 * one more attempt (room made for it when a job retried by hand had used them
 * all), when, and by whom: `attempted_by` is `[node, producer, claim]`, the
 * claim a random uuid that names this one run of the job, which its ack must
 * match (attempt numbers repeat after a snooze or shutdown, and times can
 * repeat under a test clock). A producer names the claim of each fetch itself,
 * so that it can release a fetch whose reply it never got. `ahead`, when
 * given, is SQL that is true for the rows a fetch claims ahead of their start:
 * those keep their attempt (it is counted when the attempt ends) and carry
 * `'ahead'` as a fourth element of `attempted_by`, so that a release of the
 * claim knows from the row alone which attempts to give back. Expects the row
 * as `j` and "now" as `clock.now`.
 *
 * `virtualClock` (a producer's claim in `ObanClock` effect mode) stamps the
 * attempt of a staged job no earlier than the job fell due. There "now" is
 * read in the process before the statement reaches the server, and virtual
 * time can move on meanwhile (`ObanTest.advance` wakes every loop due within
 * a step while earlier ones still wait on the database): a claim whose time
 * was read at 11:59:52 can take a job that a stager, woken at 12:00:00, made
 * available before the claim ran, and would say the attempt began 8 s before
 * the job was due. A staged job is one scheduled past its insert (scheduled,
 * retried, snoozed): a stager made it available once virtual time had reached
 * its `scheduled_at`. A job inserted available keeps the claim's time, also
 * one stamped by the server's clock (an external insert), whose times need
 * not be near the virtual clock's. In database mode the server's clock is
 * read as the claim runs, after the job was staged, and the stamp is the
 * plain "now".
 */
export const startAttempt = (
  sql: SqlClient,
  by: Omit<ClaimBy, "claim" | "liveProducer"> & { readonly claim: string | Fragment },
  ahead?: Fragment
): Fragment => {
  const runBy = sql`ARRAY[${by.node}, ${by.producer}, ${by.claim}]::text[]`
  return sql`SET state = 'executing',
        attempt = ${ahead === undefined ? sql`j.attempt + 1` : sql`CASE WHEN ${ahead} THEN j.attempt ELSE j.attempt + 1 END`},
        max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
        attempted_at = ${sql.literal(by.virtualClock === true ? stagedNoEarlierThanDue : "clock.now")},
        attempted_by = ${
    ahead === undefined
      ? runBy
      : sql`CASE WHEN ${ahead} THEN ARRAY[${by.node}, ${by.producer}, ${by.claim}, 'ahead']::text[] ELSE ${runBy} END`
  }`
}


/**
 * What a fetch returns of each claimed row: the job's columns but those the
 * producer knows already (its state is `executing`, its queue the fetch's,
 * `attempted_by` the fetch's own), which would cost a text array per row to
 * send and decode; and meta, tags and errors as null when empty (most jobs'
 * errors and tags, and meta without tracing), so the driver parses no JSON
 * or array for them.
 */
const claimedColumns = jobColumnsOf("j.", {
  omit: ["state", "queue", "attempted_by"],
  // Null when they hold their empty default, which `claimedJob` restores.
  replace: {
    meta: "NULLIF(j.meta, '{}'::jsonb)::text AS meta",
    tags: `NULLIF(${plainArray("j.tags")}, '{}'::text[]) AS tags`,
    errors: `NULLIF(${latestErrors("j.errors")}, '[]'::jsonb) AS errors`
  }
})

/** What a fetch returns: the claimed jobs in queue order, and which of them were claimed ahead. */
export interface Fetched {
  readonly jobs: ReadonlyArray<Job>
  /**
   * Jobs beyond the first `startNow`: claimed ahead, to start when a slot
   * frees. Their attempt is counted only when they start, so one given back
   * or rescued without having run has lost nothing; their `attempt` here is
   * already the one they will run as.
   */
  readonly ahead: ReadonlySet<number>
}

/**
 * Claims up to `demand` available jobs of `queue` for this producer, in
 * priority, scheduled_at, id order, skipping rows other nodes hold. The
 * first `startNow` start at once and use an attempt now; the rest are
 * claimed ahead (see `Fetched`). The update finds its rows through the
 * primary key (`= ANY(ARRAY(...))`), so its cost follows the batch, never
 * the table: joined to the claimed ids instead, it may hash the whole table.
 */
export const fetchJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: {
    readonly queue: string
    readonly demand: number
    readonly startNow: number
  } & ClaimBy
): Effect.Effect<Fetched, SqlError> =>
  sql<Omit<JobRow, "state" | "queue" | "attempted_by"> & { readonly ahead: boolean }>`
    WITH clock AS (SELECT ${now} AS now, set_config('synchronous_commit', 'off', true) AS relaxed),
    next AS (
      SELECT id, priority, scheduled_at FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state = 'available' AND queue = ${options.queue}${
    options.liveProducer === true ? sql` AND ${producerIsLive(sql, prefix, options.producer)}` : sql``
  }
      ORDER BY priority, scheduled_at, id
      LIMIT ${options.demand}
      FOR UPDATE SKIP LOCKED
    ),
    first AS MATERIALIZED (
      SELECT ARRAY(SELECT id FROM next ORDER BY priority, scheduled_at, id LIMIT ${options.startNow}) AS ids
    )
    UPDATE ${table(sql, prefix, "oban_jobs")} AS j
    ${startAttempt(sql, options, sql.literal("NOT (j.id = ANY(first.ids))"))}
    FROM clock, first
    WHERE j.id = ANY(ARRAY(SELECT id FROM next))
    RETURNING ${sql.literal(claimedColumns)}, NOT (j.id = ANY(first.ids)) AS ahead
  `.pipe(Effect.map((rows) => {
    const ahead = new Set<number>()
    const attemptedBy = [options.node, options.producer, options.claim]
    const attemptedAheadBy = [...attemptedBy, "ahead"]
    const jobs = rows.map((claimed) => {
      if (!claimed.ahead) return claimedJob(claimed, options.queue, attemptedBy, 0)
      const job = claimedJob(claimed, options.queue, attemptedAheadBy, 1)
      ahead.add(job.id)
      return job
    }).sort(byFetchOrder)
    return { jobs, ahead }
  }))

/**
 * True while the producer's row is live (not marked dead by a rescue). A node's claims test it, so a
 * claim sent after a stall got its producer rescued takes nothing rather than jobs the next rescue
 * would take back with the attempt the claim counted. A plain read sees the row as of the
 * statement's start; `locking` reads its newest version (`FOR SHARE`: a row a rescue marked dead
 * since is read again as it now is), for a claim that may wait for a lock first.
 */
export const producerIsLive = (
  sql: SqlClient,
  prefix: string,
  producer: string,
  options: { readonly locking?: boolean } = {}
): Fragment =>
  sql`EXISTS (SELECT 1 FROM ${table(sql, prefix, "oban_producers")} AS p WHERE p.id = ${producer}::uuid AND p.dead_at IS NULL${
    sql.literal(options.locking === true ? " FOR SHARE" : "")
  })`

/** Priority, then scheduled_at, then id: the order producers fetch in. */
export const byFetchOrder = (a: Job, b: Job): number =>
  a.priority - b.priority || compareTimes(timeOf(a), timeOf(b)) || a.id - b.id

/**
 * A job's due time for sorting: a time plain SQL set to -infinity or infinity reads as an invalid Date,
 * taken as the earliest (its sign is lost; a job due at infinity is never due, so a fetch meets -infinity).
 */
const timeOf = (job: Job): number => {
  const time = job.scheduledAt.getTime()
  return Number.isNaN(time) ? -Infinity : time
}

const compareTimes = (a: number, b: number): number => a === b ? 0 : a < b ? -1 : 1

/** Claims the given jobs if they are available, for a run in the caller's fiber (testing). */
export const claimJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  ids: ReadonlyArray<number>,
  node: string
): Effect.Effect<ReadonlyArray<Job>, SqlError> =>
  ids.length === 0 ? Effect.succeed([]) : sql<JobRow>`
    WITH clock AS (SELECT ${now} AS now)
    UPDATE ${table(sql, prefix, "oban_jobs")} AS j
    ${startAttempt(sql, { node, producer: "inline", claim: sql.literal("gen_random_uuid()::text") })}
    FROM clock
    WHERE j.id IN ${sql.in(ids)} AND j.state = 'available'
    RETURNING ${sql.literal(qualifiedJobColumns)}
  `.pipe(Effect.map((rows) => rows.map((row) => jobFromRow(row)).sort((a, b) => a.id - b.id)))

/**
 * Puts back the jobs of fetches whose reply never arrived (a timeout, a lost
 * connection after the server committed): still `executing` under one of
 * `claims`, they are made `available` again and their queue is woken. No
 * node runs them, so nothing else would ever finish them while this node's
 * heartbeats keep its claims alive. A fetch counted an attempt only for the
 * jobs it did not claim ahead (those without the `'ahead'` mark in
 * `attempted_by`), so only those give one back. Rows are locked in id order,
 * as every statement that locks many jobs does. Returns their ids.
 */
export const releaseClaims = (
  sql: SqlClient,
  prefix: string,
  claims: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  claims.length === 0 ? Effect.succeed([]) : sql<{ readonly ids: ReadonlyArray<string> | null }>`
    WITH held AS (
      SELECT j.id FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE j.state = 'executing' AND j.attempted_by[3] = ANY(${textArrayLiteral(claims)}::text[])
      ORDER BY j.id
      FOR UPDATE
    ),
    released AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      SET state = 'available',
          attempt = CASE WHEN j.attempted_by[4] = 'ahead' THEN j.attempt ELSE j.attempt - 1 END
      FROM held
      WHERE j.id = held.id
      RETURNING j.id, j.queue
    ),
    notified AS (${wakeQueues(sql, prefix, "released")})
    SELECT (SELECT array_agg(id::text ORDER BY id) FROM released) AS ids FROM notified
  `.pipe(Effect.map((rows) => (rows[0]?.ids ?? []).map(Number)))

/**
 * The jobs this node must stop, in case their cancel's signal did not reach
 * it (a LISTEN connection down, or the signal read before the claim that
 * took the job had come back): those its producers claimed (`executing`
 * under one of `producers`) whose cancel was requested meanwhile (migration
 * 0012), and those of `held` (jobs it runs or holds claimed) whose rows were
 * cancelled (by a node of an earlier build, which finished the row at once).
 */
export const jobsToStop = (
  sql: SqlClient,
  prefix: string,
  producers: ReadonlyArray<string>,
  held: ReadonlyArray<number>
): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  producers.length === 0 && held.length === 0 ? Effect.succeed([]) : sql<{ readonly id: string }>`
    SELECT j.id::text AS id FROM ${table(sql, prefix, "oban_jobs")} AS j
    WHERE j.state = 'executing' AND j.cancel_requested_at IS NOT NULL
      AND j.attempted_by[2] = ANY(${`{${producers.join(",")}}`}::text[])
    UNION
    SELECT j.id::text FROM ${table(sql, prefix, "oban_jobs_all")} AS j
    WHERE j.id = ANY(${`{${held.join(",")}}`}::bigint[]) AND j.state = 'cancelled'
    ORDER BY id
  `.pipe(Effect.map((rows) => rows.map((row) => Number(row.id))))

/**
 * Puts back the jobs that this node's producers claimed and no longer answer
 * for: `executing` under one of `producers` for longer than `afterMillis`,
 * and not in `owned` (running here, or with an outcome waiting to be
 * written). Such a job lost its outcome or its claim on the way (a fetch or
 * an ack that the database forgot in a crash, or a reply lost with its
 * connection); no rescuer would ever take it, because its producer is alive.
 * Like a rescue, it goes back to `available` (or `discarded` when out of
 * attempts) with a `rescued` errors entry. Returns the jobs, each with the
 * claim it was executing under.
 */
export const releaseStranded = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: {
    readonly producers: ReadonlyArray<string>
    readonly owned: ReadonlySet<number>
    /** Claims of failed fetches this node is still releasing (with their attempts given back). */
    readonly releasing?: ReadonlyArray<string> | undefined
    readonly afterMillis: number
  }
): Effect.Effect<ReadonlyArray<StrandedJob>, SqlError> =>
  options.producers.length === 0 ? Effect.succeed([]) : sql<{ readonly id: string; readonly claim: string | null }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    stranded AS (
      SELECT j.id, j.attempted_by[3] AS claim FROM ${table(sql, prefix, "oban_jobs")} AS j, clock
      WHERE j.state = 'executing'
        AND j.attempted_by[2] IN ${sql.in(options.producers)}
        AND j.attempted_at < clock.now - ${options.afterMillis} * interval '1 millisecond'
        AND NOT (j.id = ANY(${`{${Array.from(options.owned).join(",")}}`}::bigint[]))
        AND NOT (COALESCE(j.attempted_by[3], '') = ANY(${textArrayLiteral(options.releasing ?? [])}::text[]))
      FOR UPDATE OF j SKIP LOCKED
    ),
    released AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      ${
    rescueSet(
      sql,
      prefix,
      sql`'node ' || COALESCE(j.attempted_by[1], '(unknown)') ||
        ' no longer ran this job: its claim or its outcome was lost on the way to the database'`
    )
  }
      FROM stranded, clock
      WHERE j.id = stranded.id
      RETURNING j.id, j.state, j.queue
    ),
    notified AS (${wakeQueues(sql, prefix, "released WHERE state = 'available'")})
    SELECT released.id::text AS id, stranded.claim FROM released JOIN stranded ON stranded.id = released.id, notified
  `.pipe(Effect.map((rows) => rows.map((row) => ({ id: Number(row.id), claim: row.claim ?? "" }))))

/** A job `releaseStranded` put back, and the claim it was executing under. */
export interface StrandedJob {
  readonly id: number
  readonly claim: string
}

/**
 * How a give-back changes a job (aliased `j`, its entry in `input.given`): `available` again, with
 * its attempt given back unless it was claimed ahead (which counted none).
 */
const givenBackSet = `SET state = 'available',
          attempt = CASE WHEN (input.given -> j.id::text -> 'ahead')::boolean THEN j.attempt ELSE j.attempt - 1 END`

/** A give-back touches a job only while it is still executing under the claim it was given back for. */
const stillUnderGivenClaim = "j.state = 'executing' AND j.attempted_by[3] = input.given -> j.id::text ->> 'claim'"

/**
 * Gives back jobs claimed and never started (shutdown, pause): those still
 * `executing` under the given claims become `available` again with their
 * attempt given back (a job claimed ahead never counted one), and their
 * queue is woken. Returns how many.
 */
export const releaseJobs = (
  sql: SqlClient,
  prefix: string,
  jobs: ReadonlyArray<{ readonly id: number; readonly claim: string; readonly ahead: boolean }>
): Effect.Effect<number, SqlError> => {
  if (jobs.length === 0) return Effect.succeed(0)
  const keyed = keyedById(jobs)
  return sql<{ readonly n: number }>`
    WITH input AS MATERIALIZED (SELECT ${keyed.json}::jsonb AS given),
    released AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      ${sql.literal(givenBackSet)}
      FROM input
      WHERE j.id = ANY(${keyed.ids}::bigint[])
        AND ${sql.literal(stillUnderGivenClaim)}
      RETURNING j.queue
    ),
    notified AS (${wakeQueues(sql, prefix, "released")})
    SELECT (SELECT count(*)::int FROM released) AS n FROM notified
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
}

/**
 * Gives back jobs claimed and never started, as `releaseJobs` does, but
 * passes over rows another transaction holds locked rather than wait for
 * them. Returns the ids it passed over that its snapshot shows still
 * executing under their claim (a row claimed again or finished meanwhile can
 * never be given back), to be given back later.
 */
export const releaseJobsUnlocked = (
  sql: SqlClient,
  prefix: string,
  jobs: ReadonlyArray<{ readonly id: number; readonly claim: string; readonly ahead: boolean }>
): Effect.Effect<ReadonlyArray<number>, SqlError> => {
  if (jobs.length === 0) return Effect.succeed([])
  const keyed = keyedById(jobs)
  const table_ = table(sql, prefix, "oban_jobs")
  return sql<{ readonly skipped: ReadonlyArray<string> }>`
    WITH input AS MATERIALIZED (SELECT ${keyed.json}::jsonb AS given),
    free AS MATERIALIZED (
      SELECT j.id FROM ${table_} AS j
      WHERE j.id = ANY(${keyed.ids}::bigint[])
      ORDER BY j.id
      FOR UPDATE SKIP LOCKED
    ),
    released AS (
      UPDATE ${table_} AS j
      ${sql.literal(givenBackSet)}
      FROM input, free
      WHERE j.id = free.id
        AND ${sql.literal(stillUnderGivenClaim)}
      RETURNING j.queue
    ),
    notified AS (${wakeQueues(sql, prefix, "released")})
    SELECT ARRAY(
      SELECT s.id::text FROM ${table_} AS s, input
      WHERE s.id = ANY(${keyed.ids}::bigint[]) AND NOT (s.id = ANY(ARRAY(SELECT id FROM free)))
        AND s.state = 'executing' AND s.attempted_by[3] = input.given -> s.id::text ->> 'claim'
    ) AS skipped
    FROM notified
  `.pipe(Effect.map((rows) => (rows[0]?.skipped ?? []).map(Number)))
}
