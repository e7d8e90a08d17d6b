/**
 * One attempt of one job, from a claimed row to the outcome to write: find
 * the worker, decode the args, run `perform` (with its timeout) inside an
 * `oban.perform` span that continues the enqueuing trace, and report the
 * attempt as events and metrics. Shared by the executor and the testing kit.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { type EventKind, EventHub, publish } from "../Events.ts"
import type { Job } from "../Job.ts"
import { InvalidResultError } from "../Errors.ts"
import { maxResultBytes, type Worker } from "../Worker.ts"
import { resultMismatchMessage } from "./resultMismatch.ts"
import { timeoutKey } from "./requestFields.ts"
import { jobEvent } from "./jobEvent.ts"
import { completed, failed, fromExit, JobTimeout, type StopReason, undecodable } from "./outcome.ts"
import type { AckRow } from "./sql/acks.ts"
import type { Threads } from "./threads/load.ts"
import { parentFromMeta, recordOutcomeUnsafe, recordStartUnsafe } from "./telemetry.ts"

/** A worker as a node holds it: args are decoded here, so their type is erased. */
export type RunnableWorker<R> = Worker<string, any, any, R>

export interface Registry<R> {
  readonly node: string
  readonly workers: ReadonlyMap<string, RunnableWorker<R>>
  readonly decode: ReadonlyMap<string, (args: unknown) => Effect.Effect<unknown, Schema.SchemaError>>
  /** The result encoders of the workers that record a result. */
  readonly results: ReadonlyMap<string, (value: unknown) => Effect.Effect<Schema.Json, Schema.SchemaError>>
  /** The services every worker may need, when the fiber that runs the jobs may lack them. */
  readonly context: Context.Context<R> | undefined
  /** The node's thread pool, for the workers defined with `threads`; none: they run here. */
  readonly threads?: Threads | undefined
}

export const makeRegistry = <R>(
  node: string,
  workers: ReadonlyArray<RunnableWorker<R>>,
  context?: Context.Context<R>,
  threads?: Threads
): Registry<R> => ({
  threads,
  node,
  workers: new Map(workers.map((worker) => [worker.name, worker])),
  decode: new Map(workers.map((worker) => [worker.name, Schema.decodeUnknownEffect(worker.argsJson)] as const)),
  results: new Map(
    workers.flatMap((worker) =>
      worker.resultJson === undefined ? [] : [[worker.name, Schema.encodeUnknownEffect(worker.resultJson)] as const]
    )
  ),
  context
})

/** How an attempt ended. */
export type Outcome = Extract<EventKind, "completed" | "failed" | "snoozed" | "cancelled" | "discarded">

/**
 * What an outcome row means to events, metrics and the testing kit's counts;
 * none for a job given back at shutdown.
 */
export const outcomeOf = (row: AckRow): Outcome | undefined => {
  switch (row.state) {
    case "completed":
      return "completed"
    case "scheduled":
      return "snoozed"
    case "cancelled":
      return "cancelled"
    case "retryable":
      return "failed"
    case "discarded":
      return row.error?.kind === "discarded" || row.error?.kind === "decode" ? "discarded" : "failed"
    case "available":
      return undefined
  }
}

/**
 * Where the executor reads which fiber runs a job's `perform`: a job with a
 * timeout runs it in a fiber of its own, raced against the timer, which
 * shutdown must see into (see the executor's `inUninterruptibleRegion`).
 */
export interface PerformFiber {
  performFiber: Fiber.Fiber<unknown, unknown> | undefined
}

const perform = <R>(
  registry: Registry<R>,
  worker: RunnableWorker<R>,
  job: Job<unknown>,
  stored: Job,
  onElapsed: (timeout: JobTimeout) => void,
  performFiber: PerformFiber | undefined
) => {
  const threads = worker.threads
  if (threads !== undefined && registry.threads !== undefined) {
    // The thread decodes the stored args itself; the timeout starts once it has a thread.
    const timeout = timeoutOf(worker, job)
    return registry.threads.perform({ ...worker, threads }, stored, (call) => withTimeout(timeout, call, onElapsed))
  }
  // A node's job fibers descend from the fiber that built the node, so they have the workers'
  // services already; copying a context per job is not free. The testing kit runs jobs in the
  // caller's fiber and passes the services its layer was built with, under the caller's own.
  const context = registry.context
  // Suspended: a `perform` that throws before it returns an effect (a plain bug in its body) is a
  // defect of this attempt, recorded with its cause, not a failure of the machinery around it.
  const own = Effect.suspend(() => worker.perform(job) as Effect.Effect<void, unknown>)
  const work = context === undefined
    ? own
    : Effect.updateContext(own, (current: Context.Context<never>) => Context.merge(context, current))
  const timeout = timeoutOf(worker, job)
  // Without a timeout `perform` runs in the job's own fiber.
  if (timeout.timeout === undefined || performFiber === undefined) return withTimeout(timeout, work, onElapsed)
  return withTimeout(
    timeout,
    Effect.withFiber((fiber) => {
      performFiber.performFiber = fiber
      return work
    }),
    onElapsed
  )
}

/** The job's own timeout (given at insert), else its worker's. */
export const timeoutOf = (worker: { readonly timeout: Duration.Input | undefined }, job: Job<unknown>): { readonly timeout: Duration.Input | undefined } => {
  const own = job.meta[timeoutKey]
  return typeof own === "number" && Number.isFinite(own) && own > 0 ? { timeout: Duration.millis(own) } : worker
}

/**
 * Encodes the value `perform` succeeded with by its worker's result schema;
 * a value that does not encode, or whose JSON is larger than
 * `maxResultBytes`, is a failed attempt with `InvalidResultError`.
 */
export const recordResult = (
  job: Job,
  encode: (value: unknown) => Effect.Effect<Schema.Json, Schema.SchemaError>,
  value: unknown
): Effect.Effect<Exit.Exit<Schema.Json, InvalidResultError>> =>
  Effect.map(Effect.exit(encode(value)), (encoded) => {
    if (Exit.isFailure(encoded)) {
      return Exit.fail(new InvalidResultError({
        worker: job.worker,
        jobId: job.id,
        reason: "encode",
        message: resultMismatchMessage(encoded.cause)
      }))
    }
    const bytes = Buffer.byteLength(JSON.stringify(encoded.value) ?? "null")
    if (bytes > maxResultBytes) {
      return Exit.fail(new InvalidResultError({
        worker: job.worker,
        jobId: job.id,
        reason: "size",
        message: `the result is ${bytes} bytes of JSON, more than the limit of ${maxResultBytes}`
      }))
    }
    return Exit.succeed(encoded.value)
  })

/**
 * Applies the worker's timeout, if it has one, failing with `JobTimeout` when
 * it elapses. `onElapsed` is told the moment it does, before `work` is
 * interrupted: work inside `Effect.uninterruptible` runs on until its region
 * ends, and a shutdown meanwhile must not pass for the reason it stopped.
 */
export const withTimeout = <A, E, R>(
  worker: { readonly timeout: Duration.Input | undefined },
  work: Effect.Effect<A, E, R>,
  onElapsed?: (timeout: JobTimeout) => void
): Effect.Effect<A, E | JobTimeout, R> => {
  if (worker.timeout === undefined) return work
  const millis = Duration.toMillis(worker.timeout)
  const elapsed = Effect.andThen(
    Effect.sleep(worker.timeout),
    Effect.suspend(() => {
      const timeout = JobTimeout.after(millis)
      onElapsed?.(timeout)
      return Effect.fail(timeout)
    })
  )
  // The first to end wins and the other is interrupted (and awaited), as `Effect.timeoutOrElse` does.
  return Effect.raceFirst(work, elapsed)
}

/** The log annotations of an attempt, added to those of the fiber that runs it. */
const annotate = (context: Context.Context<never>, job: Job): Context.Context<never> =>
  Context.add(context, References.CurrentLogAnnotations, {
    ...Context.get(context, References.CurrentLogAnnotations),
    jobId: job.id,
    worker: job.worker,
    queue: job.queue,
    attempt: job.attempt
  })

/**
 * Runs one attempt of `job` and returns the outcome row. Never fails; the
 * work inside may be interrupted (timeout, cancel, shutdown), the rest is not.
 *
 * This is the executor's hot path, run once per job: the bookkeeping around
 * `perform` (clock readings, metrics, events, the span's parent and the log
 * annotations) is done synchronously on the running fiber, so an attempt costs
 * a handful of effects beyond the worker's own.
 */
export const runAttempt = <R>(
  registry: Registry<R>,
  job: Job,
  stopped: () => StopReason | undefined,
  /** Told the fiber that runs `perform` when it is not the attempt's own (a job with a timeout). */
  performFiber?: PerformFiber
): Effect.Effect<AckRow> =>
  Effect.withFiber((fiber) => {
    const clock = fiber.getRef(Clock.Clock)
    const startedAt = clock.currentTimeMillisUnsafe()
    // Events are built only when someone subscribes.
    const hub = fiber.getRef(EventHub)
    const watched = hub !== undefined && hub.subscribers > 0
    const series = recordStartUnsafe(job, startedAt, fiber.context)

    /** Ends the span, records the outcome, and publishes it when someone listens. */
    const finish = (span: Tracer.Span, row: AckRow, exit: Exit.Exit<unknown, unknown>): Effect.Effect<AckRow> => {
      const endedAt = clock.currentTimeMillisUnsafe()
      const kind = outcomeOf(row)
      span.attribute("oban.outcome", kind ?? "shutdown")
      // Error status for failed attempts only: a snooze, cancel or discard is the worker's decision.
      span.end(
        clock.currentTimeNanosUnsafe(),
        kind !== "failed" ? Exit.void : Exit.isFailure(exit) ? exit : Exit.fail(row.error?.message)
      )
      recordOutcomeUnsafe(job, kind ?? "shutdown", endedAt - startedAt, fiber.context, series)
      if (!watched || kind === undefined) return Effect.succeed(row)
      return Effect.as(
        publish([jobEvent(kind, job, job.meta["workflow"], new Date(endedAt), {
          durationMillis: endedAt - startedAt,
          ...(row.error === null ? {} : { message: row.error.message }),
          ...(kind === "failed" ? { willRetry: row.state === "retryable" } : {})
        })]),
        row
      )
    }

    /** Decodes the args and runs `perform` under `span`, with the job's log annotations. */
    const attempt = (span: Tracer.Span): Effect.Effect<AckRow> => {
      const worker = registry.workers.get(job.worker)
      const decode = registry.decode.get(job.worker)
      if (worker === undefined || decode === undefined) {
        const message = `no worker named "${job.worker}" runs on node ${registry.node}`
        return Effect.flatMap(failed(job, { backoff: undefined }, "unknown_worker", message), (row) => finish(span, row, Exit.void))
      }
      // A schema that decodes synchronously returns its `Exit`: nothing to run for it.
      const decoding = decode(job.args)
      return Exit.isExit(decoding)
        ? decoded(span, worker, decoding as Exit.Exit<unknown, Schema.SchemaError>)
        : Effect.flatMap(Effect.exit(decoding), (exit) => decoded(span, worker, exit))
    }

    /** Runs `perform` on the decoded args, and turns how it ended into the outcome row. */
    const decoded = (
      span: Tracer.Span,
      worker: RunnableWorker<R>,
      args: Exit.Exit<unknown, Schema.SchemaError>
    ): Effect.Effect<AckRow> => {
      if (Exit.isFailure(args)) return finish(span, undecodable(job, Cause.pretty(args.cause)), Exit.void)
      // Set when the job's timeout elapses, which interrupts `perform`.
      let timedOut: JobTimeout | undefined
      // Args that decode to themselves (the schema changed nothing) need no copy of the job.
      const work = Effect.updateContext(
        perform(registry, worker, args.value === job.args ? job : { ...job, args: args.value }, job, (timeout) => {
          timedOut = timeout
        }, performFiber),
        (context: Context.Context<never>) => annotate(Context.add(context, Tracer.ParentSpan, span), job)
      )
      const encode = registry.results.get(job.worker)
      return Effect.matchCauseEffect(Effect.interruptible(work), {
        onFailure: (cause) => {
          // A timeout that elapsed while `perform` could not be interrupted (`Effect.uninterruptible`), and
          // a shutdown's interruption that came before the region ended: the attempt timed out all the same.
          const exit = timedOut !== undefined && stopped() === "shutdown" && Cause.hasInterrupts(cause)
            ? Exit.fail(timedOut)
            : Exit.failCause(cause)
          return Effect.flatMap(fromExit(job, worker, exit, stopped()), (row) => finish(span, row, exit))
        },
        onSuccess: (value) => {
          if (encode === undefined) return finish(span, completed(job), Exit.void)
          return Effect.flatMap(recordResult(job, encode, value), (recorded) =>
            Exit.isFailure(recorded)
              ? Effect.flatMap(fromExit(job, worker, recorded, stopped()), (row) => finish(span, row, recorded))
              : Effect.flatMap(fromExit(job, worker, Exit.void, stopped()), (row) =>
                finish(span, row.state === "completed" ? { ...row, result: recorded.value } : row, Exit.void)))
        }
      })
    }

    const run = Effect.flatMap(performSpan(job, registry.node), attempt)
    return watched ? Effect.andThen(publish([jobEvent("started", job, job.meta["workflow"], new Date(startedAt))]), run) : run
  })

/** The `oban.perform` span of an attempt: a child of the span that enqueued the job, if any. */
const performSpan = (job: Job, node: string): Effect.Effect<Tracer.Span> =>
  Effect.makeSpan("oban.perform", {
    kind: "consumer",
    parent: parentFromMeta(job.meta),
    attributes: {
      "oban.job.id": job.id,
      "oban.job.worker": job.worker,
      "oban.job.queue": job.queue,
      "oban.job.attempt": job.attempt,
      "oban.node": node
    }
  })
