/**
 * The shapes of a job request: what `worker.job(args, options)` builds and
 * `Oban.insert` checks, and the options of uniqueness. Re-exported by the
 * public `Worker` module.
 */
import type * as DateTime from "effect/DateTime"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import type * as Backoff from "../Backoff.ts"
import type { JobState } from "../Job.ts"

/**
 * The parts of a job that make up its unique key, besides the selected args.
 *
 * @since 0.1.0
 */
export type UniqueField = "worker" | "queue" | "args"

/**
 * The fields of an existing job that a conflicting insert may replace.
 * `scheduledAt` covers `scheduleIn` too.
 *
 * @since 0.1.0
 */
export type ReplaceField = "args" | "scheduledAt" | "priority" | "maxAttempts" | "tags" | "meta"

/**
 * The top-level keys of args of type `A`, for `UniqueOptions.keys`.
 *
 * @since 0.1.0
 */
export type ArgsKey<A> = [A] extends [object] ? Extract<keyof A, string> : string

/**
 * The names `UniqueOptions<A>` and `JobOptions<A>` allow in `keys` by
 * default: the keys of `A`, and none for `unknown` or `any` (options meant
 * for any worker, whose args' names they cannot know).
 *
 * @since 0.1.0
 */
export type DefaultKey<A> = unknown extends A ? never : ArgsKey<A>

/**
 * Makes a job unique: an insert whose key matches a job in one of `states`
 * returns that job (`conflict: true`) instead of inserting another. See
 * docs/unique-jobs.md.
 *
 * @since 0.1.0
 */
export interface UniqueOptions<A, K extends string = DefaultKey<A>> {
  /**
   * Which args count: top-level keys of the args as stored (an absent key
   * counts as absent; a name that is no field of a stored struct is refused),
   * or a function of the args whose JSON result counts. Default: all args.
   * Typed by the names of the args as stored in a worker's own `unique`
   * option; in its jobs' options by those and the args' own names. With
   * `UniqueOptions<unknown>` (options shared by several workers) no name can
   * be given.
   */
  readonly keys?: ReadonlyArray<K> | ((args: A) => unknown) | undefined
  /**
   * How long a key holds: a fixed window of the epoch (`floor(now / period)`),
   * or `"forever"`. Default 60 seconds, as in Oban.
   */
  readonly period?: Duration.Input | "forever" | undefined
  /**
   * The states in which an existing job blocks a new one. Must include
   * `available`, `scheduled`, `executing` and `retryable`. Default: every
   * state but `cancelled` and `discarded`.
   */
  readonly states?: ReadonlyArray<JobState> | undefined
  /** What the key is made of. Default: worker, queue and args. */
  readonly fields?: ReadonlyArray<UniqueField> | undefined
  /**
   * Fields of the existing job to overwrite with this insert's values on a
   * conflict, while that job is `available`, `scheduled`, `retryable` or
   * `suspended` (never while executing or finished). Default: none.
   */
  readonly replace?: ReadonlyArray<ReplaceField> | undefined
}

/**
 * Per-job options; each overrides the worker's default.
 *
 * @since 0.1.0
 */
export interface JobOptions<A = unknown, K extends string = DefaultKey<A>> {
  /**
   * Uniqueness for this insert, replacing the worker's whole `unique` option
   * (spread `worker.unique` to change one field); `false` turns it off.
   * `keys` are names of the args: a worker's `job` takes their names as
   * stored (a renamed field's stored name) and as decoded (refused on
   * insert when the stored args have no such field).
   */
  readonly unique?: UniqueOptions<A, K> | false | undefined
  /** The queue to run in. Default: the worker's queue, else `default`. */
  readonly queue?: string | undefined
  /** 0 (runs first) to 9. Default: the worker's priority, else 0. */
  readonly priority?: number | undefined
  /** How many attempts before the job is discarded, at least 1. Default 20. */
  readonly maxAttempts?: number | undefined
  /** Run no earlier than this long after insert, from 0 to 1,000 years. Not with `scheduledAt`. */
  readonly scheduleIn?: Duration.Input | undefined
  /** Run no earlier than this instant, in the years 0001 to 9999 (UTC). Not with `scheduleIn`. */
  readonly scheduledAt?: Date | DateTime.DateTime | undefined
  /** Labels stored with the job, for filtering: up to 1,000 of 1 to 255 characters. Added to the worker's tags. */
  readonly tags?: ReadonlyArray<string> | undefined
  /** Interrupt this job's `perform` after this long (1 ms to 1,000 years). Default: the worker's timeout. */
  readonly timeout?: Duration.Input | undefined
  /** This job's backoff between retries, as data (see `Backoff.Spec`). Default: the worker's backoff. */
  readonly backoff?: Backoff.Spec | undefined
  /** A plain JSON object stored with the job, at most 64 KiB of JSON. */
  readonly meta?: Readonly<Record<string, unknown>> | undefined
}

/**
 * A typed request to insert one job, built by `worker.job(args, options)` and
 * checked by `Oban.insert`.
 *
 * @since 0.1.0
 */
export interface JobRequest<A = unknown> {
  readonly _tag: "JobRequest"
  readonly worker: string
  readonly args: A
  /** Encodes `args` to JSON with the worker's schema. */
  readonly encodeArgs: Effect.Effect<Schema.Json, Schema.SchemaError>
  /** Decodes stored args (JSON) with the worker's schema: the args of an existing job a unique insert returns. */
  readonly decodeArgs: (stored: unknown) => Effect.Effect<A, Schema.SchemaError>
  readonly queue: string
  readonly priority: number
  readonly maxAttempts: number
  readonly tags: ReadonlyArray<string>
  readonly meta: Readonly<Record<string, unknown>>
  readonly scheduleIn: Duration.Input | undefined
  readonly scheduledAt: Date | DateTime.DateTime | undefined
  /** This job's own timeout, if the insert gave one. */
  readonly timeout: Duration.Input | undefined
  /** This job's own backoff, if the insert gave one. */
  readonly backoff: Backoff.Spec | undefined
  /**
   * Uniqueness, when the worker or the insert declares it (checked on
   * insert; a key function is applied to `args` there).
   */
  readonly unique: UniqueOptions<never> | undefined
}
