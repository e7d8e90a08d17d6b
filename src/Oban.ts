/**
 * The public face of effect-oban: inserting jobs, managing them, and
 * `Oban.layer`, which runs this node's queues.
 *
 * `insert` and `insertAll` need only `SqlClient`: they run on the caller's
 * connection, so inside `sql.withTransaction` the job exists exactly when the
 * transaction commits, and a rollback leaves no job and sends no notification.
 *
 * Every function here works on the prefix of `Config.Settings`: the one given
 * to `Config.layer`, the node's own inside a running node's jobs, else
 * `public`. When that schema has no tables they fail with a `MigrationError`
 * naming the prefix, not with a bare "relation does not exist".
 *
 * @since 0.1.0
 */
import type { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Context, Effect, Exit, Layer, Option, Runtime, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import {
  InvalidConfigError,
  type InvalidJobError,
  type InvalidPrefixError,
  type MigrationError,
  type UnknownQueueError
} from "./Errors.ts"
import type { Job } from "./Job.ts"
import { now } from "./ObanClock.ts"
import type { QueueState } from "./Producer.ts"
import { EventHub, type JobEvent, listening, publish, stream as eventStream } from "./Events.ts"
import { encodeRequests } from "./internal/encodeRequest.ts"
import { InlineRunner } from "./internal/inline.ts"
import { orNotMigrated } from "./internal/notMigrated.ts"
import { insertEncoded } from "./internal/insertEncoded.ts"
import { wakeAfterCommit } from "./internal/waker.ts"
import { isValidLimit, makeRuntime, type QueueScope } from "./internal/runtime.ts"
import type { QueueConfig, RuntimeOptions } from "./internal/runtimeConfig.ts"
import type { LimitsInput, Partition, RateInput } from "./internal/queueLimits.ts"
import * as Jobs from "./internal/sql/jobs.ts"
import { currentTraceparent } from "./internal/telemetry.ts"
import type * as Worker from "./Worker.ts"

export type { ClusterState } from "./Producer.ts"
export type { LimitsInput as QueueLimits, Partition, QueueConfig, QueueScope, QueueState, RateInput }

/**
 * Inserts one job. It is `available` (and wakes its queue) when due now,
 * else `scheduled`. Fails with `InvalidJobError`, writing nothing, when the
 * request is bad, and with `MigrationError` when the prefix has no tables.
 *
 * @since 0.1.0
 */
export const insert = <A>(
  request: Worker.JobRequest<A>
): Effect.Effect<Job, InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.map(insertRequests([request], false), (jobs) => jobs[0]!)

/**
 * Inserts any number of jobs with one notification per queue that received
 * due jobs, all or nothing. One bad request fails the whole call with an
 * `InvalidJobError` naming its index, and nothing is written. A batch is one
 * statement up to 32 MiB of JSON; a larger one is split into several
 * statements inside one transaction (a savepoint inside the caller's). Returns
 * the jobs in the order of the requests.
 *
 * @since 0.1.0
 */
export const insertAll = (
  requests: Iterable<Worker.JobRequest>
): Effect.Effect<ReadonlyArray<Job>, InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.suspend(() => insertRequests(Array.from(requests), true))

const identity = (position: number): number => position
const noIndex = (): undefined => undefined

const insertRequests = (
  list: ReadonlyArray<Worker.JobRequest>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Job>, InvalidJobError | MigrationError | SqlError, SqlClient> => {
  if (list.length === 0) return Effect.succeed([])
  return Effect.gen(function*() {
    const settings = yield* Settings
    // The insert span travels with the jobs, so their perform spans continue this trace.
    const traceparent = yield* currentTraceparent
    const encoded = yield* encodeRequests(list, settings, traceparent, indexed ? identity : noIndex)
    const sql = yield* SqlClient
    const time = yield* now(sql)
    const { jobs, woken } = yield* insertEncoded(sql, settings.prefix, time, encoded).pipe(orNotMigrated(settings.prefix))
    if (!woken) yield* wakeAfterCommit(sql, settings.prefix, dueQueues(jobs))
    if (yield* listening) {
      // Only once the jobs exist for everyone else: after the commit, never after a rollback.
      const at = new Date(yield* Clock.currentTimeMillis)
      yield* sql.afterCommit(publish(jobs.map((job) => ({
        kind: "inserted" as const,
        jobId: job.id,
        worker: job.worker,
        queue: job.queue,
        attempt: job.attempt,
        at
      }))))
    }
    const inline = yield* InlineRunner
    if (inline !== undefined) yield* inline(jobs)
    return jobs
  }).pipe(Effect.withSpan("oban.insert", { kind: "producer", attributes: { "oban.jobs": list.length } }, {
    captureStackTrace: false
  }))
}

const dueQueues = (jobs: ReadonlyArray<Job>): ReadonlyArray<string> => {
  const queues = new Set<string>()
  for (const job of jobs) if (job.state === "available") queues.add(job.queue)
  return [...queues]
}

const withSql = <A>(
  f: (sql: SqlClient, prefix: string) => Effect.Effect<A, SqlError>
): Effect.Effect<A, MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const { prefix } = yield* Settings
    return yield* orNotMigrated(prefix)(f(sql, prefix))
  })

/**
 * The job with this id, if it exists.
 *
 * @since 0.1.0
 */
export const getJob = (id: number): Effect.Effect<Option.Option<Job>, MigrationError | SqlError, SqlClient> =>
  withSql((sql, prefix) => Effect.map(Jobs.getJob(sql, prefix, id), Option.fromUndefinedOr))

/**
 * Cancels a job that has not finished. A job executing on any node is
 * interrupted there (through a signal) and ends `cancelled`. Returns the
 * cancelled job, or none when it did not exist or had already finished.
 *
 * @since 0.1.0
 */
export const cancelJob = (id: number): Effect.Effect<Option.Option<Job>, MigrationError | SqlError, SqlClient> =>
  withSql((sql, prefix) =>
    Effect.flatMap(now(sql), (time) => Effect.map(Jobs.cancelJob(sql, prefix, time, id), Option.fromUndefinedOr))
  )

/**
 * Makes a job that is not executing (or already available) available to run
 * now, allowing one more attempt if it had used them all. Returns the job, or
 * none when nothing changed.
 *
 * @since 0.1.0
 */
export const retryJob = (id: number): Effect.Effect<Option.Option<Job>, MigrationError | SqlError, SqlClient> =>
  withSql((sql, prefix) =>
    Effect.flatMap(now(sql), (time) => Effect.map(Jobs.retryJob(sql, prefix, time, id), Option.fromUndefinedOr))
  )

/**
 * Deletes a job that is not executing. Returns whether it was deleted.
 *
 * @since 0.1.0
 */
export const deleteJob = (id: number): Effect.Effect<boolean, MigrationError | SqlError, SqlClient> =>
  withSql((sql, prefix) => Jobs.deleteJob(sql, prefix, id))

/**
 * The running node: job management plus control of its queues.
 *
 * @since 0.1.0
 */
export interface ObanShape {
  /** This node's name, as stored in `attempted_by`. */
  readonly node: string
  readonly insert: <A>(request: Worker.JobRequest<A>) => Effect.Effect<Job, InvalidJobError | MigrationError | SqlError>
  readonly insertAll: (
    requests: Iterable<Worker.JobRequest>
  ) => Effect.Effect<ReadonlyArray<Job>, InvalidJobError | MigrationError | SqlError>
  readonly getJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError>
  readonly cancelJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError>
  readonly retryJob: (id: number) => Effect.Effect<Option.Option<Job>, MigrationError | SqlError>
  readonly deleteJob: (id: number) => Effect.Effect<boolean, MigrationError | SqlError>
  /** Stops fetching new jobs for `queue` (running jobs finish). Default scope: all nodes. */
  readonly pauseQueue: (queue: string, options?: { readonly scope?: QueueScope }) => Effect.Effect<void, SqlError | UnknownQueueError>
  readonly resumeQueue: (queue: string, options?: { readonly scope?: QueueScope }) => Effect.Effect<void, SqlError | UnknownQueueError>
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
   * The limit, running count and paused flag of `queue` on this node, and in
   * `cluster` the jobs executing on every node, the cluster-wide limits and
   * the current rate window (one query).
   */
  readonly checkQueue: (queue: string) => Effect.Effect<QueueState, UnknownQueueError | SqlError>
  /** Whether this node holds the leader lease right now. */
  readonly isLeader: Effect.Effect<boolean>
  /** This node's leadership as it changes. */
  readonly leadership: Stream.Stream<boolean>
  /** Lifecycle events of the jobs this node inserts, runs and rescues, from the moment of subscribing. */
  readonly events: Stream.Stream<JobEvent>
}

/**
 * The service a running node provides.
 *
 * @since 0.1.0
 */
export class Oban extends Context.Service<Oban, ObanShape>()("effect-oban/Oban") {}

/**
 * What `Oban.layer` takes.
 *
 * @since 0.1.0
 */
export interface LayerOptions<W extends Worker.Any> extends RuntimeOptions {
  /** The workers this node can run. Jobs of other workers fail with `unknown_worker` and retry. */
  readonly workers: ReadonlyArray<W>
}

/**
 * Runs this node's queues for the layer's life: notifier, one producer per
 * queue, executor, leader election, and on the leader the stager, rescuer,
 * pruner and cron. Closing the layer's scope shuts down gracefully. Fails with
 * `MigrationError` when the prefix's schema is not migrated to this release.
 *
 * The prefix comes from `Config.layer` when it is provided to this layer;
 * the `prefix` option is an alternative to it, and a `prefix` option that
 * differs from the provided one fails with `InvalidConfigError`. The node's
 * jobs and the rest of the program get `Config.Settings` for that prefix, so
 * a worker's `Oban.insert` writes to the node's schema.
 *
 * @since 0.1.0
 */
export const layer = <W extends Worker.Any>(
  options: LayerOptions<W>
): Layer.Layer<
  Oban,
  InvalidConfigError | InvalidPrefixError | MigrationError,
  PgClient.PgClient | SqlClient | Worker.Requirements<W>
> =>
  Layer.effectContext(
    Effect.gen(function*() {
      const runtime = yield* makeRuntime<Worker.Requirements<W>>(options)
      const sql = yield* SqlClient
      const settings = { prefix: runtime.prefix, maxArgsBytes: runtime.maxArgsBytes }
      const local = <A, E>(effect: Effect.Effect<A, E, SqlClient>) =>
        effect.pipe(
          Effect.provideService(SqlClient, sql),
          Effect.provideService(Settings, settings),
          Effect.provideService(EventHub, runtime.events)
        )
      const service: ObanShape = {
        node: runtime.node,
        insert: (request) => local(insert(request)),
        insertAll: (requests) => local(insertAll(requests)),
        getJob: (id) => local(getJob(id)),
        cancelJob: (id) =>
          local(cancelJob(id)).pipe(
            Effect.tap((job) => Option.isSome(job) ? runtime.cancelLocal(id) : Effect.void)
          ),
        retryJob: (id) => local(retryJob(id)),
        deleteJob: (id) => local(deleteJob(id)),
        pauseQueue: (queue, opts) => runtime.control({ action: "pause", queue }, opts?.scope ?? "all"),
        resumeQueue: (queue, opts) => runtime.control({ action: "resume", queue }, opts?.scope ?? "all"),
        scaleQueue: (queue, limit, opts) =>
          isValidLimit(limit)
            ? runtime.control({ action: "scale", queue, limit }, opts?.scope ?? "all")
            : Effect.fail(
              new InvalidConfigError({ field: "limit", message: `limit must be an integer from 1 to 10000, got ${limit}` })
            ),
        setQueueLimits: runtime.setLimits,
        checkQueue: runtime.checkQueue,
        isLeader: runtime.isLeader,
        leadership: runtime.leadership,
        events: eventStream(runtime.events)
      }
      return Context.make(Oban, service).pipe(Context.add(Settings, settings), Context.add(EventHub, runtime.events))
    })
  )

/**
 * The exit code rule for a process that runs a node under
 * `NodeRuntime.runMain`: a shutdown by SIGTERM or SIGINT that completed
 * cleanly (jobs finished or handed back, acks written) exits 0, so systemd and
 * Kubernetes record a clean stop; every other outcome follows Effect's default
 * teardown (1 for a failure). Without it, the same clean shutdown exits 130.
 *
 * ```ts
 * Layer.launch(ObanLive).pipe(NodeRuntime.runMain({ teardown: Oban.teardown }))
 * ```
 *
 * @since 0.1.0
 */
export const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
