/**
 * SQL on `oban_producers`: one row per running queue producer, refreshed by
 * its heartbeat. The row also carries the queue's limit and paused flag, so
 * commands for every node are persisted and a node that missed a signal
 * catches up at its next heartbeat.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { table } from "./tables.ts"

export interface ProducerState {
  readonly limit: number
  readonly paused: boolean
}

/**
 * Registers (or refreshes) this node's producer for `queue`. A row left by an
 * earlier run of the same node keeps its limit and paused flag, which are
 * returned (`inserted: false`); otherwise the given state is stored.
 */
export const registerProducer = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: { readonly node: string; readonly queue: string } & ProducerState
): Effect.Effect<ProducerState & { readonly inserted: boolean }, SqlError> =>
  sql<ProducerState & { readonly inserted: boolean }>`
    WITH clock AS (SELECT ${now} AS now)
    INSERT INTO ${table(sql, prefix, "oban_producers")} AS p (node, queue, "limit", paused, started_at, updated_at)
    SELECT ${options.node}, ${options.queue}, ${options.limit}, ${options.paused}, clock.now, clock.now FROM clock
    ON CONFLICT (node, queue) DO UPDATE SET updated_at = excluded.updated_at, started_at = excluded.started_at
    RETURNING p."limit" AS limit, p.paused, (p.xmax = 0) AS inserted
  `.pipe(Effect.map((rows) => rows[0]!))

/**
 * The heartbeat: refreshes the row and returns its state, or none when the
 * row is gone (removed as stale during a long outage).
 */
export const beat = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  node: string,
  queue: string
): Effect.Effect<ProducerState | undefined, SqlError> =>
  sql<ProducerState>`
    UPDATE ${table(sql, prefix, "oban_producers")} SET updated_at = ${now}
    WHERE node = ${node} AND queue = ${queue}
    RETURNING "limit" AS limit, paused
  `.pipe(Effect.map((rows) => rows[0]))

/** Stores a queue command: for one node, or for every producer of the queue. */
export const storeQueueState = (
  sql: SqlClient,
  prefix: string,
  options: { readonly queue: string; readonly node?: string | undefined; readonly limit?: number; readonly paused?: boolean }
): Effect.Effect<void, SqlError> =>
  sql`
    UPDATE ${table(sql, prefix, "oban_producers")}
    SET "limit" = COALESCE(${options.limit ?? null}::integer, "limit"),
        paused = COALESCE(${options.paused ?? null}::boolean, paused)
    WHERE queue = ${options.queue} AND (${options.node ?? null}::text IS NULL OR node = ${options.node ?? null}::text)
  `.pipe(Effect.asVoid)

/** Removes this node's producer rows (clean shutdown). */
export const removeProducers = (sql: SqlClient, prefix: string, node: string): Effect.Effect<void, SqlError> =>
  sql`DELETE FROM ${table(sql, prefix, "oban_producers")} WHERE node = ${node}`.pipe(Effect.asVoid)
