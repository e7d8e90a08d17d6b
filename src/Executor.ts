/**
 * Runs jobs: each in its own fiber, keyed by job id. Decodes the args with the
 * worker's schema, applies the worker's timeout, turns the `Exit` into an
 * outcome inside an uninterruptible region (so an outcome is always recorded,
 * whatever interrupts the work) and hands it to the acker.
 *
 * Closing the executor's scope is the graceful part of shutdown: running jobs
 * get the grace period to finish, then what is left is interrupted and put
 * back to `available` with its attempt given back, and the acks are flushed.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Duration, Effect, FiberMap, type Scope } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { Job } from "./Job.ts"
import * as Acker from "./internal/acker.ts"
import type { StopReason } from "./internal/outcome.ts"
import { makeRegistry, runAttempt, type RunnableWorker } from "./internal/perform.ts"

/**
 * A worker as the executor holds it: args are decoded here, so their type is
 * erased; `R` is what the node provides to every worker.
 *
 * @since 0.1.0
 */
export type { RunnableWorker } from "./internal/perform.ts"

/**
 * @since 0.1.0
 */
export interface ExecutorShape {
  /** Starts `job` in its own fiber; `onDone` runs when the attempt has ended. */
  readonly execute: (job: Job, onDone: Effect.Effect<void>) => Effect.Effect<void>
  /** Interrupts the job if it runs here; it ends `cancelled`. */
  readonly cancel: (jobId: number) => Effect.Effect<boolean>
  /** Jobs running on this node. */
  readonly running: Effect.Effect<number>
  /**
   * The jobs this node still answers for: running, or finished with an
   * outcome not yet written. Read the running ones first, so a job that
   * moves from one to the other between the two reads is in either.
   */
  readonly owned: Effect.Effect<ReadonlySet<number>>
}

/**
 * @since 0.1.0
 */
export interface Options<R> {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
  readonly workers: ReadonlyArray<RunnableWorker<R>>
  readonly shutdownGracePeriod: Duration.Duration
}

/**
 * Waits up to `grace` for the running jobs to finish, and says whether they
 * did. It must not be interruptible: under `NodeRuntime.runMain` the scope is
 * closed by a fiber that SIGTERM has already interrupted, and an interruptible
 * wait would end at once, cutting every job's grace period to nothing. So it
 * polls the job count, which works the same on an interrupted fiber and on
 * `TestClock`.
 */
const awaitDrained = (fibers: FiberMap.FiberMap<number, void, never>, grace: Duration.Duration) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(grace)
    while ((yield* FiberMap.size(fibers)) > 0) {
      const left = deadline - (yield* Clock.currentTimeMillis)
      if (left <= 0) return false
      yield* Effect.sleep(Math.min(left, drainPollMillis))
    }
    return true
  }).pipe(Effect.uninterruptible)

const drainPollMillis = 20

/**
 * An executor for the scope's life.
 *
 * @since 0.1.0
 */
export const make = <R>(options: Options<R>): Effect.Effect<ExecutorShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const acker = yield* Acker.make(options)
    // Flush after the jobs below are done (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      acker.flush.pipe(
        Effect.timeoutOption(Duration.max(options.shutdownGracePeriod, Duration.seconds(5))),
        Effect.flatMap((done) =>
          done._tag === "Some"
            ? Effect.void
            : Effect.logWarning("shutdown: some acks could not be written; those jobs stay executing for the rescuer")
        )
      )
    )
    const fibers = yield* FiberMap.make<number, void, never>()
    const stops = new Map<number, StopReason>()
    // Job fibers are forked from the producers, which run with the workers' services.
    const registry = makeRegistry(options.node, options.workers)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const left = yield* FiberMap.size(fibers)
        if (left === 0) return
        yield* Effect.logInfo(`shutdown: waiting up to ${Duration.format(options.shutdownGracePeriod)} for ${left} job(s)`)
        if (yield* awaitDrained(fibers, options.shutdownGracePeriod)) return
        for (const key of yield* Effect.sync(() => Array.from(fibers))) stops.set(key[0], "shutdown")
        yield* Effect.logWarning(`shutdown: interrupting ${yield* FiberMap.size(fibers)} job(s) after the grace period`)
        yield* FiberMap.clear(fibers)
      })
    )

    const run = (job: Job, onDone: Effect.Effect<void>) =>
      runAttempt(registry, job, () => stops.get(job.id)).pipe(
        Effect.flatMap(acker.ack),
        Effect.catchCause((cause) =>
          // Nothing above should fail; if it does, say so loudly, and leave the
          // job executing for the rescuer rather than guess its outcome.
          Effect.logError(`job ${job.id}: could not determine its outcome`, Cause.pretty(cause))
        ),
        Effect.ensuring(Effect.sync(() => stops.delete(job.id))),
        Effect.ensuring(onDone),
        Effect.uninterruptible
      )

    return {
      execute: (job, onDone) => Effect.asVoid(FiberMap.run(fibers, job.id, run(job, onDone), { startImmediately: true })),
      cancel: (jobId) =>
        Effect.gen(function*() {
          if (!(yield* FiberMap.has(fibers, jobId))) return false
          stops.set(jobId, "cancel")
          yield* FiberMap.remove(fibers, jobId)
          return true
        }),
      running: FiberMap.size(fibers),
      owned: Effect.gen(function*() {
        const running = Array.from(fibers, ([id]) => id)
        const unwritten = yield* acker.pendingIds
        return new Set([...running, ...unwritten])
      })
    }
  })
