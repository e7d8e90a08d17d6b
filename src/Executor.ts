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
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { Job } from "./Job.ts"
import * as Acker from "./internal/acker.ts"
import { logAttempt } from "./internal/attemptLog.ts"
import { CurrentActivity, watchSleeps } from "./internal/activity.ts"
import { type StopReason, undetermined } from "./internal/outcome.ts"
import { prettyCause } from "./internal/prettyCause.ts"
import { makeRegistry, type PerformFiber, runAttempt, type RunnableWorker } from "./internal/perform.ts"
import { realSleep } from "./internal/statementTimeout.ts"
import * as Threads from "./internal/threads/load.ts"
import type { ThreadPoolOptions } from "./internal/threads/pool.ts"
import { idList } from "./internal/idList.ts"

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
  /**
   * Starts each job in its own fiber, synchronously (the producer's hot
   * path); `onDone` is called, synchronously, with the job when its attempt
   * has ended and its outcome was handed to the acker. It must not throw.
   */
  readonly startUnsafe: (jobs: ReadonlyArray<Job>, onDone: (job: Job) => void) => void
  /** Interrupts the job if it runs here; it ends `cancelled`. */
  readonly cancel: (jobId: number) => Effect.Effect<boolean>
  /** Jobs running on this node. */
  readonly running: Effect.Effect<number>
  /** Whether an outcome of the job was handed to the acker and is not yet written. */
  readonly outcomePendingUnsafe: (jobId: number) => boolean
  /** How many outcomes were handed to the acker and are not yet written (all queues of the node). */
  readonly unwrittenOutcomesUnsafe: () => number
  /** Completes once fewer than `bound` outcomes are unwritten. */
  readonly unwrittenBelow: (bound: number) => Effect.Effect<void>
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
  /** Delete jobs as they complete instead of marking them `completed`. Default false. */
  readonly deleteCompleted?: boolean | undefined
  /** The pool for the workers defined with `threads`; started only if there are any. */
  readonly threads?: ThreadPoolOptions | undefined
}

/**
 * Waits up to `grace` for the running jobs to finish, and says whether they
 * did. It must not be interruptible: under `NodeRuntime.runMain` the scope is
 * closed by a fiber that SIGTERM has already interrupted, and an interruptible
 * wait would end at once, cutting every job's grace period to nothing. So it
 * polls the job count, which works the same on an interrupted fiber.
 *
 * It polls in real time, and the grace period ends when it has passed on
 * either clock: a node on `TestClock` whose test ends while a job does real
 * work (a query) waits for that job in real time, where a wait on the
 * virtual clock, which nothing moves any more, would hang the test for good;
 * and a test that moves the virtual clock past the grace period ends it.
 */
const awaitDrained = (runs: ReadonlyMap<number, unknown>, grace: Duration.Duration) =>
  Effect.gen(function*() {
    const graceMillis = Duration.toMillis(grace)
    const virtualDeadline = (yield* Clock.currentTimeMillis) + graceMillis
    const realDeadline = performance.now() + graceMillis
    while (runs.size > 0) {
      const left = Math.min(virtualDeadline - (yield* Clock.currentTimeMillis), realDeadline - performance.now())
      if (left <= 0) return false
      yield* realSleep(Math.min(left, drainPollMillis))
    }
    return true
  }).pipe(Effect.uninterruptible)

const drainPollMillis = 20

/**
 * Whether `fiber` is inside an uninterruptible region now. Effect keeps this
 * on the fiber, outside its public interface: where it is not there, the
 * fiber counts as interruptible (interrupted at once, as it always was).
 */
const uninterruptibleNow = (fiber: Fiber.Fiber<unknown, unknown> | undefined): boolean =>
  fiber !== undefined && fiber.pollUnsafe() === undefined &&
  (fiber as { readonly interruptible?: unknown }).interruptible === false

/**
 * Whether a job is inside an uninterruptible region now: its own fiber, or
 * the one that runs its `perform` (a job with a timeout runs it in a fiber
 * raced against the timer, which interrupting the job's fiber reaches).
 */
const inUninterruptibleRegion = (run: Run): boolean => uninterruptibleNow(run.fiber) || uninterruptibleNow(run.performFiber)

/**
 * Interrupts each job's fiber once it is interruptible, at once if it is, and
 * waits for all of them to end. A job inside an uninterruptible region as the
 * grace period ends is interrupted as it leaves the region, not before: an
 * interrupt sent inside would end the fiber as interrupted when the region
 * ends, dropping what the region did, so a job whose last step is such a
 * region (a commit, say) and that ran it to its end would be given back and
 * run a second time. Left to leave it, such a job completes. A job still in
 * such a region `regionWaitMillis` later (a long step, or one region after
 * another, which a poll never sees between) is interrupted all the same, as
 * it always was: it stops at the end of the region it is in. Polls in real
 * time, uninterruptible, as `awaitDrained` does.
 */
const interruptWhenInterruptible = (runs: ReadonlyArray<Run>) =>
  Effect.gen(function*() {
    let left = runs.filter((run) => run.fiber !== undefined)
    const fibers = left.map((run) => run.fiber!)
    const giveUpAt = performance.now() + regionWaitMillis
    while (left.length > 0) {
      left = left.filter((run) => run.fiber!.pollUnsafe() === undefined)
      const waitedLongEnough = performance.now() >= giveUpAt
      const sent = waitedLongEnough ? left : left.filter((run) => !inUninterruptibleRegion(run))
      for (const run of sent) run.fiber!.interruptUnsafe()
      left = left.filter((run) => !sent.includes(run))
      if (left.length === 0) break
      yield* realSleep(interruptPollMillis)
    }
    yield* Fiber.awaitAll(fibers)
  }).pipe(Effect.uninterruptible)

const interruptPollMillis = 5

/** How long after the grace period a job inside an uninterruptible region is left to leave it before the interrupt. */
const regionWaitMillis = 5_000

/** How long interrupted jobs may take to end before the node says it is still waiting for them. */
const stuckAfterInterruptMillis = 2_000

/** The warning for jobs that have not ended `stuckAfterInterruptMillis` after the grace period ended. */
const stillRunning = (runs: ReadonlyMap<number, unknown>) =>
  Effect.suspend(() =>
    runs.size === 0 ? Effect.void : Effect.logWarning(
      `shutdown: ${runs.size} interrupted job(s) still running after ${stuckAfterInterruptMillis / 1000} s ` +
        `(ids ${idList(Array.from(runs.keys()))}): each is inside an uninterruptible region (its own ` +
        "Effect.uninterruptible or finalizer, or a database statement whose end the driver awaits after " +
        "cancelling it, which on a connection that stopped answering lasts until the system gives the " +
        "connection up), which the node waits for, however long it lasts: a job whose region is its last step " +
        "and ends within 5 s of the grace period completes; any other stops when its region ends and is given " +
        "back; the process stops once they end"
    )
  )

/** One attempt running here: its fiber, and why the executor stopped it, if it did. */
interface Run extends PerformFiber {
  fiber: Fiber.Fiber<void> | undefined
  stop: StopReason | undefined
}

/** Job fibers start uninterruptible: a cancel or shutdown interrupts only the worker's `perform`. */
const uninterruptible = { uninterruptible: true } as const

/** How long jobs start synchronously in one turn of the event loop; later ones go through the scheduler. */
const syncStartMillis = 5

/**
 * How long shutdown waits for the outcomes not yet written: as long as the
 * grace period, at least 5 s and at most 15 s (one outcome write's own
 * deadline). A flush on a healthy database takes far less; on one that
 * stopped answering the wait is bounded whatever the grace period.
 */
const flushDeadline = (grace: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.max(grace, Duration.seconds(5)), Duration.seconds(15))

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
        Effect.timeoutOption(flushDeadline(options.shutdownGracePeriod)),
        Effect.flatMap((done) =>
          done._tag === "Some"
            ? Effect.void
            : Effect.logWarning("shutdown: some acks could not be written; those jobs stay executing for the rescuer")
        )
      )
    )
    // Every running attempt, by job id. Job fibers are forked with the executor's context (not
    // the caller's), and the finalizer below waits for them and interrupts what is left.
    const runs = new Map<number, Run>()
    // Built here, so that it closes after the finalizer below has let the jobs finish or interrupted
    // them (terminating their threads), and before the acks flush.
    const threads = options.workers.some((worker) => worker.threads !== undefined)
      ? yield* Threads.load(options.threads ?? { size: 1 }, options.workers)
      : undefined
    const registry = makeRegistry(options.node, options.workers, undefined, threads)
    // Flattened once: each job adds a few services to its fiber's context (span, log annotations,
    // metric attributes), and adding to a context that holds many layers of additions copies it.
    const activity = yield* CurrentActivity
    // On TestClock, jobs sleep on a clock that tells ObanTest.advance when their sleeps end.
    const context = Context.add(yield* Effect.context<never>(), Clock.Clock, watchSleeps(yield* Clock.Clock, activity))
    const fork = Effect.runForkWith(Context.makeUnsafe<never>(new Map(context.mapUnsafe)))

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // Jobs waiting for a thread have not started: they go back now rather than use the grace period.
        if (threads !== undefined) yield* threads.stopWaiting
        if (runs.size === 0) return
        yield* Effect.logInfo(
          `shutdown: waiting up to ${Duration.format(options.shutdownGracePeriod)} for ${runs.size} job(s)`
        )
        if (yield* awaitDrained(runs, options.shutdownGracePeriod)) return
        const left = Array.from(runs.values())
        // A job already told to stop (cancelled, still inside an uninterruptible region) keeps its reason.
        for (const run of left) run.stop ??= "shutdown"
        yield* Effect.logWarning(`shutdown: interrupting ${left.length} job(s) after the grace period`)
        // An interrupted job ends once it leaves any uninterruptible region it is in, however long that
        // takes; the node waits for it. Said once, so that a stop that takes longer than the grace period
        // has its reason in the log (an orchestrator's kill timeout may end the process first).
        const stuck = yield* Effect.forkDetach(Effect.andThen(realSleep(stuckAfterInterruptMillis), stillRunning(runs)))
        yield* interruptWhenInterruptible(left)
        yield* Fiber.interrupt(stuck)
      })
    )

    /**
     * One attempt, from start to acked outcome, uninterruptible but for the
     * worker's own `perform`: a cancel or shutdown that comes first (even
     * while a deferred start waits for its turn) interrupts `perform` at once,
     * and the outcome is still written and `onDone` still called.
     */
    const attempt = (job: Job, run: Run, deferred: boolean, onDone: (job: Job) => void): Effect.Effect<void> => {
      const ended = (): void => {
        // A later run of the same job (claimed again after a rescue) owns the entry now.
        if (runs.get(job.id) === run) runs.delete(job.id)
        activity.jobEndedUnsafe()
        onDone(job)
      }
      // Nothing in the attempt should fail; if it does, say so loudly and record a failed attempt (a
      // defect: see `undetermined` for its delay). Only if even that cannot be queued is the job
      // left executing, for this node's reconciler or a rescue to put back.
      const failed = (cause: Cause.Cause<unknown>): Effect.Effect<void> =>
        undetermined(job, cause).pipe(
          Effect.flatMap((row) => Effect.sync(() => acker.ackUnsafe(row))),
          Effect.catchCause((again) => Effect.logError(`job ${job.id}: could not record a defect either`, prettyCause(again))),
          Effect.ensuring(Effect.sync(ended))
        )
      const attempt = runAttempt(registry, job, () => run.stop, run)
      // The fiber is forked uninterruptible (see `startUnsafe`): only `perform` inside is not.
      return Effect.matchCauseEffect(deferred ? Effect.andThen(Effect.yieldNow, attempt) : attempt, {
        onFailure: failed,
        onSuccess: (row) => {
          try {
            acker.ackUnsafe(row)
          } catch (defect) {
            return failed(Cause.die(defect))
          }
          ended()
          return row.error === null ? Effect.void : logAttempt(job, row)
        }
      })
    }

    // A fiber starts running at once, and a job that never waits ends inside `fork`, where its
    // `onDone` may start the next jobs: those wait here for the outer loop, so the stack stays flat.
    // Jobs start synchronously for `syncStartMillis` of each turn of the event loop; after that
    // they start on the scheduler, so a run of jobs that never wait (no-ops, or CPU-bound work)
    // cannot hold up heartbeats, the producer's next claim or the database's replies for long.
    // Jobs to start, in order, and the callback each ends with (two arrays: no pair per job).
    const toStart: Array<Job> = []
    const toStartDone: Array<(job: Job) => void> = []
    let starting = false
    let turnStartedAt: number | undefined
    const newTurn = () => {
      turnStartedAt = undefined
    }
    const startUnsafe = (jobs: ReadonlyArray<Job>, onDone: (job: Job) => void): void => {
      for (const job of jobs) {
        toStart.push(job)
        toStartDone.push(onDone)
      }
      if (starting) return
      starting = true
      let next = 0
      try {
        // Jobs added while these start (by their `onDone`) are started by this loop too.
        for (; next < toStart.length; next++) {
          const job = toStart[next]!
          const now = performance.now()
          if (turnStartedAt === undefined) {
            turnStartedAt = now
            // Not a microtask: those run after every callback, and one turn of the loop runs many.
            setImmediate(newTurn)
          }
          // A run of the same job still here was claimed before a rescue: it is not ours any more.
          runs.get(job.id)?.fiber?.interruptUnsafe()
          const run: Run = { fiber: undefined, stop: undefined, performFiber: undefined }
          runs.set(job.id, run)
          activity.jobStartedUnsafe()
          const fiber = fork(attempt(job, run, now - turnStartedAt >= syncStartMillis, toStartDone[next]!), uninterruptible)
          run.fiber = fiber
        }
      } finally {
        // Every job when all started; after a throw, the ones after the job that threw wait for the next call.
        const taken = Math.min(next + 1, toStart.length)
        toStart.splice(0, taken)
        toStartDone.splice(0, taken)
        starting = false
      }
    }

    return {
      startUnsafe,
      cancel: (jobId) =>
        Effect.suspend(() => {
          const run = runs.get(jobId)
          if (run?.fiber === undefined) return Effect.succeed(false)
          run.stop = "cancel"
          return Effect.as(Fiber.interrupt(run.fiber), true)
        }),
      running: Effect.sync(() => runs.size),
      outcomePendingUnsafe: acker.pendingUnsafe,
      unwrittenOutcomesUnsafe: acker.pendingCountUnsafe,
      unwrittenBelow: acker.below,
      owned: Effect.sync(() => {
        const running = Array.from(runs.keys())
        const unwritten = acker.pendingIdsUnsafe()
        return new Set([...running, ...unwritten])
      })
    }
  })
