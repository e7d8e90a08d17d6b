/**
 * The testing kit's `performJob`: one attempt of a worker's `perform` on a
 * job built from args, without a database, judged as a node judges it (the
 * args' JSON round trip, the timeout, the result schema, `retryable`).
 */
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { InvalidJobError, InvalidResultError } from "../Errors.ts"
import type { Job } from "../Job.ts"
import { Cancel, Discard, Snooze, type Worker } from "../Worker.ts"
import { parseJson } from "./jsonParse.ts"
import { fromExit, JobTimeout, type Policy } from "./outcome.ts"
import { recordResult, timeoutOf, withTimeout } from "./perform.ts"
import { checkMillis, Problem, timeoutKey } from "./requestFields.ts"

/**
 * How an attempt ended, as `performJob` reports it. A worker with a `result`
 * schema completes with the `value` a dependent would read (after its JSON
 * round trip); a value that does not encode by the schema is an
 * `InvalidResult`, a failed attempt on a node. A failed attempt (`Failed`,
 * `InvalidResult`, `TimedOut`, `Crashed`) says whether a node would retry
 * it (`willRetry`: attempts left, and the worker's `retryable` does not say
 * no to a failure).
 *
 * @since 0.1.0
 */
export type PerformResult<E, O = unknown> =
  | { readonly _tag: "Completed"; readonly value?: O }
  | { readonly _tag: "Failed"; readonly error: E; readonly willRetry: boolean }
  | { readonly _tag: "InvalidResult"; readonly error: InvalidResultError; readonly willRetry: boolean }
  | { readonly _tag: "Crashed"; readonly defect: unknown; readonly willRetry: boolean }
  | { readonly _tag: "TimedOut"; readonly millis: number; readonly willRetry: boolean }
  | { readonly _tag: "Snoozed"; readonly millis: number }
  | { readonly _tag: "Cancelled"; readonly reason: string }
  | { readonly _tag: "Discarded"; readonly reason: string }

/** The args as a stored job carries them: encoded, through JSON text, and decoded again. */
const roundTrip = <A>(worker: Worker<string, A, unknown, unknown, unknown>, args: A) =>
  Effect.gen(function*() {
    const json = yield* Schema.encodeEffect(worker.argsJson)(args)
    return yield* Schema.decodeUnknownEffect(worker.argsJson)(parseJson(JSON.stringify(json)))
  }).pipe(Effect.mapError((error) => new InvalidJobError({ worker: worker.name, field: "args", message: error.message })))

/**
 * Runs `worker.perform` once with a job built from `args`, without a
 * database. The args make the same JSON round trip as a real job. The job's
 * own `timeout` (as `worker.job(args, { timeout })` gives it), else the
 * worker's, applies (on `TestClock` it elapses with `TestClock.adjust`).
 *
 * @since 0.1.0
 */
export const performJob = <A, E, R, O>(
  worker: Worker<string, A, E, R, O>,
  args: A,
  options: {
    readonly attempt?: number
    readonly maxAttempts?: number
    readonly id?: number
    readonly meta?: Readonly<Record<string, unknown>>
    readonly tags?: ReadonlyArray<string>
    /** The job's own timeout, checked as an insert checks it; kept in its meta as a stored job keeps it. */
    readonly timeout?: Duration.Input
  } = {}
): Effect.Effect<PerformResult<E, O>, InvalidJobError, R> =>
  Effect.gen(function*() {
    const decoded = yield* roundTrip(worker as Worker<string, A, unknown, unknown, unknown>, args)
    const timeout = yield* ownTimeout(worker.name, options.timeout)
    const at = new Date(yield* Effect.clockWith((clock) => clock.currentTimeMillis))
    const job: Job<A> = {
      id: options.id ?? 1,
      state: "executing",
      queue: worker.queue,
      worker: worker.name,
      args: decoded,
      meta: timeout === undefined ? options.meta ?? {} : { ...options.meta, [timeoutKey]: timeout },
      tags: options.tags ?? worker.tags,
      errors: [],
      attempt: options.attempt ?? 1,
      maxAttempts: options.maxAttempts ?? worker.maxAttempts,
      priority: worker.priority,
      insertedAt: at,
      scheduledAt: at,
      attemptedAt: at,
      completedAt: null,
      discardedAt: null,
      cancelledAt: null,
      attemptedBy: ["oban-test", "perform"],
      cancelRequestedAt: null
    }
    const performed = yield* Effect.exit(withTimeout(timeoutOf(worker, job), Effect.suspend(() => worker.perform(job))))
    const { exit, recorded } = yield* resultOf(worker, job, performed)
    if (Exit.isSuccess(exit)) {
      return worker.resultJson === undefined ? { _tag: "Completed" } : { _tag: "Completed", value: exit.value as O }
    }
    // A failed attempt as the node would write it: retryable unless attempts are used up or `retryable` said no.
    const willRetry = Effect.map(fromExit(job, worker as Policy, exit, undefined), (row) => row.state === "retryable")
    const error = Cause.findError(exit.cause)
    if (Result.isFailure(error)) return { _tag: "Crashed", defect: Cause.squash(exit.cause), willRetry: yield* willRetry }
    const value: unknown = error.success
    if (value instanceof JobTimeout) return { _tag: "TimedOut", millis: value.millis, willRetry: yield* willRetry }
    // A snooze that is no finite duration is a failed attempt on a node (a defect, retried).
    if (value instanceof Snooze && Number.isFinite(value.millis)) return { _tag: "Snoozed", millis: value.millis } as const
    if (value instanceof Snooze) {
      const defect = new Error(`Worker.snooze needs a finite duration, got ${value.millis}`)
      return { _tag: "Crashed", defect, willRetry: yield* willRetry }
    }
    if (value instanceof Cancel) return { _tag: "Cancelled", reason: value.reason } as const
    if (value instanceof Discard) return { _tag: "Discarded", reason: value.reason } as const
    // Only the result's own check is `InvalidResult`: a worker may fail with an InvalidResultError of its
    // own (a workflow step passing on `Workflow.results`' error), which is its `E`.
    return recorded
      ? { _tag: "InvalidResult", error: value as InvalidResultError, willRetry: yield* willRetry }
      : { _tag: "Failed", error: value as E, willRetry: yield* willRetry }
  })

/** The job's own timeout in milliseconds, refused as an insert refuses it. */
const ownTimeout = (worker: string, input: Duration.Input | undefined): Effect.Effect<number | undefined, InvalidJobError> =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(undefined)
    try {
      return Effect.succeed(checkMillis("timeout", "timeout", input, 1))
    } catch (problem) {
      if (!(problem instanceof Problem)) throw problem
      return Effect.fail(new InvalidJobError({ worker, field: "timeout", message: problem.message }))
    }
  })

/**
 * The attempt's exit with its result recorded as a node records it: a value
 * that does not encode by the worker's result schema (or is too large) fails
 * with `InvalidResultError` (`recorded`: the failure is the recording's); one
 * that does is read back from its JSON.
 */
const resultOf = <A, E, R, O>(
  worker: Worker<string, A, E, R, O>,
  job: Job<A>,
  exit: Exit.Exit<O, unknown>
): Effect.Effect<{ readonly exit: Exit.Exit<unknown, unknown>; readonly recorded: boolean }> =>
  Effect.gen(function*() {
    const codec = worker.resultJson
    if (codec === undefined || Exit.isFailure(exit)) return { exit, recorded: false }
    const encoded = yield* recordResult(job, Schema.encodeUnknownEffect(codec), exit.value)
    if (Exit.isFailure(encoded)) return { exit: encoded, recorded: true }
    const read = yield* Effect.exit(Schema.decodeUnknownEffect(codec)(parseJson(JSON.stringify(encoded.value))))
    // JSON the schema wrote and cannot read back: a dependent's read would fail the same way.
    return Exit.isSuccess(read) ? { exit: read, recorded: false } : {
      exit: Exit.fail(new InvalidResultError({ worker: job.worker, jobId: job.id, reason: "decode", message: Cause.pretty(read.cause) })),
      recorded: true
    }
  })
