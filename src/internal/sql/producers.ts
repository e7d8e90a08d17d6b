/**
 * SQL on `oban_producers`: one row per running producer incarnation, keyed by
 * the producer's id (the id its jobs carry in `attempted_by[2]`) and refreshed
 * by its heartbeat. The row also carries the queue's limit and paused flag, so
 * commands for every node are persisted and a node that missed a signal
 * catches up at its next heartbeat.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { fromRow, type LimitsRow, type QueueLimits } from "../queueLimits.ts"
import { limitsObject } from "./queues.ts"
import { table } from "./tables.ts"

/**
 * A row's last heartbeat as text that does not depend on the session's time
 * zone or date style: microseconds since the epoch.
 */
const beatText = (sql: SqlClient, row: string): Fragment =>
  sql.literal(`(extract(epoch FROM ${row}.updated_at) * 1000000)::bigint::text`)

/**
 * The other producer rows of a node's name and queue, each id with its last
 * heartbeat as text. A row that was there when a producer registered and
 * has beaten since, or that was not there then, is a live process under the
 * same name; a crashed incarnation's row stays as it was (the rescuer marks
 * it dead, and removes it a day later). Each row is compared with itself, not with this node's clock.
 */
export type Namesakes = Readonly<Record<string, string>>

export interface ProducerState {
  readonly limit: number
  readonly paused: boolean
}

/** What a heartbeat reads back: the producer's state and its queue's cluster-wide limits. */
export interface BeatState extends ProducerState {
  readonly limits: QueueLimits
  /** The queue's count of pauses and resumes for every node (`oban_queues.pause_commands`), as text. */
  readonly pauseCommands: string | undefined
  /** The other rows of the same node and queue now. */
  readonly namesakes: Namesakes
}

export interface Registration extends ProducerState {
  /** The limit and paused flag came from an earlier incarnation of the same node and queue. */
  readonly inherited: boolean
  /** The queue is paused on every node (`oban_queues.paused_at`): the producer starts paused. */
  readonly pausedEverywhere: boolean
  /** The other rows of the same node and queue, with their last heartbeats (see `Namesakes`). */
  readonly namesakes: Namesakes
  /** The queue's count of pauses and resumes for every node (`oban_queues.pause_commands`), as text. */
  readonly pauseCommands: string
}

/**
 * Registers (or refreshes) the producer `id`.
 *
 * At its first registration (`pauseCommandsSeen` undefined) the newest row
 * left by an earlier incarnation of the same node and queue lends its limit
 * and paused flag (`inherited: true`); otherwise the given state is stored. A
 * queue paused on every node (`pausedEverywhere`) registers paused either way.
 *
 * A registration again follows a long outage, when the rescuer marked the
 * row dead (`dead_at`) or removed it. A row marked dead is taken back as it
 * is: every command for this node or for every node given meanwhile updated
 * it, including those whose signals the node missed. A removed row (dead for
 * longer than `rescuer.forgetAfter`) is stored with the given state, unless
 * the queue was paused or resumed for every node since the producer last read
 * the queue's count of those commands: it missed that command, and takes the
 * queue's pause (paused while one is kept, else not).
 *
 * Rows of other incarnations are left alone: the rescuer judges them by their
 * own heartbeats.
 *
 * The queue's row in `oban_queues` is upserted and its pause read from the
 * row as locked (`RETURNING`), not from the statement's snapshot: a pause for
 * every node committed while this waited for the lock is seen here, and one
 * that takes the lock after this sees this producer's row (`storeQueuePause`
 * in `queues.ts`).
 */
export const registerProducer = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: {
    readonly id: string
    readonly node: string
    readonly queue: string
    /** The queue's count of pauses and resumes for every node as last read; undefined at the first registration. */
    readonly pauseCommandsSeen: string | undefined
    /** What the row tells operators' tools (the node's crontab). */
    readonly meta?: Readonly<Record<string, unknown>> | undefined
  } & ProducerState
): Effect.Effect<Registration, SqlError> => {
  const producers = table(sql, prefix, "oban_producers")
  const seen = options.pauseCommandsSeen
  // The first registration lends from an earlier incarnation and takes a kept pause; a registration again
  // keeps its own state unless the queue's count of commands for every node moved (see above).
  const limit = seen === undefined ? sql`COALESCE((SELECT "limit" FROM newest), ${options.limit})` : sql`${options.limit}`
  const paused = seen === undefined
    ? sql`queue_row.paused OR COALESCE((SELECT paused FROM newest), ${options.paused})`
    : sql`CASE WHEN queue_row.pause_commands = ${seen}::bigint THEN ${options.paused} ELSE queue_row.paused END`
  const inherited = seen === undefined ? sql`EXISTS (SELECT 1 FROM newest)` : sql`false`
  return sql<Registration>`
    WITH clock AS (SELECT ${now} AS now),
    queue_row AS (
      INSERT INTO ${table(sql, prefix, "oban_queues")} AS q (name) VALUES (${options.queue})
      ON CONFLICT (name) DO UPDATE SET name = excluded.name
      RETURNING q.paused_at IS NOT NULL AS paused, q.pause_commands
    ),
    earlier AS (
      SELECT p.id, p."limit", p.paused, p.updated_at FROM ${producers} AS p
      WHERE p.node = ${options.node} AND p.queue = ${options.queue} AND p.id <> ${options.id}::uuid
      ORDER BY p.updated_at DESC
    ),
    newest AS (SELECT * FROM earlier LIMIT 1),
    registered AS (
      INSERT INTO ${producers} AS p (id, node, queue, "limit", paused, meta, started_at, updated_at, revivable)
      SELECT ${options.id}::uuid, ${options.node}, ${options.queue},
             ${limit}, ${paused},
             ${JSON.stringify(options.meta ?? {})}::jsonb,
             clock.now, clock.now, true
      -- Read from the rows of queue_row: the queue row is locked before this producer row is written,
      -- the order a pause for every node takes them in (no deadlock on a refresh of this row).
      FROM clock, queue_row
      ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, dead_at = NULL
      RETURNING p."limit", p.paused
    )
    SELECT registered."limit" AS limit, registered.paused,
           ${inherited} AS inherited,
           (SELECT paused FROM queue_row) AS "pausedEverywhere",
           (SELECT pause_commands::text FROM queue_row) AS "pauseCommands",
           (SELECT COALESCE(json_object_agg(earlier.id, ${beatText(sql, "earlier")}), '{}') FROM earlier) AS namesakes
    FROM registered
  `.pipe(Effect.map((rows) => rows[0]!))
}

/**
 * The heartbeat of one producer: refreshes its row and returns its state with
 * its queue's cluster-wide limits and count of pauses and resumes for every
 * node, or none when the row is dead or gone (judged stale during a long outage).
 */
export const beat = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  id: string
): Effect.Effect<BeatState | undefined, SqlError> =>
  sql<
    ProducerState & {
      readonly limits: LimitsRow | null
      readonly pause_commands: string | null
      readonly namesakes: Namesakes
    }
  >`
    UPDATE ${table(sql, prefix, "oban_producers")} AS p SET updated_at = ${now}
    WHERE p.id = ${id}::uuid AND p.dead_at IS NULL
    RETURNING p."limit" AS limit, p.paused,
      (SELECT ${limitsObject(sql, "q")} FROM ${table(sql, prefix, "oban_queues")} AS q WHERE q.name = p.queue) AS limits,
      (SELECT q.pause_commands::text FROM ${table(sql, prefix, "oban_queues")} AS q WHERE q.name = p.queue)
        AS pause_commands,
      (SELECT COALESCE(json_object_agg(o.id, ${beatText(sql, "o")}), '{}') FROM ${table(sql, prefix, "oban_producers")} AS o
        WHERE o.node = p.node AND o.queue = p.queue AND o.id <> p.id) AS namesakes
  `.pipe(Effect.map((rows) => {
    const row = rows[0]
    if (row === undefined) return undefined
    return {
      limit: row.limit,
      paused: row.paused,
      limits: fromRow(row.limits),
      pauseCommands: row.pause_commands ?? undefined,
      namesakes: row.namesakes
    }
  }))

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

/** Removes the rows of the given producers (a clean shutdown removes its own, not a namesake's). */
export const removeProducers = (
  sql: SqlClient,
  prefix: string,
  ids: ReadonlyArray<string>
): Effect.Effect<void, SqlError> =>
  ids.length === 0
    ? Effect.void
    : sql`DELETE FROM ${table(sql, prefix, "oban_producers")} WHERE id::text IN ${sql.in(ids)}`.pipe(Effect.asVoid)
