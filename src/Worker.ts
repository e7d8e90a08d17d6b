/**
 * Workers: named, Schema-typed units of background work.
 *
 * ```ts
 * const SendWelcome = Worker.make("SendWelcome", {
 *   args: Schema.Struct({ userId: Schema.String }),
 *   queue: "mailers",
 *   maxAttempts: 5,
 *   perform: (job) => Mailer.send(job.args.userId)
 * })
 *
 * yield* Oban.insert(SendWelcome.job({ userId: "u1" }, { scheduleIn: "5 minutes" }))
 * ```
 *
 * @since 0.1.0
 */
import type * as Schedule from "effect/Schedule"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { pathToFileURL } from "node:url"
import { unknownKey } from "./internal/optionKeys.ts"
import { refuseAtStart, workerOptionKeys } from "./internal/workerChecks.ts"
import { makeJobBuilder } from "./internal/workerJob.ts"
import { withThreadServices } from "./internal/threads/services.ts"
import type { Job } from "./Job.ts"

export type { ArgsKey, DefaultKey, JobOptions, JobRequest, ReplaceField, UniqueField, UniqueOptions } from "./internal/jobRequest.ts"
import type { ArgsKey, JobOptions, JobRequest, UniqueOptions } from "./internal/jobRequest.ts"
import { registerStoredFields } from "./internal/storedFields.ts"

/**
 * How a worker is defined.
 *
 * @since 0.1.0
 */
export interface WorkerOptions<A, I, E, R, O = void> {
  /** The schema of the job's args: encoded to JSON on insert, decoded before `perform`. */
  readonly args: Schema.Codec<A, I>
  readonly queue?: string | undefined
  readonly priority?: number | undefined
  readonly maxAttempts?: number | undefined
  /** Interrupt `perform` after this long (its finalizers run); recorded as a timeout. */
  readonly timeout?: Duration.Input | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  /** Makes the worker's jobs unique by default (see `UniqueOptions`; `keys` names the args' fields as stored). */
  readonly unique?: UniqueOptions<A, ArgsKey<I>> | undefined
  /**
   * The delay before retry n, replayed from the start for each attempt. The
   * schedule's input is the attempt number. Default: Oban's exponential backoff.
   */
  readonly backoff?: Schedule.Schedule<unknown, number> | undefined
  /**
   * The schema of the errors `perform` fails with, for example
   * `Schema.Union([MailError, BadAddress])`. Optional; when given, it is the
   * worker's error type, whatever the order of the other options (without
   * it, `retryable` written before `perform` needs its parameter annotated).
   */
  readonly errors?: Schema.Codec<E, unknown> | undefined
  /**
   * Return false for errors that should discard the job instead of retrying
   * it. Its error type is the one `perform` fails with (never inferred from
   * here).
   */
  readonly retryable?: ((error: NoInfer<E>) => boolean) | undefined
  /**
   * The schema of the value `perform` succeeds with, to record it with the
   * job (`oban_jobs.result`, JSON, at most `maxResultBytes`), where the
   * job's dependents in a workflow read it typed (`Workflow.results`). A
   * value that does not encode fails the attempt with `InvalidResultError`.
   * Without it, the value is not stored.
   */
  readonly result?: Schema.Codec<O, unknown> | undefined
  /**
   * Run `perform` on the node's pool of worker threads instead of the main
   * thread (see docs/workers.md, "Threads"). `module` is the URL of the
   * module that exports this worker, usually `import.meta.url`; each thread
   * imports it. Args cross as stored (JSON) and are decoded in the thread;
   * the result and the `errors` cross as their JSON encodings. Services do
   * not cross: a `perform` that needs some takes them from `layer`, built in
   * each thread.
   */
  readonly threads?: ThreadsOptions<R> | undefined
  /** The work. Its typed failures become retries; defects are recorded as crashes. */
  readonly perform: (job: Job<A>) => Effect.Effect<O, E, R>
}

/**
 * Where a thread worker is defined: the module that exports it, loaded by
 * each thread of the node's pool, and the services its `perform` needs.
 * `layer` is built in each thread on the first job there that needs it and
 * kept for the thread's life (a database pool in it serves every job the
 * thread runs); workers that share one layer value share its build. A build
 * that fails fails the attempt as a defect, and the next attempt builds
 * again. The node itself never builds it, so a thread worker needs nothing
 * from the node's context.
 *
 * @since 0.1.0
 */
export type ThreadsOptions<R = never> = [R] extends [never] ? {
    readonly module: string | URL
    readonly layer?: Layer.Layer<never, unknown, never> | undefined
  }
  : {
    readonly module: string | URL
    /** Required: `perform` needs these services, which do not cross from the node. */
    readonly layer: Layer.Layer<NoInfer<R>, unknown, never>
  }

/**
 * A worker definition. `job(args, options)` builds insert requests for it.
 * `K` names the args' fields as stored (for `unique.keys`).
 *
 * @since 0.1.0
 */
export interface Worker<
  out Name extends string,
  in out A,
  E = never,
  out R = never,
  out O = unknown,
  out K extends string = string
> {
  readonly name: Name
  readonly argsSchema: Schema.Codec<A, unknown>
  /** The JSON codec derived from the args schema, used on insert and before perform. */
  readonly argsJson: Schema.Codec<A, Schema.Json>
  readonly queue: string
  readonly priority: number
  readonly maxAttempts: number
  readonly timeout: Duration.Input | undefined
  readonly tags: ReadonlyArray<string>
  /** The default uniqueness of the worker's jobs (its `keys` are names of the args as stored). */
  readonly unique: UniqueOptions<A, K> | undefined
  readonly backoff: Schedule.Schedule<unknown, number> | undefined
  // Method-shaped (its parameter is bivariant), and `E` has no variance mark: so a worker that fails
  // with nothing (E = never) still fits `Worker<string, any, any, any, any>`, a list of any workers.
  readonly retryable: { check(error: E): boolean }["check"] | undefined
  /** The schema of the recorded result, if the worker records one. */
  readonly result: Schema.Codec<O, unknown> | undefined
  /** The JSON codec derived from the result schema. */
  readonly resultJson: Schema.Codec<O, Schema.Json> | undefined
  /** The JSON codec of the typed failures, when the worker declares `errors`. */
  readonly errorsJson: Schema.Codec<E, Schema.Json> | undefined
  /** The module a thread imports to run this worker, when it runs on threads. */
  readonly threads: { readonly module: URL } | undefined
  readonly perform: (job: Job<A>) => Effect.Effect<O, E, R>
  // A method, so that a worker whose `K` names its fields is one whose `K` is any string too. The
  // args' own names are taken too, so that options typed `JobOptions<A>` fit (as before `K`).
  job(args: A, options?: JobOptions<A, K | ArgsKey<A>>): JobRequest<A>
}

/**
 * Any worker, for lists of workers of different types.
 *
 * @since 0.1.0
 */
export interface Any {
  readonly name: string
  readonly queue: string
  readonly perform: (job: Job<never>) => Effect.Effect<unknown, unknown, unknown>
}

/**
 * The services a worker (or a union of workers) needs to run.
 *
 * @since 0.1.0
 */
export type Requirements<W> = W extends { readonly perform: (job: never) => Effect.Effect<unknown, unknown, infer R> } ? R
  : never

/**
 * The default number of attempts, as in Oban.
 *
 * @since 0.1.0
 */
export const defaultMaxAttempts = 20

/**
 * The largest recorded result, in bytes of JSON (like the default limit on args).
 *
 * @since 0.1.0
 */
export const maxResultBytes = 1024 * 1024

/**
 * The default queue.
 *
 * @since 0.1.0
 */
export const defaultQueue = "default"

/**
 * Defines a worker.
 *
 * @since 0.1.0
 */
export function make<const Name extends string, A, I, E = never, R = never, O = void>(
  name: Name,
  options: WorkerOptions<A, I, E, R, O> & { readonly threads: ThreadsOptions<R> }
): Worker<Name, A, E, never, O, ArgsKey<I>>
export function make<const Name extends string, A, I, E = never, R = never, O = void>(
  name: Name,
  options: WorkerOptions<A, I, E, R, O>
): Worker<Name, A, E, R, O, ArgsKey<I>>
export function make<const Name extends string, A, I, E = never, R = never, O = void>(
  name: Name,
  options: WorkerOptions<A, I, E, R, O>
): Worker<Name, A, E, R, O, ArgsKey<I>> {
  const argsJson = Schema.toCodecJson(options.args)
  const encode = Schema.encodeEffect(argsJson)
  const decode = Schema.decodeUnknownEffect(argsJson)
  registerStoredFields(decode, argsJson)
  const queue = options.queue ?? defaultQueue
  const priority = options.priority ?? 0
  const maxAttempts = options.maxAttempts ?? defaultMaxAttempts
  const tags = options.tags ?? []
  const job = makeJobBuilder<A, ArgsKey<I>>({ worker: name, encode, decode, queue, priority, maxAttempts, tags, unique: options.unique })
  const threads = options.threads as
    | { readonly module: string | URL; readonly layer?: Layer.Layer<R, unknown, never> | undefined }
    | undefined
  // A misspelt option (`maxAtempts`) would be ignored: the node refuses the worker at start instead.
  const unknownOption = unknownKey(options, workerOptionKeys, `the options of worker "${name}"`)
  const worker: Worker<Name, A, E, R, O, ArgsKey<I>> = {
    name,
    argsSchema: options.args,
    argsJson,
    queue,
    priority,
    maxAttempts,
    timeout: options.timeout,
    tags,
    unique: options.unique,
    backoff: options.backoff,
    retryable: options.retryable,
    result: options.result,
    resultJson: options.result === undefined ? undefined : Schema.toCodecJson(options.result),
    errorsJson: options.errors === undefined ? undefined : Schema.toCodecJson(options.errors),
    threads: threads === undefined ? undefined : { module: moduleUrl(threads.module) },
    // A thread worker's services are built where it runs: in a thread, or inline in `ObanTest`.
    perform: threads?.layer === undefined
      ? options.perform
      : withThreadServices(name, options.perform, threads.layer as Layer.Layer<R, unknown, never>),
    job
  }
  return unknownOption === undefined ? worker : refuseAtStart(worker, unknownOption.message)
}

/** A module's URL; a string that is no URL is taken as a file path. */
const moduleUrl = (module: string | URL): URL =>
  typeof module === "string" && !URL.canParse(module) ? pathToFileURL(module) : new URL(module)

/**
 * Raised by `Worker.snooze`: run the job again later without using an attempt.
 *
 * @since 0.1.0
 */
export class Snooze extends Schema.TaggedError<Snooze>()("ObanSnooze", {
  millis: Schema.Number
}) {}

/**
 * Raised by `Worker.cancel`: stop the job for good, as `cancelled`.
 *
 * @since 0.1.0
 */
export class Cancel extends Schema.TaggedError<Cancel>()("ObanCancel", {
  reason: Schema.String
}) {}

/**
 * Raised by `Worker.discard`: stop the job for good, as `discarded`.
 *
 * @since 0.1.0
 */
export class Discard extends Schema.TaggedError<Discard>()("ObanDiscard", {
  reason: Schema.String
}) {}

/**
 * Ends the attempt and runs the job again after `duration`. The attempt is
 * given back, so snoozing never uses up `maxAttempts`. A negative duration
 * runs the job again at once; one longer than `Backoff.maxDelay` (100 years)
 * is cut to it. `Duration.infinity` (and `NaN`) is refused: the attempt is recorded as
 * a failed one, of kind `defect`, so that such a job cannot run again and
 * again without end.
 *
 * @since 0.1.0
 */
export const snooze = (duration: Duration.Input): Effect.Effect<never, Snooze> =>
  // `Duration` reads NaN as 0, which would run the job again at once, forever: kept as NaN, it is refused.
  Effect.suspend(() =>
    Effect.fail(
      new Snooze({ millis: Number.isNaN(duration) ? Number.NaN : Math.max(0, Duration.toMillis(duration)) })
    )
  )

/**
 * The recorded reason of a cancel or discard: the text given, or a default when none is (a call from
 * JavaScript without one threw a bare schema error where the worker returned its effect).
 */
const reasonText = (reason: unknown, fallback: string): string =>
  typeof reason === "string" ? reason : reason === undefined || reason === null ? fallback : String(reason)

/**
 * Ends the job as `cancelled`, recording `reason` (`cancelled by the worker` when none is given).
 *
 * @since 0.1.0
 */
export const cancel = (reason?: string): Effect.Effect<never, Cancel> =>
  Effect.suspend(() => Effect.fail(new Cancel({ reason: reasonText(reason, "cancelled by the worker") })))

/**
 * Ends the job as `discarded`, recording `reason` (`discarded by the worker` when none is given).
 *
 * @since 0.1.0
 */
export const discard = (reason?: string): Effect.Effect<never, Discard> =>
  Effect.suspend(() => Effect.fail(new Discard({ reason: reasonText(reason, "discarded by the worker") })))
