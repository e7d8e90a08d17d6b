/**
 * What crosses between the node and a worker thread: `Perform`, whose
 * payload names the worker's module and carries the job (without its args)
 * and its args, both as their Schema encodings, and whose outcome is the
 * worker's encoded result or one of the errors the executor knows; and
 * `Events`, a stream the node opens once per thread, on which the thread
 * sends the logs and spans of its attempts (`events.ts`). The node passes
 * the args as stored; the thread decodes them with the worker's own schema,
 * from the same module the node imported.
 */
import type * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Predicate from "effect/Predicate"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import type { Job } from "../../Job.ts"
import { Cancel, Discard, Snooze } from "../../Worker.ts"
import { unmessagedText } from "../errorFields.ts"
import { withServerMessage } from "../serverMessage.ts"

/** The job's fields a thread sees besides its args. */
export const ThreadJob = Schema.Struct({
  id: Schema.Number,
  queue: Schema.String,
  worker: Schema.String,
  attempt: Schema.Number,
  maxAttempts: Schema.Number,
  priority: Schema.Number,
  tags: Schema.Array(Schema.String),
  meta: Schema.Record(Schema.String, Schema.Unknown),
  insertedAt: Schema.Date,
  scheduledAt: Schema.Date,
  attemptedAt: Schema.NullOr(Schema.Date),
  attemptedBy: Schema.NullOr(Schema.Array(Schema.String))
})
export type ThreadJob = typeof ThreadJob.Type

/**
 * A typed failure of a thread worker: its tag and message, its encoding by
 * the worker's `errors` schema when it declares one, and its stack trace in
 * the thread. The node decodes it back to the worker's own error, with that
 * stack (where the worker failed, for the errors entry's `cause`); without a
 * schema, a failure with a tag arrives as `{ _tag, message }` (see
 * `threads/perform.ts`).
 */
export class ThreadFailure extends Schema.TaggedError<ThreadFailure>()("ObanThreadFailure", {
  tag: Schema.optional(Schema.String),
  message: Schema.String,
  encoded: Schema.optional(Schema.Json),
  threadStack: Schema.optional(Schema.String),
  /** The worker succeeded with a value its `result` schema does not encode: the node fails the attempt with `InvalidResultError`. */
  invalidResult: Schema.optional(Schema.Boolean)
}) {}

/** The errors `Perform` can fail with. */
export const PerformError = Schema.Union([Snooze, Cancel, Discard, ThreadFailure])

/** What a thread needs of a worker definition. */
export interface ThreadWorker {
  readonly name: string
  readonly argsJson: Schema.Codec<any, Schema.Json>
  readonly resultJson?: Schema.Codec<any, Schema.Json> | undefined
  readonly errorsJson?: Schema.Codec<any, Schema.Json> | undefined
  readonly perform: (job: Job<any>) => Effect.Effect<unknown, unknown, never>
}

/** The job's `oban.perform` span, the parent of the spans the worker makes in the thread. */
export const ParentSpan = Schema.Struct({ traceId: Schema.String, spanId: Schema.String, sampled: Schema.Boolean })

/**
 * One attempt: the module to import (once per thread) and the job, whose
 * `worker` names the export, with its args as stored (their JSON encoding);
 * the job's span, and the node's minimum log level when it is not the
 * default (the thread drops what the node would). Succeeds with the
 * result's JSON encoding when the worker records one, else null; a defect
 * crosses with its stack trace.
 */
export const Perform = Rpc.make("Perform", {
  payload: {
    module: Schema.String,
    job: ThreadJob,
    args: Schema.Json,
    span: Schema.optional(ParentSpan),
    minimumLogLevel: Schema.optional(Schema.Literals(LogLevel.values))
  },
  success: Schema.Json,
  error: PerformError,
  // With their stack: the errors entry's `cause` then shows where in the thread the job died,
  // not where the node decoded the defect (the stack stays in the process).
  defect: Schema.Defect({ includeStack: true })
})

/**
 * The logs and spans of the thread's attempts, for as long as the thread
 * lives. Its elements are `ThreadEvent`s, which structured clone carries as
 * they are (`Schema.Any` passes them through): both ends run `events.ts`.
 */
export const Events = Rpc.make("Events", { success: Schema.Any, stream: true })

/**
 * Imports the modules of the node's thread workers, once, as the thread
 * starts: before its first attempt, so that the import does not count
 * against that attempt's timeout. A module that fails to import is left to
 * the attempts of its workers, which fail saying so.
 */
export const Preload = Rpc.make("Preload", { payload: { modules: Schema.Array(Schema.String) } })

/** The RPCs a thread serves: the same group for every worker on the node. */
export const ThreadRpcs = RpcGroup.make(Perform, Events, Preload)

/** The job as the thread's `perform` sees it. */
export const toJob = <A>(job: ThreadJob, args: A): Job<A> => ({
  ...job,
  args,
  state: "executing",
  errors: [],
  completedAt: null,
  discardedAt: null,
  cancelledAt: null,
  cancelRequestedAt: null
})

/** The fields of a claimed job that cross to the thread. */
export const fromJob = (job: Job<unknown>): ThreadJob => ({
  id: job.id,
  queue: job.queue,
  worker: job.worker,
  attempt: job.attempt,
  maxAttempts: job.maxAttempts,
  priority: job.priority,
  tags: job.tags,
  meta: job.meta,
  insertedAt: job.insertedAt,
  scheduledAt: job.scheduledAt,
  attemptedAt: job.attemptedAt,
  attemptedBy: job.attemptedBy
})

const tagOf = (error: unknown): string | undefined =>
  Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" ? error._tag : undefined

/**
 * Keeps the executor's own errors and turns any other typed failure into a
 * `ThreadFailure`, with `encoded` when the worker's `errors` schema encodes it.
 */
export const toPerformError = (
  error: unknown,
  encode?: (error: unknown) => Schema.Json | undefined
): Snooze | Cancel | Discard | ThreadFailure => {
  if (error instanceof Snooze || error instanceof Cancel || error instanceof Discard) return error
  const tag = tagOf(error)
  const own = Predicate.hasProperty(error, "message") && typeof error.message === "string" ? error.message : undefined
  // A tagged error (or object) without a message crosses with its fields as its message, as a node records it.
  const text = own !== undefined && own !== ""
    ? withServerMessage(error, own)
    : tag !== undefined && typeof error === "object" && error !== null
    ? unmessagedText(error) ?? ""
    : own ?? safeJson(error)
  const encoded = encode?.(error)
  const stack = Predicate.hasProperty(error, "stack") && typeof error.stack === "string" ? error.stack : undefined
  return new ThreadFailure({
    ...(tag === undefined ? {} : { tag }),
    message: text,
    ...(encoded === undefined ? {} : { encoded }),
    ...(stack === undefined ? {} : { threadStack: stack })
  })
}

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
