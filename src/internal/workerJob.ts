/**
 * `worker.job(args, options)`: a worker's job request, its options read once
 * over the worker's defaults. Nothing here checks a value: a bad one is kept
 * as given and refused by the insert, naming the field (see
 * `requestFields.ts`), so `job` itself never throws.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import type { JobField } from "../Errors.ts"
import type { JobOptions, JobRequest, UniqueOptions } from "./jobRequest.ts"
import { errorText } from "./jsonText.ts"
import { unknownKey } from "./optionKeys.ts"
import { noRequestMeta, refuseOnInsert } from "./requestFields.ts"

/** What a worker's requests start from. */
export interface JobDefaults<A, K extends string> {
  readonly worker: string
  readonly encode: (args: A) => Effect.Effect<Schema.Json, Schema.SchemaError>
  readonly decode: (input: unknown) => Effect.Effect<A, Schema.SchemaError>
  readonly queue: string
  readonly priority: number
  readonly maxAttempts: number
  readonly tags: ReadonlyArray<string>
  readonly unique: UniqueOptions<A, K> | undefined
}

/** The options as read from `job`'s, each `undefined` where not given. */
interface GivenOptions {
  readonly queue?: unknown
  readonly priority?: unknown
  readonly maxAttempts?: unknown
  readonly tags?: unknown
  readonly meta?: unknown
  readonly scheduleIn?: unknown
  readonly scheduledAt?: unknown
  readonly timeout?: unknown
  readonly backoff?: unknown
  readonly unique?: unknown
}

/** The options `worker.job(args, options)` takes. */
const jobOptionKeys: ReadonlyArray<JobField> = [
  "queue", "priority", "maxAttempts", "tags", "meta", "scheduleIn", "scheduledAt", "timeout", "backoff", "unique"
]

/** The field an unknown option names: the known one it was likely meant as, else the options as a whole. */
const jobFieldOf = (meant: string | undefined): JobField =>
  meant !== undefined && (jobOptionKeys as ReadonlyArray<string>).includes(meant) ? meant as JobField : "options"

/**
 * The worker's tags followed by the job's. Anything but two arrays is passed
 * on as it is, for the insert to refuse: spreading a string would turn
 * `"email"` into five one-letter tags. Holes stay holes (`concat` keeps
 * them), so a sparse array is refused too.
 */
const mergeTags = (
  base: ReadonlyArray<string>,
  extra: ReadonlyArray<string> | undefined
): ReadonlyArray<string> => {
  if (extra === undefined) return base
  if (!Array.isArray(base)) return base
  if (!Array.isArray(extra)) return extra
  try {
    return base.concat(extra)
  } catch {
    return extra
  }
}

/** The `job` function of a worker with these defaults. */
export const makeJobBuilder = <A, K extends string>(defaults: JobDefaults<A, K>) => {
  const { decode, encode, maxAttempts, priority, queue, tags, unique, worker } = defaults
  const requestOf = (args: A, given: GivenOptions): JobRequest<A> => ({
    _tag: "JobRequest",
    worker,
    args,
    encodeArgs: Effect.suspend(() => encode(args)),
    decodeArgs: decode,
    // Only `undefined` means "not given": a careless `null` reaches the insert's checks and is refused.
    queue: (given.queue === undefined ? queue : given.queue) as string,
    priority: (given.priority === undefined ? priority : given.priority) as number,
    maxAttempts: (given.maxAttempts === undefined ? maxAttempts : given.maxAttempts) as number,
    tags: (given.tags === undefined ? tags : given.tags) as ReadonlyArray<string>,
    meta: (given.meta === undefined ? noRequestMeta : given.meta) as Readonly<Record<string, unknown>>,
    scheduleIn: given.scheduleIn as Duration.Input | undefined,
    scheduledAt: given.scheduledAt as JobRequest["scheduledAt"],
    timeout: given.timeout as Duration.Input | undefined,
    backoff: given.backoff as JobRequest["backoff"],
    unique: (given.unique === undefined ? unique : given.unique === false ? undefined : given.unique) as JobRequest["unique"]
  })
  return <J extends string>(args: A, jobOptions?: JobOptions<A, J>): JobRequest<A> => {
    const options: JobOptions<A, J> = jobOptions ?? {}
    // Each option is read once, here. One that throws (a getter, a Proxy) is not thrown at the
    // caller: the request keeps the worker's defaults and the insert refuses it, naming the field.
    // Written out rather than a loop over the names: this runs for every job of an insertAll,
    // and a loop's keyed reads made it six times slower (0.15 µs against 0.02 a call).
    let field: JobField = "queue"
    try {
      const queue = options.queue
      field = "priority"
      const priority = options.priority
      field = "maxAttempts"
      const maxAttempts = options.maxAttempts
      field = "tags"
      const jobTags = mergeTags(tags, options.tags)
      field = "meta"
      const meta = options.meta
      field = "scheduleIn"
      const scheduleIn = options.scheduleIn
      field = "scheduledAt"
      const scheduledAt = options.scheduledAt
      field = "timeout"
      const timeout = options.timeout
      field = "backoff"
      const backoff = options.backoff
      field = "unique"
      const unique = options.unique
      const request = requestOf(args, {
        queue,
        priority,
        maxAttempts,
        tags: jobTags,
        meta,
        scheduleIn,
        scheduledAt,
        timeout,
        backoff,
        unique
      })
      // An option `job` does not know (`schedulIn`) would be ignored: the job would run now. TypeScript sees it in
      // an object literal only, not in options built elsewhere or passed from JavaScript.
      const unknown = typeof jobOptions !== "object" || jobOptions === null
        ? undefined
        : unknownKey(jobOptions, jobOptionKeys, "the job's options")
      return unknown === undefined
        ? request
        : refuseOnInsert(request, jobFieldOf(unknown.meant), unknown.message)
    } catch (error) {
      return refuseOnInsert(requestOf(args, {}), field, `reading ${field} threw: ${errorText(error)}`)
    }
  }
}
