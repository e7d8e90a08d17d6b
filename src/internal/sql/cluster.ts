/**
 * SQL of the cluster view and of queue commands given without a running
 * node: the producer rows with their running jobs, the leader lease, and
 * pause / resume / scale stored in the producer rows and signalled to the
 * nodes (the same signal `Oban.pauseQueue` sends).
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { channel } from "../../Config.ts"
import { parseJsonObject } from "../jsonParse.ts"
import { leaderLease } from "./peers.ts"
import { storeQueuePause } from "./queues.ts"
import { table } from "./tables.ts"
import { transaction } from "./transaction.ts"

export interface ProducerRow {
  readonly id: string
  readonly node: string
  readonly queue: string
  readonly limit: number
  readonly paused: boolean
  readonly meta: Record<string, unknown> | null
  readonly started_at: Date
  readonly updated_at: Date
  readonly running: number
}

/** A row with its meta, read as text (crontab names and limit settings are the user's), parsed by `parseJson`. */
const withParsedMeta = <R extends { readonly meta: string | null }>(
  row: R
): Omit<R, "meta"> & { readonly meta: Record<string, unknown> | null } => ({
  ...row,
  meta: row.meta === null ? null : parseJsonObject(row.meta)
})

/** Every producer row not marked dead, with the jobs executing under it (through the executing index), and "now". */
export const producerRows = (
  sql: SqlClient,
  prefix: string
): Effect.Effect<{ readonly now: Date; readonly rows: ReadonlyArray<ProducerRow> }, SqlError> =>
  Effect.all([
    sql<{ readonly now: Date }>`SELECT now() AS now`,
    sql<Omit<ProducerRow, "meta"> & { readonly meta: string | null }>`
      SELECT p.id::text AS id, p.node, p.queue, p."limit" AS limit, p.paused, p.meta::text AS meta, p.started_at, p.updated_at,
             (SELECT count(*)::int FROM ${table(sql, prefix, "oban_jobs")} AS j
              WHERE j.state = 'executing' AND j.queue = p.queue AND j.attempted_by[2] = p.id::text) AS running
      FROM ${table(sql, prefix, "oban_producers")} AS p
      WHERE p.dead_at IS NULL
      ORDER BY p.node, p.queue, p.started_at
    `
  ]).pipe(Effect.map(([clock, rows]) => ({ now: clock[0]!.now, rows: rows.map(withParsedMeta) })))

export interface LeaseRow {
  readonly node: string
  readonly started_at: Date
  readonly expires_at: Date
  /** The holder's process (see `claimLease`). */
  readonly instance: string | null
  /**
   * What the holder reports (the cron lease's holder: its crontab), with the instance that wrote it:
   * a release before migration 17 takes the lease over without writing it, so it may be a former
   * holder's. Null from earlier releases.
   */
  readonly meta: Record<string, unknown> | null
}

/** A lease while it is valid: the leader's (`oban`, the default) or the cron lease (`cron`). */
export const currentLease = (
  sql: SqlClient,
  prefix: string,
  name: string = leaderLease
): Effect.Effect<LeaseRow | undefined, SqlError> =>
  sql<Omit<LeaseRow, "meta"> & { readonly meta: string | null }>`
    SELECT node, instance, started_at, expires_at, meta::text AS meta FROM ${table(sql, prefix, "oban_peers")}
    WHERE name = ${name} AND expires_at > now()
  `.pipe(Effect.map((rows) => rows[0] === undefined ? undefined : withParsedMeta(rows[0])))

export type QueueCommand =
  | { readonly action: "pause"; readonly queue: string }
  | { readonly action: "resume"; readonly queue: string }
  | { readonly action: "scale"; readonly queue: string; readonly limit: number }

/** What a queue command did: producer rows changed, and the pause kept for the queue. */
export interface CommandResult {
  readonly producers: number
  /**
   * Rows of producers judged dead that took the command too: their node, cut off for now, finds it
   * when it is back (within `rescuer.forgetAfter`).
   */
  readonly deadProducers: number
  /** Whether a pause is kept for the queue (for nodes that start later) after the command. */
  readonly keptPause: boolean
  /** Whether the command set or cleared the kept pause (only a pause or resume for every node does). */
  readonly keptChanged: boolean
  /** A pause or resume for every node: the queue's count of those, this one included (as its signal carries it). */
  readonly pauseCommands?: string
}

/**
 * Stores a queue command in the rows of the queue's producers (of one node,
 * or all) and signals the nodes; a pause or resume for every node is stored
 * on the queue's row too (`storeQueuePause`), in the same transaction.
 */
export const commandQueue = (
  sql: SqlClient,
  prefix: string,
  command: QueueCommand,
  node: string | undefined
): Effect.Effect<CommandResult, SqlError> => {
  const limit = command.action === "scale" ? command.limit : null
  const paused = command.action === "scale" ? null : command.action === "pause"
  // A pause or resume for every node carries the queue's count of them, which nodes remember (see
  // `registerProducer`): the one stored in this transaction.
  const stored = (pauseCommands: string | undefined) => {
    const signal = JSON.stringify(
      node !== undefined ? { ...command, node } : pauseCommands === undefined ? command : { ...command, pause_commands: pauseCommands }
    )
    return sql<{ readonly changed: number; readonly dead: number; readonly kept: boolean }>`
      WITH changed AS (
        UPDATE ${table(sql, prefix, "oban_producers")}
        SET "limit" = COALESCE(${limit}::integer, "limit"), paused = COALESCE(${paused}::boolean, paused)
        WHERE queue = ${command.queue} AND (${node ?? null}::text IS NULL OR node = ${node ?? null}::text)
        RETURNING id, dead_at IS NULL AS live
      ),
      signalled AS (
        SELECT pg_notify(${channel(prefix, "signal")}, ${signal}) WHERE EXISTS (SELECT 1 FROM changed)
      )
      SELECT (SELECT count(*)::int FROM changed WHERE live) AS changed, (SELECT count(*)::int FROM changed WHERE NOT live) AS dead,
        (SELECT count(*) FROM signalled) AS sent,
        EXISTS (SELECT 1 FROM ${table(sql, prefix, "oban_queues")} WHERE name = ${command.queue} AND paused_at IS NOT NULL) AS kept
    `.pipe(Effect.map((rows) => ({
      producers: rows[0]?.changed ?? 0,
      deadProducers: rows[0]?.dead ?? 0,
      keptPause: rows[0]?.kept === true
    })))
  }
  // A pause or resume for every node is also the queue's own state, for nodes that start later.
  return paused === null || node !== undefined
    ? Effect.map(stored(undefined), (result) => ({ ...result, keptChanged: false }))
    : transaction(sql, Effect.flatMap(
      storeQueuePause(sql, prefix, command.queue, paused),
      ({ changed, count }) =>
        Effect.map(stored(count), (result) => ({
          ...result,
          keptChanged: changed,
          ...(count === undefined ? {} : { pauseCommands: count })
        }))
    ))
}
