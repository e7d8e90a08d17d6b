/**
 * Jobs as stored in `oban_jobs` and as seen by workers.
 *
 * A `Job` is a decoded row: ids are plain numbers, timestamps are `Date`s and
 * `args` is the JSON that was stored. A worker's `perform` receives a
 * `Job<A>` whose `args` are already decoded with the worker's schema.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The states a job moves through. `completed`, `discarded` and `cancelled`
 * are terminal; `suspended` jobs are held back until something releases them.
 *
 * @since 0.1.0
 */
export const JobState = Schema.Literals([
  "available",
  "scheduled",
  "executing",
  "retryable",
  "completed",
  "discarded",
  "cancelled",
  "suspended"
])

/**
 * @since 0.1.0
 */
export type JobState = typeof JobState.Type

/**
 * The states after which a job never runs again (unless retried by hand).
 *
 * @since 0.1.0
 */
export const terminalStates: ReadonlyArray<JobState> = ["completed", "discarded", "cancelled"]

/**
 * How an attempt ended badly, as recorded in an `errors` entry.
 *
 * @since 0.1.0
 */
export const ErrorKind = Schema.Literals([
  "failure",
  "defect",
  "timeout",
  "cancelled",
  "discarded",
  "decode",
  "unknown_worker",
  "shutdown",
  "rescued"
])

/**
 * @since 0.1.0
 */
export type ErrorKind = typeof ErrorKind.Type

/**
 * One entry of a job's `errors` array: one per attempt that did not succeed.
 * `at` is an ISO-8601 timestamp in UTC, as `Date.toISOString` writes it (the
 * stored JSON has PostgreSQL's form, with an offset); `cause` is the
 * pretty-printed Effect cause.
 *
 * @since 0.1.0
 */
export const JobErrorEntry = Schema.Struct({
  attempt: Schema.Int,
  at: Schema.String,
  kind: ErrorKind,
  message: Schema.String,
  cause: Schema.optional(Schema.String),
  /**
   * On a `rescued` entry: whether the claim rescued was one made ahead of the job's start, which had
   * not counted its attempt (see docs/maintenance.md); absent on other entries.
   */
  claimedAhead: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 */
export type JobErrorEntry = typeof JobErrorEntry.Type

/**
 * A job row. `Args` is `unknown` (the stored JSON) until a worker decodes it.
 *
 * @since 0.1.0
 */
export interface Job<Args = unknown> {
  readonly id: number
  readonly state: JobState
  readonly queue: string
  readonly worker: string
  readonly args: Args
  /**
   * The job's own meta, and what the library keeps there: `snoozed` (how
   * many times the job snoozed), `cron` (the entry and slot of a cron job),
   * a `traceparent` under a tracing backend, `workflow` for a workflow step.
   */
  readonly meta: Readonly<Record<string, unknown>>
  readonly tags: ReadonlyArray<string>
  readonly errors: ReadonlyArray<JobErrorEntry>
  readonly attempt: number
  readonly maxAttempts: number
  readonly priority: number
  readonly insertedAt: Date
  readonly scheduledAt: Date
  readonly attemptedAt: Date | null
  readonly completedAt: Date | null
  readonly discardedAt: Date | null
  readonly cancelledAt: Date | null
  /**
   * Who ran (or runs) the latest attempt: `[node, producer id, claim id]`,
   * with a fourth element `"ahead"` when the job was claimed ahead of its
   * start (its attempt is then counted when the attempt ends). Null before
   * the first attempt.
   */
  readonly attemptedBy: ReadonlyArray<string> | null
  /**
   * When a cancel was asked for while the job executed on a node that
   * answers for it (or as a workflow step): it stays `executing` until its
   * attempt has ended, then ends `cancelled` (see `Oban.cancelJob`). It
   * stays set on the cancelled job, and a retry clears it. Null for a job
   * whose cancel was never requested that way.
   */
  readonly cancelRequestedAt: Date | null
}
