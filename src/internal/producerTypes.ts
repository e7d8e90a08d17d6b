/**
 * The shapes of a producer: what it offers the node, what it takes, and what
 * `checkQueue` reports. Re-exported by the public `Producer` module.
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { ExecutorShape } from "../Executor.ts"
import type { Liveness } from "./liveness.ts"
import type * as QueueLimiter from "./queueLimiter.ts"
import type { QueueLimits } from "./queueLimits.ts"

/**
 * What `checkQueue` reports.
 *
 * @since 0.1.0
 */
export interface QueueState {
  readonly queue: string
  readonly node: string
  /** The local limit: jobs of the queue this node runs at once. */
  readonly limit: number
  /** Jobs of the queue running on this node. */
  readonly running: number
  /** Paused on this node (see `cluster.pausedSince` for a pause kept for nodes that start later). */
  readonly paused: boolean
  /**
   * The queue across all nodes: jobs executing everywhere, its pause for
   * every node while one holds, and its cluster-wide limits and rate window.
   */
  readonly cluster: QueueLimiter.ClusterState
}

/** What a node knows of its queue without asking the database: `QueueState` without `cluster`. */
export type LocalQueueState = Omit<QueueState, "cluster">

/**
 * @since 0.1.0
 */
export type ClusterState = QueueLimiter.ClusterState

/**
 * @since 0.1.0
 */
export interface Producer {
  readonly queue: string
  /** This incarnation's id: its row in `oban_producers`, and `attempted_by[2]` of its jobs. */
  readonly id: string
  /**
   * Drops a job claimed ahead and not started (it was cancelled), and gives
   * it back (a job whose cancel was requested then ends `cancelled`);
   * whether it was waiting here.
   */
  readonly forget: (jobId: number) => Effect.Effect<boolean>
  /**
   * What this producer claimed and answers for without running it: the jobs waiting here (claimed
   * ahead, not started) or being given back, and the claims of fetches still waiting for their reply
   * (their jobs start here when it comes) or that failed and are being released.
   */
  readonly unreturned: Effect.Effect<{ readonly jobs: ReadonlyArray<number>; readonly claims: ReadonlyArray<string> }>
  /** Ask for a fetch soon. Cheap and safe to call any number of times. */
  readonly wake: Effect.Effect<void>
  /** Completes once the producer has registered and made its first fetch (or found its queue paused). */
  readonly ready: Effect.Effect<void>
  /**
   * Pauses / resumes this producer, by a command: `counted` is the queue's
   * count of pauses and resumes for every node that the command carries (a
   * signal for every node, or one given on this node), none for a command
   * for this node alone.
   */
  readonly pause: (counted?: string) => Effect.Effect<void>
  /**
   * Shutdown has begun: no waiting job starts from now on and nothing more is claimed (the jobs
   * waiting go back when the producer stops). Jobs already running go on.
   */
  readonly stopStarting: Effect.Effect<void>
  readonly resume: (counted?: string) => Effect.Effect<void>
  /**
   * Remembers the queue's count of pauses and resumes for every node that a
   * signal carried, when it is past the one remembered (see
   * `registerProducer`). Succeeds with true when the signal is stale: a later
   * pause or resume for every node was seen already (read by a heartbeat,
   * which took its state, or carried by its own signal, which comes after).
   */
  readonly notePauseCommands: (count: string) => Effect.Effect<boolean>
  readonly scale: (limit: number) => Effect.Effect<void>
  /** Re-reads the queue's cluster-wide limits (another node changed them). */
  readonly refreshLimits: Effect.Effect<void>
  readonly check: Effect.Effect<QueueState, SqlError>
  /** This node's part of `check`, without asking the database. */
  readonly local: Effect.Effect<LocalQueueState>
}

/**
 * @since 0.1.0
 */
export interface Options {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
  readonly queue: string
  readonly limit: number
  readonly paused: boolean
  /**
   * Cluster-wide limits from the node's config, written to `oban_queues` at
   * start; none when the config gives none (the stored ones are read).
   */
  readonly limits?: QueueLimits | undefined
  readonly pollInterval: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
  /** How long a silent producer has before the rescuer takes its jobs. */
  readonly rescueAfter: Duration.Duration
  /** The node's own client for heartbeats, off the shared pool. */
  readonly liveness: Liveness
  /**
   * Where the heartbeat runs; default: the producer's scope. A node passes a
   * scope that closes after its running jobs have ended, so that the row
   * stays fresh through the shutdown grace period.
   */
  readonly heartbeatScope?: Scope.Scope | undefined
  readonly executor: ExecutorShape
  /** Stored in the producer's row for operators' tools (the node's crontab). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined
}
