/**
 * SQL on `oban_queues`, the cluster-wide limits of queues and the pauses
 * kept for them (one row per queue that a producer ran or that has or had
 * limits; a row with no limits is an unlimited queue), and on `oban_rate_windows`, the jobs claimed per
 * rate window. The claims that honour these limits are in `limitedClaims.ts`.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { fromRow, type LimitsRow, type Partition, type QueueLimits } from "../queueLimits.ts"
import { table } from "./tables.ts"

/**
 * The limits of the `oban_queues` row `alias` as one jsonb object (a
 * `LimitsRow`), or null when there is no row.
 */
export const limitsObject = (sql: SqlClient, alias: string): Fragment =>
  sql.literal(`jsonb_build_object(
    'global', ${alias}.global_limit, 'partition', ${alias}."partition",
    'rateLimit', ${alias}.rate_limit, 'ratePeriodMs', ${alias}.rate_period_ms,
    'ratePartition', ${alias}.rate_partition)`)

const partitionJson = (partition: Partition | undefined): string | null =>
  partition === undefined ? null : JSON.stringify(partition)

/**
 * Writes the limits of `queue` (all of them: a field left out is removed)
 * and signals every node to re-read them (on commit).
 */
export const storeQueueLimits = (
  sql: SqlClient,
  prefix: string,
  queue: string,
  limits: QueueLimits
): Effect.Effect<void, SqlError> =>
  sql`
    WITH stored AS (
      INSERT INTO ${table(sql, prefix, "oban_queues")} AS q
        (name, global_limit, "partition", rate_limit, rate_period_ms, rate_partition, updated_at)
      VALUES (${queue}, ${limits.global ?? null}::integer, ${partitionJson(limits.partition)}::jsonb,
              ${limits.rate?.limit ?? null}::integer, ${limits.rate?.periodMillis ?? null}::bigint,
              ${partitionJson(limits.rate?.partition)}::jsonb, now())
      ON CONFLICT (name) DO UPDATE SET
        global_limit = excluded.global_limit, "partition" = excluded."partition",
        rate_limit = excluded.rate_limit, rate_period_ms = excluded.rate_period_ms,
        rate_partition = excluded.rate_partition, updated_at = excluded.updated_at
      RETURNING q.name
    )
    SELECT pg_notify(${channel(prefix, "signal")}, ${JSON.stringify({ action: "limits", queue })}) FROM stored
  `.pipe(Effect.asVoid)

/** The limits of `queue`; an unlimited queue has none set. */
export const readQueueLimits = (sql: SqlClient, prefix: string, queue: string): Effect.Effect<QueueLimits, SqlError> =>
  sql<{ readonly limits: LimitsRow }>`
    SELECT ${limitsObject(sql, "q")} AS limits FROM ${table(sql, prefix, "oban_queues")} AS q WHERE q.name = ${queue}
  `.pipe(Effect.map((rows) => fromRow(rows[0]?.limits)))

/** The limits of every queue that has some, by queue. */
export const allQueueLimits = (sql: SqlClient, prefix: string): Effect.Effect<ReadonlyMap<string, QueueLimits>, SqlError> =>
  sql<{ readonly queue: string; readonly limits: LimitsRow }>`
    SELECT q.name AS queue, ${limitsObject(sql, "q")} AS limits FROM ${table(sql, prefix, "oban_queues")} AS q
    WHERE q.global_limit IS NOT NULL OR q.rate_limit IS NOT NULL ORDER BY q.name
  `.pipe(Effect.map((rows) => new Map(rows.map((row) => [row.queue, fromRow(row.limits)]))))

/** What a queue uses of its cluster-wide limits right now. */
export interface QueueUsage {
  /** Jobs of the queue executing on every node. */
  readonly running: number
  /** The current rate window's start, and the jobs claimed in it (over all partitions). */
  readonly window: { readonly start: Date; readonly used: number } | undefined
  /** When the queue was paused for every node, while that pause holds (`oban_queues.paused_at`). */
  readonly pausedSince: Date | undefined
}

/**
 * The queue's executing jobs across the cluster, its pause for every node if
 * any, and, for a rate-limited queue, its current window.
 */
export const queueUsage = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  queue: string,
  limits: QueueLimits
): Effect.Effect<QueueUsage, SqlError> => {
  const period = limits.rate?.periodMillis ?? 1
  return sql<{ readonly running: number; readonly windowStart: number; readonly used: number; readonly pausedAt: Date | null }>`
    WITH clock AS (SELECT ${now} AS now),
    win AS (
      SELECT floor(extract(epoch FROM clock.now) * 1000 / ${period}::bigint)::bigint * ${period}::bigint AS start FROM clock
    )
    SELECT
      (SELECT count(*)::int FROM ${table(sql, prefix, "oban_jobs")}
       WHERE state = 'executing' AND queue = ${queue}) AS running,
      win.start::float8 AS "windowStart",
      (SELECT COALESCE(sum(w.count), 0)::int FROM ${table(sql, prefix, "oban_rate_windows")} AS w
       WHERE w.queue = ${queue} AND w.window_start = win.start) AS used,
      (SELECT q.paused_at FROM ${table(sql, prefix, "oban_queues")} AS q WHERE q.name = ${queue}) AS "pausedAt"
    FROM win
  `.pipe(Effect.map((rows) => {
    const row = rows[0]!
    return {
      running: row.running,
      window: limits.rate === undefined ? undefined : { start: new Date(row.windowStart), used: row.used },
      pausedSince: row.pausedAt ?? undefined
    }
  }))
}

/**
 * Records a pause for every node on the queue's row in `oban_queues` (kept
 * from the first pause), or clears it; returns whether that changed it, and
 * the queue's count of such commands with this one (`pause_commands`, as
 * text): a node that registers again after a long outage compares the count
 * to see whether it missed one (`registerProducer`). Run
 * in the command's transaction before the producer rows are updated, by a
 * statement of its own: the row's lock orders it with registrations
 * (`registerProducer`), and the update that follows sees the rows of
 * producers that registered while it waited.
 */
export const storeQueuePause = (
  sql: SqlClient,
  prefix: string,
  queue: string,
  paused: boolean
): Effect.Effect<{ readonly changed: boolean; readonly count: string | undefined }, SqlError> => {
  const queues = table(sql, prefix, "oban_queues")
  // Whether it changed: a pause set now (not kept from an earlier transaction), a kept pause cleared.
  return (paused
    ? sql<{ readonly changed: boolean; readonly count: string }>`
      INSERT INTO ${queues} AS q (name, paused_at, pause_commands) VALUES (${queue}, now(), 1)
      ON CONFLICT (name) DO UPDATE
        SET paused_at = COALESCE(q.paused_at, excluded.paused_at), pause_commands = q.pause_commands + 1
      RETURNING q.paused_at = now() AS changed, q.pause_commands::text AS count`
    // The row as it was, locked and read before the update (in FROM: a CTE only RETURNING reads would be read
    // after it, and find nothing): whether a pause was kept.
    : sql<{ readonly changed: boolean; readonly count: string }>`
      UPDATE ${queues} AS q SET paused_at = NULL, pause_commands = q.pause_commands + 1
      FROM (SELECT name, paused_at FROM ${queues} WHERE name = ${queue} FOR UPDATE) AS before
      WHERE q.name = before.name
      RETURNING before.paused_at IS NOT NULL AS changed, q.pause_commands::text AS count`
  ).pipe(Effect.map((rows) => ({ changed: rows[0]?.changed === true, count: rows[0]?.count })))
}

/** The queues paused for every node, kept for nodes that start later, and since when. */
export const keptPauses = (
  sql: SqlClient,
  prefix: string
): Effect.Effect<ReadonlyArray<{ readonly queue: string; readonly since: Date }>, SqlError> =>
  sql<{ readonly queue: string; readonly since: Date }>`
    SELECT name AS queue, paused_at AS since FROM ${table(sql, prefix, "oban_queues")}
    WHERE paused_at IS NOT NULL ORDER BY name`
