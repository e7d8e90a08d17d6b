/**
 * Maps the end of an attempt (an `Exit`, or a reason the job never ran) to
 * the row the acker writes: the next state, a delay, and an `errors` entry.
 */
import { Cause, Duration, Effect, Exit, Predicate, Result, Schema } from "effect"
import * as Backoff from "../Backoff.ts"
import type { ErrorKind, Job } from "../Job.ts"
import { Cancel, Discard, Snooze } from "../Worker.ts"
import type { AckRow } from "./sql/jobs.ts"

/** Raised inside the executor when a worker's timeout elapses. */
export class JobTimeout extends Schema.TaggedError<JobTimeout>()("ObanJobTimeout", {
  millis: Schema.Number
}) {}

/** Why the executor itself interrupted a job. */
export type StopReason = "cancel" | "shutdown"

/** What the executor needs of a worker to judge an outcome. */
export interface Policy {
  readonly backoff: Parameters<typeof Backoff.delayFor>[0]
  readonly retryable: ((error: unknown) => boolean) | undefined
}

const describe = (error: unknown): string => {
  if (Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message.length > 0) {
    const tag = Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? `${error._tag}: ` : ""
    return `${tag}${error.message}`
  }
  if (Predicate.hasProperty(error, "_tag") && typeof error._tag === "string") return error._tag
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

const row = (
  job: Job,
  state: AckRow["state"],
  options: {
    readonly delayMillis?: number
    readonly giveBack?: boolean
    readonly kind?: ErrorKind
    readonly message?: string
    readonly cause?: string
  } = {}
): AckRow => ({
  id: job.id,
  attempt: job.attempt,
  state,
  delay_ms: options.delayMillis ?? null,
  give_back: options.giveBack ?? false,
  error: options.kind === undefined ? null : {
    attempt: job.attempt,
    kind: options.kind,
    message: options.message ?? "",
    ...(options.cause === undefined ? {} : { cause: options.cause })
  }
})

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
    : Effect.map(Backoff.delayFor(policy.backoff, job.attempt, job.maxAttempts), (delay) =>
      row(job, "retryable", {
        delayMillis: Duration.toMillis(delay),
        kind,
        message,
        ...(cause === undefined ? {} : { cause })
      }))

/** Args that the worker's schema rejects can never succeed: discard at once. */
export const undecodable = (job: Job, message: string): AckRow =>
  row(job, "discarded", { kind: "decode", message: `args do not decode: ${message}` })

/** The outcome of a finished `perform`. */
export const fromExit = (
  job: Job,
  policy: Policy,
  exit: Exit.Exit<void, unknown>,
  stopped: StopReason | undefined
): Effect.Effect<AckRow> => {
  if (Exit.isSuccess(exit)) return Effect.succeed(row(job, "completed"))
  const cause = exit.cause
  const pretty = Cause.pretty(cause)
  if (Cause.hasInterruptsOnly(cause) || (stopped !== undefined && Cause.hasInterrupts(cause))) {
    if (stopped === "cancel") {
      return Effect.succeed(row(job, "cancelled", { kind: "cancelled", message: "cancelled while executing" }))
    }
    if (stopped === "shutdown") {
      return Effect.succeed(row(job, "available", {
        delayMillis: 0,
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
    if (value instanceof Snooze) {
      return Effect.succeed(row(job, "scheduled", { delayMillis: value.millis, giveBack: true }))
    }
    if (value instanceof Cancel) {
      return Effect.succeed(row(job, "cancelled", { kind: "cancelled", message: value.reason }))
    }
    if (value instanceof Discard) {
      return Effect.succeed(row(job, "discarded", { kind: "discarded", message: value.reason }))
    }
    if (value instanceof JobTimeout) {
      return failed(job, policy, "timeout", `timed out after ${value.millis} ms`, pretty)
    }
    if (policy.retryable !== undefined && !policy.retryable(value)) {
      return Effect.succeed(row(job, "discarded", { kind: "failure", message: describe(value), cause: pretty }))
    }
    return failed(job, policy, "failure", describe(value), pretty)
  }
  return failed(job, policy, "defect", describe(Cause.squash(cause)), pretty)
}
