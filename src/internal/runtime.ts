/**
 * Assembles a node: notifier, executor, leader election, one producer per
 * queue, the stager and the leader's maintenance (rescuer, pruner, cron), and
 * the fiber that routes notifications to them. Everything is acquired in the
 * caller's scope in that order, so closing it releases in reverse:
 * maintenance stops first; the leases are given up in the background while
 * the producers stop and running jobs get their grace period; acks are
 * flushed, the resign is awaited, the producer rows are removed, and the
 * LISTEN connection closes last.
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { resolve as resolveSettings, Settings } from "../Config.ts"
import * as Cron from "../Cron.ts"
import { unknownPartitionKeys } from "./partitionKeys.ts"
import { unrunnableCronEntries, unrunnableCronWarning } from "./cronWorkers.ts"
import { InvalidConfigError, type InvalidPrefixError, MigrationError, UnknownQueueError } from "../Errors.ts"
import { EventHub, type Hub, makeHub } from "../Events.ts"
import * as Executor from "../Executor.ts"
import { checkNotInRunner, checkThreadModules } from "./threads/modules.ts"
import * as Migrations from "../Migrations.ts"
import * as Notifier from "../Notifier.ts"
import * as Producer from "../Producer.ts"
import type * as Worker from "../Worker.ts"
import { CurrentActivity, make as makeActivity } from "./activity.ts"
import * as Leases from "./leases.ts"
import * as CancelRouting from "./cancelRouting.ts"
import * as Liveness from "./liveness.ts"
import { startMaintenance } from "./maintenanceLoops.ts"
import { startRouter } from "./signalRouter.ts"
import { makeHandle, type NodeHandle } from "./nodeHandle.ts"
import { withStatementTimeout } from "./statementTimeout.ts"
import { removeProducers, storeQueueState } from "./sql/producers.ts"
import { commandQueue } from "./sql/cluster.ts"
import { storeQueueLimits } from "./sql/queues.ts"
import { type LimitsInput, resolveLimits } from "./queueLimits.ts"
import { checkQueueName } from "./queueName.ts"
import { migrationAdvice } from "./notMigrated.ts"
import { checkWorkers, otherQueuesNote } from "./workerChecks.ts"
import { resolve, type ResolvedConfig, type RuntimeOptions } from "./runtimeConfig.ts"
import { causeUnlessUnreached, failureLine, serverMessage } from "./serverMessage.ts"

/** Where a queue command applies: this node only, or every node of the prefix. */
export type QueueScope = "node" | "all"

export type QueueCommand =
  | { readonly action: "pause"; readonly queue: string }
  | { readonly action: "resume"; readonly queue: string }
  | { readonly action: "scale"; readonly queue: string; readonly limit: number }

export interface Runtime {
  readonly prefix: string
  readonly node: string
  readonly maxArgsBytes: number
  readonly cancelLocal: (jobId: number) => Effect.Effect<void>
  readonly control: (
    command: QueueCommand,
    scope: QueueScope
  ) => Effect.Effect<void, SqlError | UnknownQueueError | InvalidConfigError>
  /** Writes the cluster-wide limits of `queue` and tells every node. */
  readonly setLimits: (queue: string, limits: LimitsInput) => Effect.Effect<void, SqlError | InvalidConfigError>
  readonly checkQueue: (queue: string) => Effect.Effect<Producer.QueueState, UnknownQueueError | SqlError>
  readonly isLeader: Effect.Effect<boolean>
  readonly leadership: Stream.Stream<boolean>
  readonly events: Hub
  readonly ready: Effect.Effect<void>
  /** For `ObanTest.advance`. */
  readonly handle: NodeHandle
}

/** The longest a heartbeat or lease statement may take before it counts as failed. */
const livenessStatementTimeout = Duration.seconds(5)

export const isValidLimit = (limit: number) => Number.isInteger(limit) && limit >= 1 && limit <= 10_000

/** A queue's local limit as a scale command takes it: 1 to 10,000, else `InvalidConfigError` on `limit`. */
export const checkLimit = (limit: number): Effect.Effect<void, InvalidConfigError> =>
  isValidLimit(limit)
    ? Effect.void
    : Effect.fail(new InvalidConfigError({ field: "limit", message: `limit must be an integer from 1 to 10000, got ${limit}` }))

type NodeOptions = RuntimeOptions & { readonly workers: ReadonlyArray<Worker.Any> }

type Make<R> = Effect.Effect<
  Runtime,
  InvalidConfigError | InvalidPrefixError | MigrationError,
  PgClient.PgClient | SqlClient | R | Scope.Scope
>

/**
 * A node on a schema that is not migrated would only log errors: fails when
 * the schema is behind. When the database cannot be asked (not reachable, no
 * such database, a refused login), the node starts anyway and waits for it
 * as in an outage: returns what the server or driver said then.
 */
const checkMigrated = (prefix: string) =>
  Migrations.status({ prefix }).pipe(
    Effect.flatMap((status) =>
      status.current >= status.latest ? Effect.succeed(undefined) : Effect.fail(
        new MigrationError({
          prefix,
          message: `schema "${prefix}" is at migration ${status.current} of ${status.latest}, so no node starts on ` +
            `it: ${migrationAdvice(prefix)}`
        })
      )
    ),
    Effect.catchTag("SqlError", (error) => {
      const said = serverMessage(error) ?? error.message
      return Effect.as(Effect.logWarning(`could not check migrations at start-up; starting anyway: ${said}`), said)
    })
  )

export const makeRuntime = <R>(options: NodeOptions): Make<R> =>
  Effect.gen(function*() {
    const events = yield* makeHub
    const settings = yield* resolveSettings({ prefix: options.prefix, maxArgsBytes: options.maxArgsBytes })
    // Every fiber of the node, job fibers included, publishes its job events
    // here and inserts into the node's prefix.
    return yield* makeNode<R>(options, events).pipe(
      Effect.provideService(EventHub, events),
      Effect.provideService(Settings, settings),
      Effect.provideService(CurrentActivity, makeActivity())
    )
  })

const makeNode = <R>(options: NodeOptions, events: Hub): Make<R> =>
  Effect.gen(function*() {
    yield* checkNotInRunner
    const config = yield* resolve(options)
    // Annotated here, once: every fiber and finalizer of the node is made below and keeps the
    // annotations of the moment it was made, so its start and shutdown lines, its loops and its
    // jobs all say which node wrote them.
    return yield* buildNode<R>(options, config, events).pipe(Effect.annotateLogs({ node: config.node }))
  }).pipe(Effect.annotateLogs({ package: "effect-oban" }))

const buildNode = <R>(options: NodeOptions, config: ResolvedConfig, events: Hub): Make<R> =>
  Effect.gen(function*() {
    const sql = plain(yield* SqlClient)
    yield* checkWorkers(options.workers as ReadonlyArray<Executor.RunnableWorker<R>>)
    const names = new Set(options.workers.map((worker) => worker.name))
    yield* checkThreadModules(options.workers as ReadonlyArray<Executor.RunnableWorker<R>>)
    const crontab = yield* Cron.parse(config.crontab)
    const queueNames = config.queues.map((queue) => queue.name)
    for (const entry of unrunnableCronEntries(config.crontab, names, new Set(queueNames))) {
      yield* Effect.logWarning(unrunnableCronWarning(entry, config.node))
    }
    for (const warning of unknownPartitionKeys(config.queues, options.workers)) yield* Effect.logWarning(warning)
    // Start-up waits on three connections (the pool's, LISTEN, and the node's own): open them at once.
    const [notifier, liveness, unreached] = yield* Effect.all([
      Notifier.make({ prefix: config.prefix, node: config.node, connection: config.directConnection }),
      // Heartbeats and the lease run on the node's own connection, never starved by the pool.
      Liveness.make({
        node: config.node,
        direct: config.directConnection,
        statementTimeout: livenessStatementTimeout,
        lapseMillis: Liveness.lapseMillis(config.rescuer.rescueAfter, config.heartbeatInterval)
      }).pipe(
        Effect.tap((liveness) => Effect.forkScoped(liveness.warmUp))
      ),
      checkMigrated(config.prefix)
    ], { concurrency: "unbounded" })
    // This process: the lease is held per incarnation, so a namesake never renews it.
    const instance = crypto.randomUUID()
    const producers = new Map<string, Producer.Producer>()
    // Runs after the executor has finished its jobs and the heartbeats have stopped (see below).
    // Only this incarnation's rows: a process with the same node name keeps its own.
    yield* Effect.addFinalizer(() =>
      removeProducers(sql, config.prefix, Array.from(producers.values(), (producer) => producer.id)).pipe(
        withStatementTimeout({ timeout: "3 seconds", operation: "remove producer rows" }),
        Effect.catchCause((cause) => Effect.logWarning(`could not remove this node's producer rows: ${failureLine(cause)}`, ...causeUnlessUnreached(cause)))
      )
    )
    // The producers' heartbeats run here, not in the producers' scopes: closed after the executor
    // has let its jobs finish (the grace period) and flushed their outcomes, and before the rows go.
    // Until then the rows prove this node alive, so no node rescues a job still running here,
    // however long the grace period. Cancels reach the node's jobs through this scope too (below).
    const heartbeats = yield* Scope.fork(yield* Effect.scope)
    // The leases are given up in the background when shutdown begins (below); the rows go after that.
    let leasesAtShutdown: Leases.Leases | undefined
    yield* Effect.addFinalizer(() => Effect.suspend(() => leasesAtShutdown?.awaitResigned ?? Effect.void))
    // The producers stop beside the executor's grace period (their finalizer below starts it), so a
    // job gets its whole grace period from the start of shutdown however long they take on a network
    // that stopped answering. Shutdown goes on past the executor only once they have stopped: their
    // give-backs and releases are made before the leases are waited for and the rows go.
    let producersStopping: Fiber.Fiber<void> | undefined
    yield* Effect.addFinalizer(() => Effect.suspend(() => producersStopping === undefined ? Effect.void : Fiber.join(producersStopping)))
    const executor = yield* Executor.make<R>({
      sql,
      prefix: config.prefix,
      node: config.node,
      workers: options.workers as unknown as ReadonlyArray<Executor.RunnableWorker<R>>,
      shutdownGracePeriod: config.shutdownGracePeriod,
      deleteCompleted: config.deleteCompleted,
      threads: config.threads
    })

    // Each producer row, and the cron lease's row while this node holds it, carries the node's
    // crontab, so that tools without a node can list it (a scheduler-only node has no producer row).
    const crontabMeta = {
      crontab: crontab.map((item) => ({
        name: item.entry.name,
        expression: item.entry.expression,
        timezone: item.entry.timezone ?? null,
        worker: item.entry.request.worker,
        queue: item.entry.request.queue
      }))
    }

    // Cron has a lease of its own, held only by nodes with a crontab: the cluster's leader may be a
    // node without one (a web node that only inserts), and then no cron would run anywhere.
    const leases = yield* Leases.make({
      sql: liveness.sql,
      prefix: config.prefix,
      node: config.node,
      instance,
      onRound: liveness.reached,
      ...config.leader,
      crontab: crontab.length === 0 ? undefined : crontabMeta
    })
    leasesAtShutdown = leases
    const leader = leases.leader
    const cronLeader = leases.cron

    /**
     * Applies a command to this node's producer of its queue. A pause or resume `counted` (the queue's
     * count of them, as its signal carries it) is remembered, and not applied when older than one seen
     * already: a heartbeat on another connection can read the later command's state first, which the
     * older one would otherwise undo for a moment.
     */
    const apply = (command: QueueCommand, counted?: string): Effect.Effect<void> => {
      const producer = producers.get(command.queue)
      if (producer === undefined) return Effect.void
      switch (command.action) {
        case "pause":
        case "resume": {
          const set = command.action === "pause" ? producer.pause(counted) : producer.resume(counted)
          return counted === undefined
            ? set
            : Effect.flatMap(producer.notePauseCommands(counted), (stale) => stale ? Effect.void : set)
        }
        case "scale":
          return isValidLimit(command.limit) ? producer.scale(command.limit) : Effect.void
      }
    }

    const { cancelHere, stopHere } = CancelRouting.make({ sql, prefix: config.prefix, executor, producers, scope: heartbeats })

    // Signals are read until the jobs have ended, in the scope that outlives them (see `signalRouter.ts`).
    const routerStopping = yield* startRouter({
      node: config.node,
      notifier,
      producers,
      leaderWake: leader.wake,
      cronWake: cronLeader?.wake,
      apply,
      cancel: stopHere,
      scope: heartbeats
    })
    yield* Effect.addFinalizer(() => routerStopping)

    // Each producer in a scope of its own, all closed at once: stopping one may wait on the database (an
    // interrupted fetch's end, its give-backs), and on a dead network those waits would add up queue by queue.
    // Closed in a fiber of their own, joined after the executor's grace period (above). They start no job
    // from here on, also when the node is torn down before the finalizer below that says so at the start
    // of shutdown is added: a job started during or after the grace period would get none.
    const producerScopes: Array<Scope.Closeable> = []
    const stopStarting = Effect.forEach(producers.values(), (producer) => producer.stopStarting, { discard: true })
    yield* Effect.addFinalizer((exit) =>
      Effect.andThen(
        stopStarting,
        Effect.forkDetach(
          Effect.forEach(producerScopes, (scope) => Scope.close(scope, exit), { concurrency: "unbounded", discard: true })
        ).pipe(Effect.map((fiber) => {
          producersStopping = fiber
        }))
      )
    )
    for (const queue of config.queues) {
      const scope = yield* Scope.make()
      producerScopes.push(scope)
      producers.set(
        queue.name,
        yield* Producer.make({
          sql,
          prefix: config.prefix,
          node: config.node,
          queue: queue.name,
          limit: queue.limit,
          paused: queue.paused,
          limits: queue.limits,
          pollInterval: config.pollInterval,
          heartbeatInterval: config.heartbeatInterval,
          rescueAfter: config.rescuer.rescueAfter,
          liveness,
          heartbeatScope: heartbeats,
          executor,
          // The process too, so that views can tell this incarnation's rows from a dead namesake's; the heartbeat
          // interval, so that they can tell a row whose heartbeats are late (a crashed node, before its rescue); and
          // rescueAfter, so that a cancel can tell a node that no longer answers for its jobs (see `cancelSet`).
          meta: {
            ...crontabMeta,
            instance,
            heartbeatMillis: Duration.toMillis(config.heartbeatInterval),
            rescueAfterMillis: Duration.toMillis(config.rescuer.rescueAfter)
          }
        }).pipe(Scope.provide(scope))
      )
    }

    // Finalizers run in reverse: the maintenance loops below stop first, then the leases are given up
    // in the background while the producers stop and the executor lets its jobs finish.
    yield* Effect.addFinalizer(() => leases.resignInBackground)
    yield* startMaintenance({
      sql,
      config,
      leases,
      liveness,
      producers,
      executor,
      crontab,
      stop: stopHere
    })
    // Added last, so it runs first as shutdown begins: no waiting job starts after the signal, while
    // the loops above stop one by one (jobs of a few ms would go on starting from the buffers).
    yield* Effect.addFinalizer(() => stopStarting)

    const handle = yield* makeHandle({ sql, config, producers: producers.values(), crontab })

    yield* Effect.logInfo(
      `node ${config.node} running queues ${config.queues.map((q) => `${q.name}(${q.limit})`).join(", ") || "(none)"}` +
        otherQueuesNote(options.workers, new Set(config.queues.map((q) => q.name))) +
        (unreached === undefined ? "" : `; its database could not be checked at start-up (${unreached}): it keeps trying`)
    )

    const runtime: Runtime = {
      prefix: config.prefix,
      node: config.node,
      maxArgsBytes: config.maxArgsBytes,
      cancelLocal: cancelHere,
      control: (command, scope) =>
        Effect.gen(function*() {
          yield* checkQueueName("queue", command.queue)
          if (command.action === "scale") yield* checkLimit(command.limit)
          // Stored first, so that a heartbeat never reads back the old state over the new one.
          if (scope === "node") {
            if (!producers.has(command.queue)) {
              return yield* new UnknownQueueError({ queue: command.queue, node: config.node })
            }
            yield* storeQueueState(sql, config.prefix, {
              queue: command.queue,
              node: config.node,
              ...(command.action === "scale" ? { limit: command.limit } : { paused: command.action === "pause" })
            })
            return yield* apply(command)
          }
          // As `Cluster`'s commands store and signal it (a pause or resume is kept for nodes that start
          // later); this node applies it at once rather than wait for its own signal.
          // Counted as its signal will be, and not applied if a later pause or resume was seen meanwhile.
          const result = yield* commandQueue(sql, config.prefix, command, undefined)
          yield* apply(command, result.pauseCommands)
        }),
      setLimits: (queue, input) =>
        Effect.gen(function*() {
          yield* checkQueueName("queue", queue)
          const limits = yield* resolveLimits("limits", input)
          yield* storeQueueLimits(sql, config.prefix, queue, limits)
          yield* producers.get(queue)?.refreshLimits ?? Effect.void
        }),
      checkQueue: (queue) => {
        const producer = producers.get(queue)
        return producer === undefined ? Effect.fail(new UnknownQueueError({ queue, node: config.node })) : producer.check
      },
      isLeader: leader.isLeader,
      leadership: leader.changes,
      events,
      ready: Effect.forEach(producers.values(), (producer) => producer.ready, { concurrency: "unbounded", discard: true }),
      handle
    }
    return runtime
  })
