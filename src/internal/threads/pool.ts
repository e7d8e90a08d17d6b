/**
 * A node's pool of worker threads, shared by all its thread workers, on
 * `effect/workers` through `effect/rpc`: each slot is one thread behind its
 * own RPC client (a `RpcClient.layerProtocolWorker` of size 1), and an
 * `effect` `Pool` of slots hands one slot to each attempt. An attempt that is interrupted
 * (timeout, cancel, shutdown) terminates its slot's thread and invalidates
 * the slot, so CPU-bound code stops for real and the pool spawns a
 * replacement; the other threads are untouched.
 *
 * Each slot also holds its thread's `Events` stream, opened when the slot
 * starts: a fiber of the slot replays what arrives there into the attempt
 * that runs on it (`replay.ts`), and the attempt replays what is left when
 * its call ends, before it returns.
 */
import * as NodeWorker from "@effect/platform-node/NodeWorker"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Pool from "effect/Pool"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as References from "effect/References"
import * as Result from "effect/Result"
import * as RpcClient from "effect/rpc/RpcClient"
import { RpcClientError } from "effect/rpc/RpcClientError"
import * as Schema from "effect/Schema"
import * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as ChildProcess from "node:child_process"
import * as WorkerThreads from "node:worker_threads"
import type { Job } from "../../Job.ts"
import { NotStarted } from "../outcome.ts"
import type { ThreadEvent } from "./events.ts"
import { childExecArgv } from "./childArgv.ts"
import { preloadWorkers } from "./preload.ts"
import { defaultNice, lowerProcess, threadData } from "./priority.ts"
import { fromJob, type PerformError, ThreadRpcs } from "./protocol.ts"
import { endOpenSpans, makeSink, replay, type Sink, withheldAcks } from "./replay.ts"

export interface ThreadPoolOptions {
  /** Threads in the pool. */
  readonly size: number
  /** Passed to each thread, e.g. `{ maxOldGenerationSizeMb: 64 }`. */
  readonly resourceLimits?: WorkerThreads.ResourceLimits | undefined
  /**
   * `"process"` runs each slot in a child process (`fork` with an IPC
   * channel) instead of a thread: isolation from native crashes and leaks, at
   * the cost of a process per slot. Default `"thread"`.
   */
  readonly isolation?: "thread" | "process" | undefined
  /** Replace a thread after it has run this many attempts (for leaks). Default: never. */
  readonly recycleAfter?: number | undefined
  /**
   * The nice value of the threads or processes (0-19; see `priority.ts`):
   * higher runs them after the node's own loop. A node already above it
   * keeps them at its own. Default `defaultNice`.
   */
  readonly nice?: number | undefined
  /**
   * The modules of the thread workers (URLs), imported by each thread as it
   * starts, before its first attempt (see `Preload`).
   */
  readonly modules?: ReadonlyArray<string> | undefined
  /**
   * How long a new thread's import of `modules` may take before the thread
   * takes jobs anyway (with a warning). Default `defaultPreloadMillis` (30 s);
   * shorter in tests.
   */
  readonly preloadMillis?: number | undefined
}

// The built package has runner.js next to pool.js (tsc rewrites imports, not this URL).
const runnerUrl = new URL(import.meta.url.endsWith(".ts") ? "./runner.ts" : "./runner.js", import.meta.url)

/**
 * The thread of an attempt stopped on its own: an uncaught exception, out of
 * memory, `process.exit`. The attempt fails with this defect; the slot is
 * replaced.
 */
export class ThreadCrash extends Schema.TaggedError<ThreadCrash>()("ObanThreadCrash", {
  message: Schema.String
}) {}

/** How a child process ended: the tail of its stderr, and the signal that killed it, if one did. */
interface ProcessEnd {
  readonly stderr: string
  readonly signal: NodeJS.Signals | null
}

const crashOf = (error: RpcClientError, end: ProcessEnd | undefined): ThreadCrash => {
  const cause = error.reason.cause
  const detail = Predicate.hasProperty(cause, "message") && typeof cause.message === "string"
    ? `${Predicate.hasProperty(cause, "code") ? `${String(cause.code)}: ` : ""}${cause.message}`
    : error.reason.message
  // A process killed by a signal (the kernel's OOM killer sends SIGKILL) has no exit code to show.
  const killed = end?.signal ? ` (killed by ${end.signal})` : ""
  const said = end === undefined ? undefined : lastErrorLine(end.stderr)
  return new ThreadCrash({
    message: `the worker ${end === undefined ? "thread" : "process"} stopped: ${detail}${killed}${
      said === undefined ? "" : `: ${said}`
    }`
  })
}

/** The line of a process's stderr that names its error: the last `...Error: ...` or `FATAL ERROR` line. */
const lastErrorLine = (stderr: string): string | undefined =>
  stderr.split("\n").map((line) => line.trim()).findLast((line) => /^(\w*Error\b|FATAL ERROR)/.test(line))

const describeError = (error: unknown): string =>
  Predicate.hasProperty(error, "message") && typeof error.message === "string"
    ? `${Predicate.hasProperty(error, "code") ? `${String(error.code)}: ` : ""}${error.message}`
    : String(error)

/** How much of a child process's stderr a slot keeps, for the errors entry of a crash. */
const stderrTailBytes = 4096

const makeSlot = (options: ThreadPoolOptions) =>
  Effect.gen(function*() {
    let thread: WorkerThreads.Worker | ChildProcess.ChildProcess | undefined
    // Set when the pool stops the thread itself, so that only crashes are logged.
    let stopping = false
    let stderr = ""
    let exitSignal: NodeJS.Signals | null = null
    let closed: Promise<void> = Promise.resolve()
    const context = yield* Effect.context<never>()
    // A crash while no attempt runs (a stray timer throwing after its job) is seen by nobody else.
    const warn = (message: string) => {
      if (!stopping) Effect.runForkWith(context)(Effect.logWarning(message))
    }
    const heapMb = options.resourceLimits?.maxOldGenerationSizeMb
    const nice = options.nice ?? defaultNice
    const spawn = () => {
      stderr = ""
      exitSignal = null
      if (options.isolation === "process") {
        const child = ChildProcess.fork(runnerUrl, [], {
          execArgv: childExecArgv(process.execArgv, heapMb),
          serialization: "advanced",
          stdio: ["inherit", "inherit", "pipe", "ipc"]
        })
        // Passed on to the node's stderr, and its tail kept to say why the process died.
        child.stderr?.on("data", (chunk: Buffer) => {
          process.stderr.write(chunk)
          stderr = (stderr + chunk.toString("utf8")).slice(-stderrTailBytes)
        })
        closed = new Promise((resolve) => child.once("close", () => resolve()))
        child.once("exit", (code, signal) => {
          exitSignal = signal
          if (code !== 0) warn(`a worker process exited (code ${code}, signal ${signal})`)
        })
        lowerProcess(child.pid, nice)
        thread = child
      } else {
        const worker = new WorkerThreads.Worker(runnerUrl, {
          workerData: threadData(nice),
          ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits })
        })
        let errored = false
        worker.on("error", (error) => {
          errored = true
          warn(`a worker thread stopped: ${describeError(error)}`)
        })
        // `process.exit` in a thread emits no "error", only "exit" with its code.
        worker.once("exit", (code) => {
          if (!errored) warn(`a worker thread exited with code ${code}`)
        })
        thread = worker
      }
      return thread
    }
    const scope = yield* Effect.scope
    const services = yield* Layer.buildWithScope(
      // Two requests at a time on the one thread: the `Events` stream, and an attempt's `Perform`.
      RpcClient.layerProtocolWorker({ size: 1, concurrency: 2 }).pipe(Layer.provide(NodeWorker.layer(spawn))),
      scope
    )
    const acks = withheldAcks(Context.get(services, RpcClient.Protocol))
    // No RPC spans: the job's span crosses in the payload, and the thread's spans are replayed under it.
    const client = yield* RpcClient.make(ThreadRpcs, { disableTracing: true }).pipe(
      Effect.provide(Context.add(services, RpcClient.Protocol, acks.protocol))
    )
    const events = yield* client.Events(undefined, { asQueue: true, streamBufferSize: Number.MAX_SAFE_INTEGER })
    // Does not wait for the thread to exit: V8 stops its JavaScript at once, and the
    // slot's scope (closed on invalidation) waits for the exit event.
    const terminate = Effect.sync(() => {
      stopping = true
      if (thread === undefined) return
      if ("terminate" in thread) void thread.terminate()
      else thread.kill("SIGKILL")
    })
    // Closing the slot terminates its thread: a thread whose `threads.layer` holds sockets (a
    // database pool) would not exit when asked, and the platform's close would wait 5 s for it
    // (forever on a TestClock). Its services' finalizers do not run either way (services.ts).
    yield* Effect.addFinalizer(() => terminate)
    // Handed out once the thread has imported its workers (see preload.ts); closed meanwhile (a
    // shutdown), the slot terminates its thread first, as above.
    const preloadCrash = yield* preloadWorkers(
      client,
      options.modules ?? [],
      options.isolation ?? "thread",
      options.preloadMillis
    )
    /**
     * How a crashed child process ended: what it wrote to stderr, once its
     * pipes closed (at most 250 ms later), and its signal; none for a thread,
     * whose error says it all.
     */
    const crashOutput: Effect.Effect<ProcessEnd | undefined> = options.isolation === "process"
      ? Effect.promise(() => closed).pipe(
        Effect.timeoutOption("250 millis"),
        Effect.map(() => ({ stderr, signal: exitSignal }))
      )
      : Effect.succeed(undefined)
    const slot: Slot = {
      client,
      terminate,
      crashOutput,
      events,
      releaseAcks: acks.release,
      preloadCrash,
      attempts: 0,
      sink: undefined
    }
    yield* Effect.forkScoped(replayEvents(slot))
    return slot
  })

interface Slot {
  readonly client: RpcClient.FromGroup<typeof ThreadRpcs, RpcClientError>
  readonly terminate: Effect.Effect<void>
  readonly crashOutput: Effect.Effect<ProcessEnd | undefined>
  readonly events: Queue.Dequeue<ThreadEvent, unknown>
  /** Acknowledges the chunks of `events` taken so far, once they are replayed (`withheldAcks`). */
  readonly releaseAcks: Effect.Effect<void>
  /** The thread stopped while importing the workers: its one attempt fails with this, as a crash. */
  readonly preloadCrash: RpcClientError | undefined
  attempts: number
  /** The attempt running on the slot, for its events; the last one once it ended. */
  sink: Sink | undefined
}

/**
 * Replays the thread's events as they arrive, until the thread's stream
 * ends. A batch is taken and replayed in one step (the fiber does not yield
 * between), so once an attempt's call returned, what it sent is either
 * replayed or still in the queue, for `drainEvents`. Then the chunks taken
 * are acknowledged: every ack held back was sent for a chunk already in the
 * queue, which this step emptied.
 */
const replayEvents = (slot: Slot): Effect.Effect<void> =>
  Effect.whileLoop({
    while: () => true,
    body: () =>
      Effect.flatMap(Queue.takeAll(slot.events), (batch) => {
        if (slot.sink !== undefined) replay(slot.sink, batch)
        return slot.releaseAcks
      }),
    step: () => undefined
  }).pipe(
    Effect.provideService(Scheduler.PreventSchedulerYield, true),
    // The stream fails when its thread stops; the slot is being replaced then.
    Effect.catchCause(() => Effect.void)
  )

/**
 * Replays what the attempt's thread sent and the slot's fiber has not
 * replayed yet; `stopped` when the thread was stopped under the attempt, whose unended spans end now.
 */
const drainEvents = (slot: Slot, sink: Sink, stopped: boolean): Effect.Effect<void> => {
  const left = Queue.sizeUnsafe(slot.events) === 0
    ? Effect.void
    : Effect.matchCause(Queue.clear(slot.events), {
      onFailure: () => undefined,
      onSuccess: (batch) => replay(sink, batch)
    }).pipe(Effect.andThen(slot.releaseAcks))
  return stopped ? Effect.andThen(left, Effect.sync(() => endOpenSpans(sink))) : left
}

/** What the pool needs to know of a worker: its name and the module that exports it. */
export interface ThreadTarget {
  readonly name: string
  readonly module: URL
}

export const make = (options: ThreadPoolOptions) =>
  Effect.gen(function*() {
    // A scope of the pool's own, closed where the caller's would run this one's finalizers: the
    // caller's scope is marked closed as soon as it starts closing, and from then on its finalizers
    // (the executor's drain, interrupting attempts) could not fork the releases and replacements
    // below into it: they would never run, and an interrupted attempt would wait for them forever.
    const poolScope = yield* Scope.fork(yield* Effect.scope)
    const pool = yield* Scope.provide(Pool.make({ acquire: makeSlot(options), size: options.size }), poolScope)
    // Releases an invalidated slot in the background, so the attempt does not wait for its thread
    // to exit. Started at once and uninterruptible: a release that the pool's own closing
    // interrupted before it ran would leave the slot leased, and its thread respawning.
    const release = (lease: Scope.Closeable) =>
      Effect.asVoid(
        Effect.forkIn(Effect.uninterruptible(Scope.close(lease, Exit.void)), poolScope, { startImmediately: true })
      )
    /**
     * Runs one attempt on a thread. `around` wraps the call once the thread
     * is leased (the job's timeout, so that waiting for a thread does not use
     * it up). When the call is interrupted (timeout, cancel, shutdown) or its
     * thread crashed, the thread is terminated and its slot invalidated
     * before this returns; the slot's teardown (waiting for the thread's
     * exit) runs in the background, and the pool spawns a replacement.
     */
    const perform = <E = ThreadCallError>(
      target: ThreadTarget,
      job: Job<Schema.Json>,
      around: (call: Effect.Effect<Schema.Json, ThreadCallError>) => Effect.Effect<Schema.Json, E> = identity
    ) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Scope.make(), (lease) =>
          restore(leaseSlot(lease)).pipe(
            Effect.onError(() => Scope.close(lease, Exit.void)),
            Effect.flatMap((slot) => Effect.withFiber((fiber) => {
              // Set when the call itself was interrupted, by `around`'s timeout as much as from outside.
              let stopped = false
              const sink = makeSink(fiber.context)
              slot.sink = sink
              const call = (
                slot.preloadCrash === undefined
                  ? slot.client.Perform(requestOf(target, job, fiber.context))
                  : Effect.fail(slot.preloadCrash)
              ).pipe(
                Effect.onInterrupt(() => Effect.sync(() => (stopped = true)))
              )
              return Effect.flatMap(Effect.exit(restore(around(call))), (exit) => {
                const crashed = Exit.isFailure(exit) ? clientErrorOf(exit.cause) : undefined
                if (Exit.isSuccess(exit) || (crashed === undefined && !stopped && !Exit.hasInterrupts(exit))) {
                  slot.attempts++
                  // A worn-out thread closes gracefully (it is idle now) and the pool starts another.
                  const recycle = options.recycleAfter !== undefined && slot.attempts >= options.recycleAfter
                  return drainEvents(slot, sink, false).pipe(
                    Effect.andThen(
                      recycle ? Effect.andThen(Pool.invalidate(pool, slot), release(lease)) : Scope.close(lease, Exit.void)
                    ),
                    Effect.andThen(exit)
                  )
                }
                return drainEvents(slot, sink, true).pipe(
                  Effect.andThen(slot.terminate),
                  Effect.andThen(Pool.invalidate(pool, slot)),
                  Effect.andThen(release(lease)),
                  Effect.andThen(
                    crashed === undefined
                      ? exit
                      : Effect.flatMap(slot.crashOutput, (end) => Effect.die(crashOf(crashed, end)))
                  )
                )
              })
            }))
          )
        )
      )
    // Completed when the node starts shutting down: attempts still waiting for a thread then end
    // at once as not started, and none starts any more.
    const closing = Deferred.makeUnsafe<void>()
    const notStarted = new NotStarted({ reason: "the node shut down before a worker thread was free" })
    /** A thread for an attempt, unless the node shuts down first. */
    const leaseSlot = (lease: Scope.Scope) =>
      Deferred.isDoneUnsafe(closing)
        ? Effect.fail(notStarted)
        : Effect.raceFirst(
          Scope.provide(Pool.get(pool), lease),
          Effect.andThen(Deferred.await(closing), Effect.fail(notStarted))
        )
    /**
     * Ends the attempts still waiting for a thread, as not started (their
     * jobs go back to the queue with their attempt given back and no errors
     * entry), and refuses new ones: for a shutdown, which lets only the jobs
     * that run on a thread use the grace period.
     */
    const stopWaiting = Effect.asVoid(Deferred.succeed(closing, undefined))
    return { perform, pool, stopWaiting }
  })

const identity = <A>(call: A): any => call

/** How a thread's call can fail: the worker's outcome, or the thread's end. */
export type ThreadCallError = typeof PerformError.Type | RpcClientError

/** The call for an attempt, with the span and minimum log level of the attempt's fiber. */
const requestOf = (target: ThreadTarget, job: Job<Schema.Json>, context: Context.Context<never>) => {
  const span = Context.getOrUndefined(context, Tracer.ParentSpan)
  const minimumLogLevel = Context.get(context, References.MinimumLogLevel)
  return {
    module: target.module.href,
    job: fromJob({ ...job, worker: target.name }),
    args: job.args,
    ...(span === undefined ? {} : { span: { traceId: span.traceId, spanId: span.spanId, sampled: span.sampled } }),
    // Effect's default needs no word.
    ...(minimumLogLevel === "Info" ? {} : { minimumLogLevel })
  }
}

const clientErrorOf = (cause: Cause.Cause<unknown>): RpcClientError | undefined => {
  const error = Cause.findError(cause)
  return Result.isSuccess(error) && error.success instanceof RpcClientError ? error.success : undefined
}

export type ThreadPool = Effect.Success<ReturnType<typeof make>>
