/**
 * The claim of a queue with cluster-wide limits (global concurrency, a limit
 * per partition, a rate limit): one transaction of two statements. The first
 * locks the queue's row in `oban_queues`, which serializes the claims of that
 * queue across nodes and reads the limits in force; the second counts what
 * the queue uses (executing jobs, the current rate window) and claims what
 * is left, in one statement.
 *
 * They must be two statements. In READ COMMITTED each statement sees the
 * database as of its own start: a single statement that took the lock in a
 * CTE would still count executing jobs from a snapshot taken before it
 * waited for the lock, so it would miss the jobs that the claimer before it
 * (holding the lock) claimed and committed meanwhile, and claim past the
 * limit. A statement that starts after the lock is granted sees them all.
 *
 * The second statement skips job rows another transaction holds (as the
 * unlimited fetch does): it waits for nothing but the queue's row, so a job
 * locked by a long transaction (a unique insert's conflict) cannot hold up
 * every claim of the queue across the cluster while it keeps the lock.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { jobFromRow, type JobRow } from "../jobRow.ts"
import { isLimited, type Partition, type QueueLimits, unlimited } from "../queueLimits.ts"
import { byFetchOrder, type Fetched, fetchJobs, startAttempt } from "./claims.ts"
import { qualifiedJobColumns } from "./jobs.ts"
import { lockQueueLimits } from "./queues.ts"
import { table } from "./tables.ts"

/** What a limited claim returns: every job starts now (`ahead` is empty). */
export interface LimitedFetch extends Fetched {
  /** Available jobs of the queue were left unclaimed (by the limits, or by `demand`). */
  readonly backlog: boolean
  /** For a rate-limited queue: milliseconds from the claim's "now" to the next window. */
  readonly nextWindowMillis: number | undefined
  /** The limits in force at the claim (read under the lock). */
  readonly limits: QueueLimits
}

const noneAhead: ReadonlySet<number> = new Set()

/** A job whose attempt ended on the claiming node, with the claim it ran under, and whose outcome is unwritten. */
export interface FinishedJob {
  readonly id: number
  readonly claim: string
}

interface ClaimOptions {
  readonly queue: string
  readonly demand: number
  readonly node: string
  readonly producer: string
  readonly claim: string
  /** Not counted as executing though their rows still say so: their attempts are over. */
  readonly finished: ReadonlyArray<FinishedJob>
}

/** The partition of the job row `alias`, as text ('' for one partition of all jobs). */
const partitionKey = (sql: SqlClient, partition: Partition | undefined, alias: string): Fragment =>
  partition === undefined
    ? sql.literal("''::text")
    : partition.by === "worker"
    ? sql.literal(`${alias}.worker`)
    : sql`COALESCE(${sql.literal(alias)}.args ->> ${partition.key}::text, '')`

/**
 * How many available jobs the claim looks at. Without partitions, the first
 * `demand` jobs are the ones it may take. With them, jobs of partitions at
 * their limit are skipped by the scan itself; a wider window leaves room for
 * partitions that have only a little left.
 */
const scanSize = (demand: number, partitioned: boolean) =>
  partitioned ? Math.min(1_000, Math.max(100, demand * 4)) : demand

/**
 * Claims up to `demand` jobs of a limited queue for this producer, all to
 * start now. Runs its own transaction (or a savepoint of the caller's). When
 * the queue's row is gone or no longer limits anything, it claims like an
 * unlimited queue.
 *
 * `now` must be the time of the claim statement itself, not of the
 * transaction (in database mode `statement_timestamp()`): rate windows are
 * chosen by it, and claims serialized by the lock must see time move forward.
 */
export const fetchLimited = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: ClaimOptions
): Effect.Effect<LimitedFetch, SqlError> =>
  sql.withTransaction(Effect.gen(function*() {
    const limits = yield* lockQueueLimits(sql, prefix, options.queue)
    if (limits === undefined || !isLimited(limits)) {
      const fetched = yield* fetchJobs(sql, prefix, now, { ...options, startNow: options.demand })
      return {
        jobs: fetched.jobs,
        ahead: noneAhead,
        backlog: fetched.jobs.length === options.demand,
        nextWindowMillis: undefined,
        limits: limits ?? unlimited
      }
    }
    return yield* claimWithin(sql, prefix, now, limits, options)
  }))

const claimWithin = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  limits: QueueLimits,
  options: ClaimOptions
): Effect.Effect<LimitedFetch, SqlError> => {
  const jobs = table(sql, prefix, "oban_jobs")
  const windows = table(sql, prefix, "oban_rate_windows")
  const { global, partition, rate } = limits
  const queue = options.queue
  const part = (alias: string) => partitionKey(sql, partition, alias)
  const ratePart = (alias: string) => partitionKey(sql, rate?.partition, alias)
  const partitioned = partition !== undefined || rate?.partition !== undefined
  const none = sql.literal("")

  // Executing jobs of the queue, per partition (one partition '' without one).
  const finished = options.finished.length === 0 ? none : sql`
        AND NOT EXISTS (
          SELECT 1 FROM unnest(${`{${options.finished.map((job) => job.id).join(",")}}`}::bigint[],
                               ${`{${options.finished.map((job) => JSON.stringify(job.claim)).join(",")}}`}::text[]) AS f(id, claim)
          WHERE f.id = r.id AND f.claim = r.attempted_by[3]
        )`
  const running = global === undefined ? none : sql`,
    running AS MATERIALIZED (
      SELECT ${part("r")} AS part, count(*)::int AS n FROM ${jobs} AS r
      WHERE r.state = 'executing' AND r.queue = ${queue}${finished}
      GROUP BY 1
    )`
  // The current fixed window (ms since the epoch, aligned to it) and what was claimed in it.
  const used = rate === undefined ? none : sql`,
    win AS (
      SELECT floor(clock.ms / ${rate.periodMillis}::bigint)::bigint * ${rate.periodMillis}::bigint AS start, clock.ms
      FROM clock
    ),
    used AS MATERIALIZED (
      SELECT w."partition" AS part, w.count AS n FROM ${windows} AS w, win
      WHERE w.queue = ${queue} AND w.window_start = win.start
    )`
  const skipFullPartitions = global === undefined || partition === undefined ? none : sql`
      AND ${part("c")} NOT IN (SELECT part FROM running WHERE n >= ${global}::int)`
  const skipSpentPartitions = rate?.partition === undefined ? none : sql`
      AND ${ratePart("c")} NOT IN (SELECT part FROM used WHERE n >= ${rate.limit}::int)`
  const withinPartition = global === undefined ? none : partition === undefined ? none : sql`
      AND gn <= ${global}::int - COALESCE((SELECT n FROM running WHERE running.part = ranked.gp), 0)`
  const withinRate = rate === undefined ? none : sql`
      AND rn <= ${rate.limit}::int - COALESCE((SELECT n FROM used WHERE used.part = allowed.rp), 0)`
  // Without partitions, the global limit caps the whole claim.
  const take = global === undefined || partition !== undefined
    ? sql`${options.demand}::int`
    : sql`GREATEST(0, LEAST(${options.demand}::int, ${global}::int - (SELECT COALESCE(sum(n), 0)::int FROM running)))`
  const bump = rate === undefined ? none : sql`,
    bumped AS (
      INSERT INTO ${windows} AS w (queue, "partition", window_start, count)
      SELECT ${queue}, claimed.rate_part, (SELECT start FROM win), count(*)::int FROM claimed GROUP BY claimed.rate_part
      ON CONFLICT (queue, "partition", window_start) DO UPDATE SET count = w.count + excluded.count
    ),
    pruned AS (
      DELETE FROM ${windows} AS w USING win WHERE w.queue = ${queue} AND w.window_start < win.start
    )`
  // Without partitions the scan is the claim: lock it as it goes, skipping rows others hold. A
  // partitioned scan is wider than the claim, so only the jobs chosen from it are locked (a chosen
  // job another transaction holds is left for the next claim).
  const lockCandidates = partitioned ? none : sql.literal(`
      FOR UPDATE OF c SKIP LOCKED`)
  const lockChosen = partitioned
    ? sql`,
    locked AS (
      SELECT l.id FROM ${jobs} AS l
      WHERE l.id = ANY(ARRAY(SELECT id FROM chosen)) AND l.state = 'available'
      FOR UPDATE OF l SKIP LOCKED
    )`
    : none
  const claimable = sql.literal(partitioned ? "locked" : "chosen")
  const nextWindow = rate === undefined
    ? sql.literal("NULL::float8")
    : sql.literal("((SELECT start FROM win) + " + String(rate.periodMillis) + " - clock.ms)::float8")

  return sql<JobRow & { readonly backlog: boolean; readonly nextWindowMillis: number | null; readonly id: number | null }>`
    WITH clock AS (
      SELECT ${now} AS now, extract(epoch FROM ${now}) * 1000 AS ms,
             set_config('synchronous_commit', 'off', true) AS relaxed
    )${running}${used},
    candidates AS (
      SELECT c.id, c.priority, c.scheduled_at, ${part("c")} AS gp, ${ratePart("c")} AS rp
      FROM ${jobs} AS c
      WHERE c.state = 'available' AND c.queue = ${queue}${skipFullPartitions}${skipSpentPartitions}
      ORDER BY c.priority, c.scheduled_at, c.id
      LIMIT ${scanSize(options.demand, partitioned)}${lockCandidates}
    ),
    ranked AS (
      SELECT candidates.*, row_number() OVER (PARTITION BY gp ORDER BY priority, scheduled_at, id) AS gn
      FROM candidates
    ),
    -- The rate counts only what the partition limit lets through: numbered after it, so jobs it
    -- turns away take none of the window's quota.
    allowed AS (
      SELECT ranked.*, row_number() OVER (PARTITION BY rp ORDER BY priority, scheduled_at, id) AS rn
      FROM ranked
      WHERE true${withinPartition}
    ),
    chosen AS (
      SELECT id FROM allowed
      WHERE true${withinRate}
      ORDER BY priority, scheduled_at, id
      LIMIT ${take}
    )${lockChosen},
    claimed AS (
      UPDATE ${jobs} AS j
      ${startAttempt(sql, options)}
      FROM clock
      WHERE j.id = ANY(ARRAY(SELECT id FROM ${claimable})) AND j.state = 'available'
      RETURNING ${sql.literal(qualifiedJobColumns)}, ${ratePart("j")} AS rate_part
    )${bump},
    summary AS (
      SELECT EXISTS (
               SELECT 1 FROM ${jobs} AS b
               WHERE b.state = 'available' AND b.queue = ${queue} AND NOT (b.id = ANY(ARRAY(SELECT id FROM ${claimable})))
             ) AS backlog,
             ${nextWindow} AS "nextWindowMillis"
      FROM clock
    )
    SELECT claimed.*, summary.backlog, summary."nextWindowMillis" FROM summary LEFT JOIN claimed ON true
  `.pipe(Effect.map((rows) => {
    const first = rows[0]
    const claimed = rows.filter((row) => row.id !== null).map((row) => jobFromRow(row)).sort(byFetchOrder)
    return {
      jobs: claimed,
      ahead: noneAhead,
      backlog: first?.backlog ?? false,
      nextWindowMillis: first?.nextWindowMillis ?? undefined,
      limits
    }
  }))
}
