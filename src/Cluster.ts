/**
 * The cluster as the database sees it, and queue commands given from
 * outside any node: which nodes run which queues (limit, running jobs, paused,
 * last heartbeat), the current leader, the crontab with each entry's next run,
 * and pause / resume / scale for one node or all.
 *
 * Like `Jobs`, these need only `SqlClient` and the prefix of
 * `ObanConfig.Settings`. Queue commands are stored in the producers' rows and
 * signalled, as `Oban.pauseQueue` does: nodes apply them at once, or at their
 * next heartbeat when they missed the signal.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Cron from "./Cron.ts"
import { InvalidConfigError, type MigrationError } from "./Errors.ts"
import { isLate } from "./internal/lateness.ts"
import { withPrefix } from "./internal/notMigrated.ts"
import { runQueueCommand } from "./internal/queueCommand.ts"
import { currentLease, type LeaseRow, producerRows, type QueueCommand } from "./internal/sql/cluster.ts"
import { keptPauses } from "./internal/sql/queues.ts"
import { cronLease } from "./internal/sql/peers.ts"

/**
 * One producer: a queue running on a node (one per process incarnation).
 *
 * @since 0.1.0
 */
export interface ProducerInfo {
  readonly id: string
  readonly node: string
  readonly queue: string
  /** Jobs of the queue this producer runs at once. */
  readonly limit: number
  /**
   * Jobs `executing` under this producer now: running, or claimed ahead and
   * waiting for a slot (a busy queue of short jobs), so it can exceed `limit`.
   */
  readonly running: number
  readonly paused: boolean
  readonly startedAt: Date
  readonly lastHeartbeat: Date
  /** Milliseconds since the last heartbeat (by the database's clock). */
  readonly silentForMillis: number
  /**
   * Whether its heartbeats are late: silent for more than twice its node's heartbeat interval and
   * 5 s besides (a node that crashed, stalled or lost the database shows as running until the
   * rescuer takes its jobs back, `rescueAfter` after its last heartbeat). Rows of releases that do
   * not report their interval are judged by the default, 10 s.
   */
  readonly late: boolean
  /**
   * Whether this producer's process holds the leader lease: of a node restarted under the same name,
   * only the live incarnation's rows (the dead one's stay until they are rescued). A row of a release
   * before 2026-12-06 does not say its process, and counts as the leader's when its node name does.
   */
  readonly leader: boolean
}

/**
 * @since 0.1.0
 */
export interface NodeInfo {
  readonly node: string
  /** Whether a process of this name holds the leader lease (see `ProducerInfo.leader` for which). */
  readonly leader: boolean
  readonly producers: ReadonlyArray<ProducerInfo>
}

/**
 * A crontab entry, as the nodes report it, with its next slot from now.
 * `nodes` lists the nodes that carry it (every node normally has the same
 * crontab; only the cron lease's holder inserts, and nodes that disagree
 * about an entry show one line per version). Nodes that run queues report
 * their crontab, and so does the cron lease's holder even when it runs none;
 * a scheduler-only node that does not hold the lease is not listed. `error`
 * is set when the expression or time zone does not parse here.
 *
 * @since 0.1.0
 */
export interface CronInfo {
  readonly name: string
  readonly expression: string
  readonly timezone: string | null
  readonly worker: string
  readonly queue: string
  readonly nodes: ReadonlyArray<string>
  readonly nextRun: Date | undefined
  readonly error?: string | undefined
}

/**
 * A lease and who holds it.
 *
 * @since 0.1.0
 */
export interface LeaseInfo {
  readonly node: string
  readonly since: Date
  readonly expiresAt: Date
}

/**
 * @since 0.1.0
 */
export interface ClusterView {
  /** The database's clock when the view was taken. */
  readonly now: Date
  readonly leader: LeaseInfo | undefined
  /** The node that inserts the crontab's slots: it holds the cron lease (only nodes with a crontab take it). */
  readonly cronLeader: LeaseInfo | undefined
  readonly nodes: ReadonlyArray<NodeInfo>
  readonly crons: ReadonlyArray<CronInfo>
  /**
   * Queues paused for every node (`pauseQueue` without a node), and since
   * when: nodes that start them later start them paused, until `resumeQueue`
   * for every node. A queue resumed on some nodes since stays listed here.
   */
  readonly pausedQueues: ReadonlyArray<{ readonly queue: string; readonly since: Date }>
}


interface StoredEntry {
  readonly name: string
  readonly expression: string
  readonly timezone: string | null
  readonly worker: string
  readonly queue: string
}

const storedCrontab = (meta: Record<string, unknown> | null): ReadonlyArray<StoredEntry> => {
  const crontab = meta?.["crontab"]
  if (!Array.isArray(crontab)) return []
  return crontab.filter((entry): entry is StoredEntry =>
    typeof entry === "object" && entry !== null && typeof entry.name === "string" &&
    typeof entry.expression === "string" && typeof entry.worker === "string"
  )
}

const cronInfo = (entry: StoredEntry, nodes: ReadonlyArray<string>, now: Date): CronInfo => {
  const parsed = Cron.parseExpression(entry.expression, entry.timezone ?? undefined)
  if (Result.isFailure(parsed)) return { ...entry, nodes, nextRun: undefined, error: parsed.failure.message }
  try {
    // As the node computes it (a slot moved by a spring-forward gap included).
    return { ...entry, nodes, nextRun: Cron.nextSlot(parsed.success, now) }
  } catch {
    // Stored by a release that did not refuse it: an expression that matches no date.
    return { ...entry, nodes, nextRun: undefined, error: "the expression matches no date" }
  }
}

/**
 * Nodes and their producers, the leader, the crontab, and the queues paused
 * for every node.
 *
 * @since 0.1.0
 */
export const view: Effect.Effect<ClusterView, MigrationError | SqlError, SqlClient> = withPrefix((sql, prefix) =>
  Effect.map(Effect.all([
    producerRows(sql, prefix),
    currentLease(sql, prefix),
    currentLease(sql, prefix, cronLease),
    keptPauses(sql, prefix)
  ]), ([{ now, rows }, lease, cronLeaseRow, pausedQueues]) => {
    const nodes = new Map<string, Array<ProducerInfo>>()
    const crons = new Map<string, { entry: StoredEntry; nodes: Set<string> }>()
    const report = (node: string, meta: Record<string, unknown> | null) => {
      for (const entry of storedCrontab(meta)) {
        // Nodes that disagree about an entry (a deploy under way) show as one line per version.
        const key = JSON.stringify([entry.name, entry.expression, entry.timezone, entry.worker, entry.queue])
        const known = crons.get(key) ?? { entry, nodes: new Set<string>() }
        known.nodes.add(node)
        crons.set(key, known)
      }
    }
    for (const row of rows) {
      const producers = nodes.get(row.node) ?? []
      producers.push({
        id: row.id,
        node: row.node,
        queue: row.queue,
        limit: row.limit,
        running: row.running,
        paused: row.paused,
        startedAt: row.started_at,
        lastHeartbeat: row.updated_at,
        silentForMillis: Math.max(0, now.getTime() - row.updated_at.getTime()),
        late: isLate(now.getTime() - row.updated_at.getTime(), row.meta),
        leader: heldBy(lease, row)
      })
      nodes.set(row.node, producers)
      report(row.node, row.meta)
    }
    // The cron lease's holder reports its crontab in the lease row too: it may run no queue. Only
    // the holder's own: a node of an earlier release takes the lease over without replacing it.
    if (cronLeaseRow !== undefined && cronLeaseRow.meta?.["instance"] === cronLeaseRow.instance) {
      report(cronLeaseRow.node, cronLeaseRow.meta)
    }
    return {
      now,
      leader: leaseInfo(lease),
      cronLeader: leaseInfo(cronLeaseRow),
      nodes: Array.from(nodes, ([node, producers]) => ({ node, leader: lease?.node === node, producers })),
      crons: Array.from(crons.values(), ({ entry, nodes }) => cronInfo(entry, Array.from(nodes).sort(), now))
        .sort((a, b) => a.name.localeCompare(b.name)),
      pausedQueues
    }
  })
)

/** Whether the producer row's process holds `lease` (by its node name alone when either does not say its process). */
const heldBy = (lease: LeaseRow | undefined, row: { readonly node: string; readonly meta: Record<string, unknown> | null }) => {
  if (lease === undefined || lease.node !== row.node) return false
  const instance = row.meta?.["instance"]
  return typeof instance !== "string" || lease.instance === null || instance === lease.instance
}

const leaseInfo = (row: LeaseRow | undefined): LeaseInfo | undefined =>
  row === undefined ? undefined : { node: row.node, since: row.started_at, expiresAt: row.expires_at }

/**
 * Where a queue command applies: every node (the default) or one, by name.
 * A node judged dead (cut off past `rescueAfter`, or crashed) is counted in no
 * command's result, but its rows take the command and keep it: it applies
 * when the node is back, or restarts under its name, within
 * `rescuer.forgetAfter`.
 *
 * @since 0.1.0
 */
export interface CommandOptions {
  readonly node?: string | undefined
}

const command = (input: QueueCommand, options: CommandOptions = {}) =>
  Effect.map(runQueueCommand(input, options.node), (result) => result.producers)

/**
 * Pauses `queue` on every node, or on `options.node`: they stop fetching its
 * jobs (running ones finish). A pause for every node is kept for the queue:
 * nodes that start later start it paused until `resumeQueue` for every node.
 * Returns how many producers were told (0 when no live node runs the queue).
 * A name no queue can have (empty, over 128 characters, a NUL character,
 * whitespace at either end), or a `node` no node can have, fails with
 * `InvalidConfigError`.
 *
 * @since 0.1.0
 */
export const pauseQueue = (
  queue: string,
  options?: CommandOptions
): Effect.Effect<number, InvalidConfigError | MigrationError | SqlError, SqlClient> =>
  command({ action: "pause", queue }, options)

/**
 * Resumes `queue` on every node, or on `options.node`. Only a resume for
 * every node clears a pause kept for the queue (`pauseQueue`). Returns how
 * many producers were told. Bad queue and node names fail as `pauseQueue`'s.
 *
 * @since 0.1.0
 */
export const resumeQueue = (
  queue: string,
  options?: CommandOptions
): Effect.Effect<number, InvalidConfigError | MigrationError | SqlError, SqlClient> =>
  command({ action: "resume", queue }, options)

/**
 * Sets how many jobs of `queue` run at once on every node, or on
 * `options.node` (1 to 10,000). Returns how many producers were told. A
 * limit out of range, and bad queue and node names, fail with
 * `InvalidConfigError`.
 *
 * @since 0.1.0
 */
export const scaleQueue = (
  queue: string,
  limit: number,
  options?: CommandOptions
): Effect.Effect<number, InvalidConfigError | MigrationError | SqlError, SqlClient> =>
  command({ action: "scale", queue, limit }, options)
