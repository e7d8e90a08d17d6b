/**
 * Maps the end of an attempt (an `Exit`, or a reason the job never ran) to
 * the row the acker writes: the next state, a delay, and an `errors` entry.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Backoff from "../Backoff.ts"
import type { ErrorKind, Job } from "../Job.ts"
import { Cancel, Discard, Snooze } from "../Worker.ts"
import { clean } from "./errorText.ts"
import { prettyCause } from "./prettyCause.ts"
import type { AckRow } from "./sql/acks.ts"
import { unmessagedText } from "./errorFields.ts"
import { withServerMessage } from "./serverMessage.ts"

/** Raised inside the executor when a worker's timeout elapses; its message is what the errors entry's cause shows. */
export class JobTimeout extends Schema.TaggedError<JobTimeout>()("ObanJobTimeout", {
  millis: Schema.Number,
  message: Schema.String
}) {
  static after(millis: number): JobTimeout {
    return new JobTimeout({ millis, message: `the job's timeout of ${millis} ms elapsed; perform was interrupted` })
  }
}

/**
 * An attempt that ended before the worker's `perform` began: a thread
 * worker's job still waiting for a free thread when the node shut down. Its
 * job goes back to its queue with the attempt given back and no errors entry,
 * like a job claimed ahead and never started.
 */
export class NotStarted extends Schema.TaggedError<NotStarted>()("ObanNotStarted", {
  reason: Schema.String
}) {}

/** Why the executor itself interrupted a job. */
export type StopReason = "cancel" | "shutdown"

/** What the executor needs of a worker to judge an outcome. */
export interface Policy {
  readonly backoff: Parameters<typeof Backoff.delayFor>[0]
  readonly retryable: ((error: unknown) => boolean) | undefined
}

const describe = (error: unknown): string => {
  const tag = Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? error._tag : undefined
  const hasMessage = Predicate.hasProperty(error, "message") && typeof error.message === "string" &&
    error.message.length > 0
  if (hasMessage) return `${tag === undefined ? "" : `${tag}: `}${withServerMessage(error, error.message as string)}`
  if (tag !== undefined) {
    const text = unmessagedText(error as object)
    return text === undefined ? tag : `${tag}: ${text}`
  }
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

/** The claim a job was started under (see `startAttempt`); none for a job that was never claimed. */
const claimOf = (job: Job): string => job.attemptedBy?.[2] ?? ""

/** The options of a row that has none (a completion, every job of a busy queue): shared, not made per row. */
const noOptions = {}

/**
 * An outcome row. Error text is cleaned and bounded (see `errorText.ts`)
 * and a delay bounded to `[0, Backoff.maxDelay]`, so that nothing a worker
 * says can make the database refuse the row.
 */
const row = (
  job: Job,
  state: AckRow["state"],
  options: {
    readonly delayMillis?: number
    readonly giveBack?: boolean
    readonly snoozed?: boolean
    readonly kind?: ErrorKind
    readonly message?: string
    readonly cause?: string
  } = noOptions
): AckRow => ({
  id: job.id,
  attempt: job.attempt,
  claim: claimOf(job),
  state,
  delay_ms: options.delayMillis === undefined ? null : Backoff.boundMillis(options.delayMillis) ?? 0,
  give_back: options.giveBack ?? false,
  ...(options.snoozed === true ? { snoozed: true } : {}),
  error: options.kind === undefined ? null : {
    attempt: job.attempt,
    kind: options.kind,
    message: clean(options.message ?? ""),
    ...(options.cause === undefined ? {} : { cause: clean(options.cause) })
  }
})

/** The outcome of an attempt that succeeded (`fromExit` of a success). */
export const completed = (job: Job): AckRow => row(job, "completed")

/** The delay before the next attempt: the job's own backoff (given at insert), else its worker's. */
const delayAfter = (job: Job, policy: Pick<Policy, "backoff">): Effect.Effect<Duration.Duration> => {
  const own = Backoff.storedSpecOf(job.meta)
  return own === undefined
    ? Backoff.delayFor(policy.backoff, job.attempt, job.maxAttempts)
    : Backoff.specDelay(own, job.attempt)
}

/** A failed attempt: retry after the backoff while attempts remain, else discard. */
export const failed = (
  job: Job,
  policy: Pick<Policy, "backoff">,
  kind: ErrorKind,
  message: string,
  cause?: string
): Effect.Effect<AckRow> =>
  job.attempt >= job.maxAttempts
    ? Effect.succeed(row(job, "discarded", { kind, message, ...(cause === undefined ? {} : { cause }) }))
    : Effect.map(delayAfter(job, policy), (delay) =>
      row(job, "retryable", {
        delayMillis: Duration.toMillis(delay),
        kind,
        message,
        ...(cause === undefined ? {} : { cause })
      }))

/**
 * An attempt whose outcome could not be worked out: something around
 * `perform` died (a bug of ours, or a value of the worker's that breaks when
 * read). Logged as an error, and a failed attempt (a `defect`), retried while
 * attempts remain after the job's own backoff if it was inserted with one,
 * else the default (not the worker's, which may be what broke), so that the
 * job neither stays `executing` until a rescue nor runs the same broken path
 * to find its delay. The node's executor and the testing kit both write it.
 */
export const undetermined = (job: Job, cause: Cause.Cause<unknown>): Effect.Effect<AckRow> => {
  const pretty = prettyCause(cause)
  return Effect.andThen(
    Effect.logError(`job ${job.id}: could not determine its outcome; recording a defect`, pretty),
    failed(job, { backoff: undefined }, "defect", "the attempt's outcome could not be determined", pretty)
  )
}

/** Args that the worker's schema rejects can never succeed: discard at once. */
export const undecodable = (job: Job, message: string): AckRow =>
  row(job, "discarded", { kind: "decode", message: `args do not decode: ${message}` })

/**
 * A snooze runs the job again after `millis` without using an attempt. A
 * negative delay means now and a longer one than `Backoff.maxDelay` is cut
 * to it; a delay that is not finite would run the job again at once,
 * forever, so it counts as a failed attempt (a `defect`) instead.
 */
const snoozed = (job: Job, policy: Policy, millis: number): Effect.Effect<AckRow> =>
  Number.isFinite(millis)
    ? Effect.succeed(row(job, "scheduled", { delayMillis: millis, giveBack: true, snoozed: true }))
    : failed(
      job,
      policy,
      "defect",
      `Worker.snooze needs a finite duration, got ${millis}; the attempt counts as failed (use Worker.cancel or Worker.discard to stop a job)`
    )

/** The outcome of a finished `perform`. */
export const fromExit = (
  job: Job,
  policy: Policy,
  exit: Exit.Exit<void, unknown>,
  stopped: StopReason | undefined
): Effect.Effect<AckRow> => {
  if (Exit.isSuccess(exit)) return Effect.succeed(completed(job))
  const cause = exit.cause
  const pretty = Cause.pretty(cause)
  if (Cause.hasInterruptsOnly(cause) || (stopped !== undefined && Cause.hasInterrupts(cause))) {
    if (stopped === "cancel") {
      return Effect.succeed(row(job, "cancelled", { kind: "cancelled", message: "cancelled while executing" }))
    }
    if (stopped === "shutdown") {
      // It keeps its scheduled time, so it keeps its place in the queue (ahead of jobs inserted after it).
      return Effect.succeed(row(job, "available", {
        giveBack: true,
        kind: "shutdown",
        message: "interrupted by node shutdown after the grace period; attempt given back"
      }))
    }
    return failed(job, policy, "defect", "the job's fiber was interrupted", pretty)
  }
  const error = Cause.findError(cause)
  if (Result.isSuccess(error)) {
    const value = error.success
    if (value instanceof Snooze) return snoozed(job, policy, value.millis)
    if (value instanceof Cancel) {
      return Effect.succeed(row(job, "cancelled", { kind: "cancelled", message: value.reason }))
    }
    if (value instanceof Discard) {
      return Effect.succeed(row(job, "discarded", { kind: "discarded", message: value.reason }))
    }
    if (value instanceof NotStarted) return Effect.succeed(row(job, "available", { giveBack: true }))
    if (value instanceof JobTimeout) {
      return failed(job, policy, "timeout", `timed out after ${value.millis} ms`, pretty)
    }
    if (policy.retryable !== undefined) {
      const retryable = judge(policy.retryable, value)
      if (typeof retryable !== "boolean") {
        // The worker's own callback is broken: a defect of the attempt, retried with backoff.
        const message = `the worker's retryable threw (${describe(retryable.thrown)}) on ${describe(value)}`
        return failed(job, policy, "defect", message, pretty)
      }
      if (!retryable) return Effect.succeed(row(job, "discarded", { kind: "failure", message: describe(value), cause: pretty }))
    }
    return failed(job, policy, "failure", describe(value), pretty)
  }
  return failed(job, policy, "defect", describe(Cause.squash(cause)), pretty)
}

/** The worker's `retryable` answer for `error`, or what it threw. */
const judge = (retryable: (error: unknown) => boolean, error: unknown): boolean | { readonly thrown: unknown } => {
  try {
    return Boolean(retryable(error))
  } catch (thrown) {
    return { thrown }
  }
}
