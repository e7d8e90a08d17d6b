/**
 * The claim of a queue with cluster-wide limits (global concurrency, a limit
 * per partition, a rate limit): one statement, so one round trip. It locks
 * the queue's row in `oban_queues`, which serializes the claims of that queue
 * across nodes and holds the limits in force; counts what the queue uses
 * (executing jobs, the current rate window); and claims what is left.
 *
 * In READ COMMITTED a statement sees the database as of its own start, so a
 * claim that waited for the lock would count from before the claim it waited
 * for committed, and claim past the limit. The counting is therefore done by
 * the VOLATILE functions of migration 13, whose queries take a fresh snapshot,
 * called with a column of the locked row so that they run once the lock is
 * held. The jobs the earlier claim took still look available to this
 * statement; `FOR UPDATE SKIP LOCKED` re-checks each row it locks against its
 * latest version, so it never takes one of them.
 *
 * The statement is built for the limits the node believes in force. When the
 * locked row says otherwise (limits changed at run time, or were removed),
 * it claims nothing and returns the limits it found, and the producer claims
 * again at once under them.
 *
 * Job rows another transaction holds are skipped (as the unlimited fetch
 * does): the claim waits for nothing but the queue's row, so a job locked by
 * a long transaction (a unique insert's conflict) cannot hold up every claim
 * of the queue across the cluster while it keeps the lock.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { jobFromRow, type JobRow } from "../jobRow.ts"
import { fromRow, type LimitsRow, type Partition, type QueueLimits } from "../queueLimits.ts"
import { byFetchOrder, type ClaimBy, type Fetched, producerIsLive, startAttempt } from "./claims.ts"
import { qualifiedJobColumns } from "./jobs.ts"
import { limitsObject } from "./queues.ts"
import { table } from "./tables.ts"
import { textArrayLiteral } from "./arrayLiteral.ts"

/** What a limited claim returns: every job starts now (`ahead` is empty). */
export interface LimitedFetch extends Fetched {
  /** Available jobs of the queue were left unclaimed (by the limits, or by `demand`). */
  readonly backlog: boolean
  /** For a rate-limited queue: milliseconds from the claim's "now" to the next window. */
  readonly nextWindowMillis: number | undefined
  /** The limits in force at the claim (read under the lock). */
  readonly limits: QueueLimits
  /**
   * The limits in force were not the ones the claim was built for (changed
   * at run time, or removed), so it claimed nothing: claim again under `limits`.
   */
  readonly stale: boolean
  /**
   * Jobs the claim chose within the limits but could not take: another
   * transaction held them, or a claim that committed while this one waited
   * for the lock had taken them.
   */
  readonly missed: number
}

const noneAhead: ReadonlySet<number> = new Set()

/** A job whose attempt ended on the claiming node, with the claim it ran under, and whose outcome is unwritten. */
export interface FinishedJob {
  readonly id: number
  readonly claim: string
}

interface ClaimOptions extends ClaimBy {
  readonly queue: string
  readonly demand: number
  /** Not counted as executing though their rows still say so: their attempts are over. */
  readonly finished: ReadonlyArray<FinishedJob>
  /** The limits the node believes in force: the statement is built for them. */
  readonly expected: QueueLimits
}

/** The partition of the job row `alias`, as text ('' for one partition of all jobs). */
const partitionKey = (sql: SqlClient, partition: Partition | undefined, alias: string): Fragment =>
  partition === undefined
    ? sql.literal("''::text")
    : partition.by === "worker"
    ? sql.literal(`${alias}.worker`)
    : sql`COALESCE(${sql.literal(alias)}.args ->> ${partition.key}::text, '')`

/** How `oban_executing_counts` (migration 13) divides the jobs: its `part_by` and `part_key`. */
const partitionArgs = (partition: Partition | undefined): readonly [string, string] =>
  partition === undefined ? ["none", ""] : partition.by === "worker" ? ["worker", ""] : ["args", partition.key]

/** Whether the stored partition in `column` is `partition`, as `sameLimits` compares them. */
const partitionIs = (sql: SqlClient, column: string, partition: Partition | undefined): Fragment =>
  partition === undefined
    ? sql.literal(`${column} IS NULL`)
    : partition.by === "worker"
    ? sql.literal(`${column} ->> 'by' = 'worker'`)
    : sql`(${sql.literal(column)} ->> 'by' = 'args' AND ${sql.literal(column)} ->> 'key' = ${partition.key}::text)`

/** Whether the `oban_queues` row `q` holds `limits`. */
const holds = (sql: SqlClient, limits: QueueLimits): Fragment =>
  sql`q.global_limit IS NOT DISTINCT FROM ${limits.global ?? null}::int
        AND ${partitionIs(sql, `q."partition"`, limits.partition)}
        AND q.rate_limit IS NOT DISTINCT FROM ${limits.rate?.limit ?? null}::int
        AND q.rate_period_ms IS NOT DISTINCT FROM ${limits.rate?.periodMillis ?? null}::bigint
        AND ${partitionIs(sql, "q.rate_partition", limits.rate?.partition)}`

/**
 * How many available jobs a partitioned claim looks at: jobs of partitions at
 * their limit are skipped by the scan itself, and a window wider than the
 * claim leaves room for partitions that have only a little left. (Without
 * partitions the first `demand` jobs are the ones the claim may take.)
 */
const partitionedScan = (demand: number) => Math.min(1_000, Math.max(100, demand * 4))

/**
 * Claims up to `demand` jobs of a limited queue for this producer, all to
 * start now, in one statement (its own transaction, or part of the
 * caller's). Built for `options.expected`: when the queue's row holds other
 * limits or is gone, it claims nothing and says so (`stale`).
 *
 * `now` is evaluated once, after the queue's lock is granted: in database
 * mode it must be `clock_timestamp()` (`ObanClock.statementNow`), not the
 * time of the statement or of the transaction. Rate windows are chosen by
 * it, and claims serialized by the lock must see time move forward: a claim
 * whose "now" dates from before it waited would count a window that the
 * claim ahead of it, already in the next one, has pruned, and take that
 * window's quota again.
 */
export const fetchLimited = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: ClaimOptions
): Effect.Effect<LimitedFetch, SqlError> =>
  claimWithin(sql, prefix, now, options.expected, options)

const claimWithin = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  limits: QueueLimits,
  options: ClaimOptions
): Effect.Effect<LimitedFetch, SqlError> => {
  const jobs = table(sql, prefix, "oban_jobs")
  const { global, partition, rate } = limits
  const queue = options.queue
  const ratePart = (alias: string) => partitionKey(sql, rate?.partition, alias)
  const partitioned = partition !== undefined || rate?.partition !== undefined
  const none = sql.literal("")

  // Executing jobs of the queue, per partition (one partition '' without one), counted under the lock.
  const [partBy, partKey] = partitionArgs(partition)
  const running = global === undefined ? none : sql`,
    running AS MATERIALIZED (
      SELECT e.part, e.n
      FROM queue_row AS f,
           ${table(sql, prefix, "oban_executing_counts")}(f.name, ${partBy}, ${partKey},
             ${`{${options.finished.map((job) => job.id).join(",")}}`}::bigint[],
             ${textArrayLiteral(options.finished.map((job) => job.claim))}::text[]) AS e
      WHERE f.expected
    )`
  // The current fixed window (ms since the epoch, aligned to it) and what was claimed in it.
  const used = rate === undefined ? none : sql`,
    win AS (
      SELECT floor(clock.ms / ${rate.periodMillis}::bigint)::bigint * ${rate.periodMillis}::bigint AS start, clock.ms
      FROM clock
    ),
    used AS MATERIALIZED (
      SELECT u.part, u.n
      FROM queue_row AS f, win, ${table(sql, prefix, "oban_rate_window_counts")}(f.name, win.start) AS u
      WHERE f.expected
    )`
  const withinPartition = global === undefined ? none : partition === undefined ? none : sql`
      AND gn <= ${global}::int - COALESCE((SELECT n FROM running WHERE running.part = ranked.gp), 0)`
  const withinRate = rate === undefined ? none : sql`
      AND rn <= ${rate.limit}::int - COALESCE((SELECT n FROM used WHERE used.part = allowed.rp), 0)`
  // Without partitions, the global limit caps the whole claim.
  const take = global === undefined || partition !== undefined
    ? sql`${options.demand}::int`
    : sql`GREATEST(0, LEAST(${options.demand}::int, ${global}::int - (SELECT COALESCE(sum(n), 0)::int FROM running)))`
  const windows = table(sql, prefix, "oban_rate_windows")
  const bump = rate === undefined ? none : sql`,
    bumped AS (
      INSERT INTO ${windows} AS w (queue, "partition", window_start, count)
      SELECT ${queue}, claimed.rate_part, (SELECT start FROM win), count(*)::int FROM claimed GROUP BY claimed.rate_part
      ON CONFLICT (queue, "partition", window_start) DO UPDATE SET count = w.count + excluded.count
    ),
    pruned AS (
      DELETE FROM ${windows} AS w USING win WHERE w.queue = ${queue} AND w.window_start < win.start
    )`
  // Without partitions the scan is the claim: it locks as it goes, skipping rows others hold (and
  // rows a claim committed since this statement began, which the lock's re-check finds taken). A
  // partitioned claim ranks jobs per partition before it locks any, so it reads them through
  // `oban_available_candidates` (migration 13), after the lock and with a fresh snapshot, outside
  // partitions at their limit; it scans wider than the claim, and only the jobs chosen are locked
  // (a chosen job another transaction holds is left: `missed`).
  const [ratePartBy, ratePartKey] = partitionArgs(rate?.partition)
  const fullPartitions = global === undefined || partition === undefined
    ? sql.literal("'{}'::text[]")
    : sql`ARRAY(SELECT part FROM running WHERE n >= ${global}::int)`
  const spentPartitions = rate?.partition === undefined
    ? sql.literal("'{}'::text[]")
    : sql`ARRAY(SELECT part FROM used WHERE n >= ${rate.limit}::int)`
  // Tested once per claim (a CTE the candidates read), after the queue's lock is granted, on the row
  // as it is then: the claim may have waited for the lock while a rescue marked the row dead.
  const live = options.liveProducer === true
    ? producerIsLive(sql, prefix, options.producer, { locking: true })
    : sql.literal("true")
  const candidates = partitioned
    ? sql`
      SELECT a.id, a.priority, a.scheduled_at, a.gp, a.rp
      FROM queue_row AS f,
           ${table(sql, prefix, "oban_available_candidates")}(f.name, ${partBy}, ${partKey}, ${fullPartitions},
             ${ratePartBy}, ${ratePartKey}, ${spentPartitions}, ${partitionedScan(options.demand)}::int) AS a
      WHERE f.expected AND (SELECT live FROM producer_live)`
    : sql`
      SELECT c.id, c.priority, c.scheduled_at, ''::text AS gp, ''::text AS rp
      FROM ${jobs} AS c
      WHERE c.state = 'available' AND c.queue = ${queue} AND (SELECT expected FROM queue_row)
        AND (SELECT live FROM producer_live)
      ORDER BY c.priority, c.scheduled_at, c.id
      LIMIT ${options.demand}
      FOR UPDATE OF c SKIP LOCKED`
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

  return sql<
    JobRow & {
      readonly id: number | null
      readonly backlog: boolean
      readonly nextWindowMillis: number | null
      readonly limits: LimitsRow | null
      readonly stale: boolean
      readonly missed: number
    }
  >`
    WITH queue_row AS MATERIALIZED (
      SELECT q.name, ${limitsObject(sql, "q")} AS limits, ${holds(sql, limits)} AS expected
      FROM ${table(sql, prefix, "oban_queues")} AS q
      WHERE q.name = ${queue}
      FOR UPDATE
    ),
    -- "now", read once the lock is held (one row, with or without the queue's row).
    locked_at AS MATERIALIZED (
      SELECT ${now} AS now FROM (SELECT count(*) FROM queue_row) AS locked
    ),
    -- Unlike an unlimited claim, this one commits durably (it waits for the WAL flush): a claim a
    -- crash of the server forgot would let other nodes run the job again while it runs here,
    -- above the queue's limit, and take a second place in its rate window.
    clock AS (
      SELECT locked_at.now, extract(epoch FROM locked_at.now) * 1000 AS ms
      FROM locked_at
    ),
    producer_live AS MATERIALIZED (SELECT ${live} AS live FROM locked_at)${running}${used},
    -- The counts (and a partitioned claim's candidates) read a column of the locked row: they run
    -- after the lock.
    candidates AS (${candidates}
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
    -- Every claimable row is locked here, and was available when its lock was granted. No state
    -- test: with one, the planner reads the partial index of available jobs whole for the ids.
    claimed AS (
      UPDATE ${jobs} AS j
      ${startAttempt(sql, options)}
      FROM clock
      WHERE j.id = ANY(ARRAY(SELECT id FROM ${claimable}))
      RETURNING ${sql.literal(qualifiedJobColumns)}, ${ratePart("j")} AS rate_part
    )${bump},
    summary AS (
      SELECT EXISTS (
               SELECT 1 FROM ${jobs} AS b
               WHERE b.state = 'available' AND b.queue = ${queue} AND NOT (b.id = ANY(ARRAY(SELECT id FROM ${claimable})))
             ) AS backlog,
             ${nextWindow} AS "nextWindowMillis",
             (SELECT limits FROM queue_row) AS limits,
             NOT COALESCE((SELECT expected FROM queue_row), false) AS stale,
             ((SELECT count(*) FROM chosen) - (SELECT count(*) FROM ${claimable}))::int AS missed
      FROM clock
    )
    SELECT claimed.*, summary.backlog, summary."nextWindowMillis", summary.limits, summary.stale, summary.missed
    FROM summary LEFT JOIN claimed ON true
  `.pipe(Effect.map((rows) => {
    const first = rows[0]
    const claimed = rows.filter((row) => row.id !== null).map((row) => jobFromRow(row)).sort(byFetchOrder)
    return {
      jobs: claimed,
      ahead: noneAhead,
      backlog: first?.backlog ?? false,
      nextWindowMillis: first?.nextWindowMillis ?? undefined,
      limits: fromRow(first?.limits),
      stale: first?.stale ?? true,
      missed: first?.missed ?? 0
    }
  }))
}
