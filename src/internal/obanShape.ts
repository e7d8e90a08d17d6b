/**
 * The shape of the `Oban` service: what a running node offers. Re-exported by
 * the public `Oban` module.
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { SqlError } from "effect/sql/SqlError"
import type * as Cluster from "../Cluster.ts"
import type {
  InvalidConfigError,
  InvalidFilterError,
  InvalidJobError,
  InvalidResultError,
  InvalidWorkflowError,
  MigrationError,
  UniqueConflictError,
  UnknownQueueError
} from "../Errors.ts"
import type { JobEvent } from "../Events.ts"
import type { Job, JobState } from "../Job.ts"
import type * as JobQueries from "../Jobs.ts"
import type { ArgsOfRequest, Inserted } from "../Oban.ts"
import type { QueueState } from "../Producer.ts"
import type * as Worker from "../Worker.ts"
import type * as Workflow from "../Workflow.ts"
import type { LimitsInput } from "./queueLimits.ts"
import type { QueueScope } from "./runtime.ts"

/**
 * The running node: job management plus control of its queues.
 *
 * @since 0.1.0
 */
export interface ObanShape {
  /** This node's name, as stored in `attempted_by`. */
  readonly node: string
  readonly insert: <A>(
    request: Worker.JobRequest<A>
  ) => Effect.Effect<Inserted<A>, InvalidJobError | MigrationError | SqlError>
  readonly insertAll: <R extends Worker.JobRequest>(
    requests: Iterable<R>
  ) => Effect.Effect<ReadonlyArray<Inserted<ArgsOfRequest<R>>>, InvalidJobError | MigrationError | SqlError>
  readonly insertWorkflow: <Steps extends string>(
    workflow: Workflow.Workflow<Steps>
  ) => Effect.Effect<
    Workflow.InsertedWorkflow<Steps>,
    InvalidWorkflowError | InvalidJobError | MigrationError | SqlError
  >
  /** See `Workflow.status`, `Workflow.cancel` and `Workflow.retry`. */
  readonly workflowStatus: (workflowId: string) => Effect.Effect<Workflow.WorkflowStatus, MigrationError | SqlError>
  readonly cancelWorkflow: (
    workflowId: string
  ) => Effect.Effect<ReadonlyArray<{ readonly id: number; readonly previousState: JobState }>, MigrationError | SqlError>
  readonly retryWorkflow: (workflowId: string) => Effect.Effect<ReadonlyArray<number>, MigrationError | SqlError>
  readonly getJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError>
  /** See `Oban.getResult`. */
  readonly getResult: <O>(
    id: number,
    worker: Workflow.ResultWorker<O>
  ) => Effect.Effect<Option.Option<O>, InvalidResultError | MigrationError | SqlError>
  readonly cancelJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError>
  readonly retryJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError | UniqueConflictError>
  readonly deleteJob: (id: number) => Effect.Effect<boolean, MigrationError | SqlError>
  /** `Jobs.list`: a page of the jobs matching a filter. */
  readonly listJobs: (options?: JobQueries.ListOptions) => Effect.Effect<JobQueries.Page, FilterFailure>
  /** `Jobs.counts`: jobs per queue and state. */
  readonly countJobs: (options?: JobQueries.CountOptions) => Effect.Effect<JobQueries.Counts, MigrationError | SqlError>
  /** `Jobs.cancel`; the cancelled jobs this node runs stop at once, even without the signal. */
  readonly cancelJobs: (filter: JobQueries.Filter, options?: JobQueries.BulkOptions) => Effect.Effect<JobQueries.BulkResult, FilterFailure>
  /** `Jobs.retry`. */
  readonly retryJobs: (filter: JobQueries.Filter, options?: JobQueries.BulkOptions) => Effect.Effect<JobQueries.BulkResult, FilterFailure>
  /** `Jobs.remove`. */
  readonly deleteJobs: (filter: JobQueries.Filter, options?: JobQueries.BulkOptions) => Effect.Effect<JobQueries.BulkResult, FilterFailure>
  /** `Jobs.reschedule`. */
  readonly rescheduleJobs: (
    filter: JobQueries.Filter,
    at: Date,
    options?: JobQueries.BulkOptions
  ) => Effect.Effect<JobQueries.BulkResult, FilterFailure>
  /** `Cluster.view`: nodes, producers, leader and crontab. */
  readonly cluster: Effect.Effect<Cluster.ClusterView, MigrationError | SqlError>
  /**
   * Stops fetching new jobs for `queue` (running jobs finish). Default scope: all nodes, and
   * nodes that start later, until `resumeQueue` for all nodes.
   */
  readonly pauseQueue: (
    queue: string,
    options?: { readonly scope?: QueueScope }
  ) => Effect.Effect<void, SqlError | UnknownQueueError | InvalidConfigError>
  readonly resumeQueue: (
    queue: string,
    options?: { readonly scope?: QueueScope }
  ) => Effect.Effect<void, SqlError | UnknownQueueError | InvalidConfigError>
  /** Sets how many jobs of `queue` run at once. Default scope: all nodes. */
  readonly scaleQueue: (
    queue: string,
    limit: number,
    options?: { readonly scope?: QueueScope }
  ) => Effect.Effect<void, SqlError | UnknownQueueError | InvalidConfigError>
  /**
   * Replaces the cluster-wide limits of `queue` (`global`, `partition`,
   * `rate`; `{}` removes them) for every node: stored in `oban_queues`, then
   * signalled. Nodes that miss the signal follow at their next heartbeat.
   * The queue need not run on this node. See docs/limits.md.
   */
  readonly setQueueLimits: (queue: string, limits: LimitsInput) => Effect.Effect<void, SqlError | InvalidConfigError>
  /**
   * Completes once every queue of this node has registered its producer and
   * made its first fetch: from then on the node is running jobs. Building the
   * layer does not wait for this (a database that does not answer yet delays
   * it, not the start); wait on it to know a node started from outside
   * Effect is working.
   */
  readonly ready: Effect.Effect<void>
  /**
   * The limit, running count and paused flag of `queue` on this node, and in
   * `cluster` the jobs executing on every node, when the queue was paused for
   * every node while that pause holds (`pausedSince`), the cluster-wide limits
   * and the current rate window (one query).
   */
  readonly checkQueue: (queue: string) => Effect.Effect<QueueState, UnknownQueueError | SqlError>
  /** Whether this node holds the leader lease right now. */
  readonly isLeader: Effect.Effect<boolean>
  /** This node's leadership as it changes. */
  readonly leadership: Stream.Stream<boolean>
  /** Lifecycle events of the jobs this node inserts, runs and rescues, from the moment of subscribing. */
  readonly events: Stream.Stream<JobEvent>
}

/** How a filtered query or bulk action can fail. @since 0.1.0 */
export type FilterFailure = InvalidFilterError | MigrationError | SqlError
