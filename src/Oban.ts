/**
 * The public face of effect-oban: inserting jobs, managing them, and
 * `Oban.layer`, which runs this node's queues.
 *
 * `insert` and `insertAll` need only `SqlClient`: they run on the caller's
 * connection, so inside `sql.withTransaction` the job exists exactly when the
 * transaction commits, and a rollback leaves no job and sends no notification.
 *
 * Every function here works on the prefix of `ObanConfig.Settings`: the one given
 * to `ObanConfig.layer`, the node's own inside a running node's jobs, else
 * `public`. When that schema has no tables they fail with a `MigrationError`
 * naming the prefix, not with a bare "relation does not exist".
 *
 * @since 0.1.0
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Cause from "effect/Cause"
import type * as EffectConfig from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import {
  InvalidConfigError,
  InvalidJobError,
  type InvalidResultError,
  type InvalidWorkflowError,
  type InvalidPrefixError,
  type MigrationError,
  UniqueConflictError
} from "./Errors.ts"
import type { Job } from "./Job.ts"
import { now } from "./ObanClock.ts"
import type { QueueState } from "./Producer.ts"
import { EventHub, stream as eventStream } from "./Events.ts"
import { requestArray } from "./internal/encodeRequest.ts"
import { register as registerHandle } from "./internal/nodeHandle.ts"
import { withPrefix } from "./internal/notMigrated.ts"
import { makeRuntime, type QueueScope } from "./internal/runtime.ts"
import type { QueueConfig, RuntimeOptions } from "./internal/runtimeConfig.ts"
import { configuredOver, misspeltVariables, options as envOptions } from "./internal/envOptions.ts"
import { insertRequests } from "./internal/insertRequests.ts"
import { readResult } from "./internal/recordedResult.ts"
import { holdStopSignals, ignoringStopSignals } from "./internal/stopSignals.ts"
import type { LimitsInput, Partition, RateInput } from "./internal/queueLimits.ts"
import * as Jobs from "./internal/sql/jobs.ts"
import * as JobQueries from "./Jobs.ts"
import { bulk } from "./internal/bulkAction.ts"
import * as Cluster from "./Cluster.ts"
import type * as Worker from "./Worker.ts"
import * as Workflow from "./Workflow.ts"

export type { ClusterState } from "./Producer.ts"
export type { FilterFailure, ObanShape } from "./internal/obanShape.ts"
import type { ObanShape } from "./internal/obanShape.ts"
export type { LimitsInput as QueueLimits, Partition, QueueConfig, QueueScope, QueueState, RateInput }

/**
 * What an insert returns for each request: the job, and whether it was a
 * conflict, i.e. the existing job that a unique request matched (with any
 * replaced fields updated) rather than a new one. Always `false` for jobs
 * without uniqueness.
 *
 * @since 0.1.0
 */
export type Inserted<A = unknown> = Job<A> & {
  /** Whether the request matched an existing unique job instead of inserting one. */
  readonly conflict: boolean
}

/**
 * The args type of a job request, or the union of them for a union of
 * requests: what the jobs `insertAll` returns carry.
 *
 * @since 0.1.0
 */
export type ArgsOfRequest<R> = R extends Worker.JobRequest<infer A> ? A : never

/**
 * Inserts one job. It is `available` (and wakes its queue) when due now,
 * else `scheduled`. Fails with `InvalidJobError`, writing nothing, when the
 * request is bad, and with `MigrationError` when the prefix has no tables.
 * A unique request that matches an existing job returns that job with
 * `conflict: true` (see docs/unique-jobs.md).
 *
 * @since 0.1.0
 */
export const insert = <A>(
  request: Worker.JobRequest<A>
): Effect.Effect<Inserted<A>, InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.map(insertRequests([request], false), (jobs) => jobs[0] as Inserted<A>)

/**
 * Inserts any number of jobs with one notification per queue that received
 * due jobs, all or nothing. One bad request fails the whole call with an
 * `InvalidJobError` naming its index, and nothing is written. A batch is one
 * statement up to 32 MiB of JSON; a larger one is split into several
 * statements inside one transaction (a savepoint inside the caller's). Returns
 * the jobs in the order of the requests. Unique requests are unique per row,
 * also among themselves: a later request with the key of an earlier one
 * returns the same job with `conflict: true`.
 *
 * @since 0.1.0
 */
export const insertAll = <R extends Worker.JobRequest>(
  requests: Iterable<R>
): Effect.Effect<ReadonlyArray<Inserted<ArgsOfRequest<R>>>, InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.flatMap(
    requestArray("insertAll", requests),
    (array) =>
      insertRequests(array, true) as Effect.Effect<
        ReadonlyArray<Inserted<ArgsOfRequest<R>>>,
        InvalidJobError | MigrationError | SqlError,
        SqlClient
      >
  )

/**
 * Inserts a workflow: its steps as jobs and their dependencies, all or
 * nothing, in the caller's transaction when there is one (see
 * `Workflow` and docs/workflows.md).
 *
 * @since 0.1.0
 */
export const insertWorkflow: <Steps extends string>(
  workflow: Workflow.Workflow<Steps>
) => Effect.Effect<
  Workflow.InsertedWorkflow<Steps>,
  InvalidWorkflowError | InvalidJobError | MigrationError | SqlError,
  SqlClient
> = Workflow.insert


/**
 * The job with this id, if it exists.
 *
 * @since 0.1.0
 */
export const getJob = (id: number): Effect.Effect<Option.Option<Job>, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) => Effect.map(Jobs.getJob(sql, prefix, id), Option.fromUndefinedOr))

/**
 * What job `id` recorded when it completed (its worker's `result` schema),
 * decoded by `worker`'s schema. None while the job has not completed, when
 * it completed without a result, or when it does not exist (a pruned job's
 * result goes with it). Fails with `InvalidResultError`: `"missing"` when
 * `worker` records no result or another worker ran the job, `"decode"` when
 * the stored result does not decode.
 *
 * @since 0.1.0
 */
export const getResult = <O>(
  id: number,
  worker: Workflow.ResultWorker<O>
): Effect.Effect<Option.Option<O>, InvalidResultError | MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) => readResult(sql, prefix, id, worker))

/**
 * Cancels a job that has not finished. A job that is not executing is
 * `cancelled` at once. A job executing on any node is interrupted there
 * (through a signal), and while its node answers for it (heard from within
 * its `rescueAfter`) its row stays `executing` with `cancelRequestedAt` set until that
 * attempt has ended: then it is `cancelled`, whatever the attempt ended as
 * (or at rescue, if its node died). Until then a retry leaves it alone, so
 * the job never runs beside its own attempt, and a workflow step's
 * dependents wait. A job whose node is gone or silent longer (none running,
 * say) is `cancelled` at once, unless it is a workflow step. Returns the job as the
 * cancel left it, or none when it did not exist or had already finished.
 * See docs/queues.md.
 *
 * @since 0.1.0
 */
export const cancelJob = (id: number): Effect.Effect<Option.Option<Job>, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) =>
    Effect.flatMap(now(sql), (time) => Effect.map(Jobs.cancelJob(sql, prefix, time, id), Option.fromUndefinedOr))
  )

/**
 * Makes a job that is not executing (or already available) available to run
 * now, allowing one more attempt if it had used them all. Returns the job, or
 * none when nothing changed. A unique job brought back from a state outside
 * its unique states (cancelled, discarded, completed) while a newer job holds
 * its key fails with `UniqueConflictError` and changes nothing. A workflow
 * step whose dependencies have not all completed goes back to `suspended`
 * instead (it runs once they have); a `suspended` step is not changed.
 *
 * @since 0.1.0
 */
export const retryJob = (
  id: number
): Effect.Effect<Option.Option<Job>, MigrationError | SqlError | UniqueConflictError, SqlClient> =>
  withPrefix((sql, prefix) => {
    const refused = (error: SqlError): Effect.Effect<never, SqlError | UniqueConflictError> =>
      error.reason._tag !== "UniqueViolation" ? Effect.fail(error) : Effect.flatMap(
        Jobs.uniqueKeyHolder(sql, prefix, id),
        (holder): Effect.Effect<never, SqlError | UniqueConflictError> =>
          holder === undefined ? Effect.fail(error) : Effect.fail(
            new UniqueConflictError({
              jobId: id,
              holder,
              message: `job ${id} cannot be retried: job ${holder} holds its unique key`
            })
          )
      )
    return Effect.flatMap(now(sql), (time) =>
      // Its own transaction, a savepoint inside the caller's: a refused retry leaves that usable.
      Jobs.retryJob(sql, prefix, time, id).pipe(
        Effect.map(Option.fromUndefinedOr),
        Effect.catch(refused)
      ))
  })

/**
 * Deletes a job that is not executing. Returns whether it was deleted.
 *
 * @since 0.1.0
 */
export const deleteJob = (id: number): Effect.Effect<boolean, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) => Jobs.deleteJob(sql, prefix, id))

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
 * The prefix comes from `ObanConfig.layer` when it is provided to this layer;
 * the `prefix` option is an alternative to it, and a `prefix` option that
 * differs from the provided one fails with `InvalidConfigError`. The node's
 * jobs and the rest of the program get `ObanConfig.Settings` for that prefix, so
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
      // Runs after the node's own finalizers: from the end of its shutdown until the process has exited
      // (runMain's listeners are gone by then), a repeated SIGTERM or SIGINT is ignored (see stopSignals.ts).
      yield* Effect.addFinalizer(() => Effect.sync(() => holdStopSignals(10_000)))
      const runtime = yield* makeRuntime<Worker.Requirements<W>>(options)
      const sql = plain(yield* SqlClient)
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
        insertWorkflow: (workflow) => local(insertWorkflow(workflow)),
        workflowStatus: (workflowId) => local(Workflow.status(workflowId)),
        cancelWorkflow: (workflowId) =>
          local(Workflow.cancel(workflowId)).pipe(
            Effect.tap((jobs) =>
              Effect.forEach(jobs, (job) => job.previousState === "executing" ? runtime.cancelLocal(job.id) : Effect.void, {
                discard: true
              })
            )
          ),
        retryWorkflow: (workflowId) => local(Workflow.retry(workflowId)),
        getJob: (id) => local(getJob(id)),
        getResult: (id, worker) => local(getResult(id, worker)),
        cancelJob: (id) =>
          local(cancelJob(id)).pipe(
            Effect.tap((job) => Option.isSome(job) ? runtime.cancelLocal(id) : Effect.void)
          ),
        retryJob: (id) => local(retryJob(id)),
        deleteJob: (id) => local(deleteJob(id)),
        listJobs: (opts) => local(JobQueries.list(opts)),
        countJobs: (opts) => local(JobQueries.counts(opts)),
        cancelJobs: (filter, opts) =>
          local(bulk({ _tag: "cancel" }, filter, opts, (rows) =>
            Effect.forEach(
              rows.filter((row) => row.previous_state === "executing" && row.node === runtime.node),
              (row) => runtime.cancelLocal(row.id),
              { discard: true }
            ))),
        retryJobs: (filter, opts) => local(JobQueries.retry(filter, opts)),
        deleteJobs: (filter, opts) => local(JobQueries.remove(filter, opts)),
        rescheduleJobs: (filter, at, opts) => local(JobQueries.reschedule(filter, at, opts)),
        cluster: local(Cluster.view),
        pauseQueue: (queue, opts) => runtime.control({ action: "pause", queue }, opts?.scope ?? "all"),
        resumeQueue: (queue, opts) => runtime.control({ action: "resume", queue }, opts?.scope ?? "all"),
        scaleQueue: (queue, limit, opts) => runtime.control({ action: "scale", queue, limit }, opts?.scope ?? "all"),
        setQueueLimits: runtime.setLimits,
        checkQueue: runtime.checkQueue,
        ready: runtime.ready,
        isLeader: runtime.isLeader,
        leadership: runtime.leadership,
        events: eventStream(runtime.events)
      }
      registerHandle(service, runtime.handle)
      return Context.make(Oban, service).pipe(Context.add(Settings, settings), Context.add(EventHub, runtime.events))
    })
  )

/**
 * The node's options read with Effect's `Config`, under `OBAN_`: `QUEUES`
 * (`default:10,mailers:20,media:5:paused`), `PREFIX`, `NODE`,
 * `POLL_INTERVAL`, `STAGE_INTERVAL`, `SHUTDOWN_GRACE_PERIOD`,
 * `HEARTBEAT_INTERVAL`, `RESCUE_AFTER`, `PRUNER_MAX_AGE` (durations such as
 * `5 seconds`), `DELETE_COMPLETED` and `PRUNER` (`false` turns pruning off,
 * `true` on).
 * Every variable is optional; a bad value fails with `ConfigError` naming it.
 *
 * @since 0.1.0
 */
export const config: EffectConfig.Config<RuntimeOptions> = envOptions

/**
 * `layer`, with its options read from `config` (by default `Oban.config`,
 * from the environment or the program's `ConfigProvider`) on top of the ones
 * given here: a value in the configuration wins, a value given here is the
 * default. Workers and the crontab are code, so they are given here. The
 * queues the configuration lists replace those given here, each keeping the
 * cluster-wide limits (`global`, `partition`, `rate`) given here for it.
 *
 * ```ts
 * // OBAN_QUEUES=default:10,mailers:20 OBAN_SHUTDOWN_GRACE_PERIOD="30 seconds"
 * const ObanLive = Oban.layerConfig({ workers: [SendWelcome], pollInterval: "2 seconds" })
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig = <W extends Worker.Any>(
  options: LayerOptions<W> & { readonly config?: EffectConfig.Config<RuntimeOptions> | undefined }
): Layer.Layer<
  Oban,
  EffectConfig.ConfigError | InvalidConfigError | InvalidPrefixError | MigrationError,
  PgClient.PgClient | SqlClient | Worker.Requirements<W>
> => {
  const { config: source = envOptions, ...given } = options
  return Layer.unwrap(Effect.gen(function*() {
    // Read from the environment by default: a near miss of a variable's name is worth a word.
    if (source === envOptions) for (const line of misspeltVariables(process.env)) yield* Effect.logWarning(line)
    const read = yield* source
    return layer({ ...given, ...configuredOver(given, read) })
  }))
}

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
  ignoringStopSignals(() =>
    Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  )
