/**
 * Checks job requests and encodes them as the columns of `insertJobs`.
 * Everything here runs before any SQL, so a bad request writes nothing, and
 * whatever is accepted reads back exactly as it was given: a value that
 * PostgreSQL would refuse or JSON would change is an `InvalidJobError`.
 * A careless value (a number for a name, a throwing getter) is refused the
 * same way, never a defect.
 *
 * The worker and queue names accepted last are not checked again: names are
 * strings, so one that equals a name already accepted is accepted too. That
 * holds across calls, so one job inserted at a time checks its names once.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { SettingsShape } from "../Config.ts"
import { InvalidJobError, type JobField } from "../Errors.ts"
import type { JobRequest } from "../Worker.ts"
import { describe, errorText, toJsonText } from "./jsonText.ts"
import { edgeWhitespace, hasEdgeWhitespace, shown } from "./queueName.ts"
import {
  checkBackoff,
  checkInteger,
  checkMeta,
  checkMillis,
  checkScheduledAt,
  checkScheduleIn,
  checkTags,
  checkText,
  durationInputProblem,
  maxNameLength,
  maxSmallint,
  noRequestMeta,
  Problem,
  type Trace,
  traceOf,
  unreadOption,
  withRunOptions
} from "./requestFields.ts"
import { storedFieldsOf } from "./storedFields.ts"
import { traceKey } from "./telemetry.ts"
import { type EncodedUnique, encodeUnique, UniqueProblem } from "./uniqueKey.ts"

const workerOf = (request: JobRequest): string => {
  try {
    const worker: unknown = request.worker
    return typeof worker === "string" ? worker : describe(worker)
  } catch {
    return "(unreadable worker)"
  }
}

const invalid = (request: JobRequest, problem: Problem, index: number | undefined) =>
  new InvalidJobError(
    index === undefined
      ? { worker: workerOf(request), field: problem.field, message: problem.message }
      : { worker: workerOf(request), field: problem.field, message: `request ${index}: ${problem.message}`, index }
  )


/** A checked request, ready to be a row of `insertJobs`. */
export interface EncodedRequest {
  readonly queue: string
  readonly worker: string
  readonly priority: number
  readonly maxAttempts: number
  /** The delay in milliseconds, when given as `scheduleIn`. */
  readonly scheduleIn: number | null
  readonly scheduledAt: Date | null
  readonly tags: ReadonlyArray<string>
  /** JSON text, with the insert's `traceparent`. */
  readonly meta: string
  /** `meta` as an object when it was built without parsing the text (only a traceparent); else parse `meta`. */
  readonly metaObject?: Readonly<Record<string, unknown>> | undefined
  /** JSON text of the args as the worker's schema encoded them. */
  readonly args: string
  /** The args as the request gave them: what the inserted job returns (typed by its worker). */
  readonly value: unknown
  /** Uniqueness, when declared; `undefined` for an ordinary job. */
  readonly unique: EncodedUnique | undefined
}

/**
 * A request whose fields but `args` and `unique` are checked; `args` is
 * filled in once encoded, and `unique` (until then the options as given)
 * is encoded after it.
 */
type Fields = { -readonly [K in Exclude<keyof EncodedRequest, "unique">]: EncodedRequest[K] } & { unique: unknown }

/** The last worker and queue names accepted, by any call. */
interface Accepted {
  worker: string | undefined
  queue: string | undefined
}

/** A worker or queue name, checked unless it equals the name accepted last. */
const checkName = (field: "worker" | "queue", value: unknown, last: string | undefined): string => {
  if (typeof value === "string" && value === last) return value
  const name = checkText(field, `${field} name`, value, maxNameLength)
  if (field === "queue" && hasEdgeWhitespace(name)) {
    throw new Problem("queue", `queue name ${shown(name)} ${edgeWhitespace}`)
  }
  return name
}

const accepted: Accepted = { worker: undefined, queue: undefined }

/**
 * The requests of a call that takes many (`insertAll`, `prepareAll`) as an
 * array, or its refusal when they are no iterable at all (`null`, a number),
 * which past the types would otherwise be a defect.
 */
export const requestArray = <R>(call: string, requests: Iterable<R>): Effect.Effect<Array<R>, InvalidJobError> => {
  const iterable: unknown = requests
  return iterable !== null && iterable !== undefined &&
      typeof (iterable as { [Symbol.iterator]?: unknown })[Symbol.iterator] === "function"
    ? Effect.sync(() => Array.from(requests))
    : Effect.fail(
      new InvalidJobError({
        worker: "(no requests)",
        field: "worker",
        message: `${call} takes an iterable of job requests (an array, say), not ${describe(iterable)}`
      })
    )
}

/** The refusal of a value that is no job request at all (`undefined`, an empty object). */
const notARequest = (value: unknown): Problem =>
  new Problem("worker", `a job request is what worker.job(args, options) returns, not ${describe(value)}`)

/**
 * Reads and checks every field but `args`, each exactly once. A read that
 * throws (a getter, a Proxy) is a refusal of that field.
 */
const checkFields = (request: JobRequest, trace: Trace | undefined): Fields | Problem => {
  if (typeof request !== "object" || request === null) return notARequest(request)
  const unread = unreadOption(request)
  if (unread !== undefined) return new Problem(unread.field, unread.message)
  let field: JobField = "worker"
  try {
    const workerName: unknown = request.worker
    if (workerName === undefined && request._tag !== "JobRequest") return notARequest(request)
    const worker = accepted.worker = checkName("worker", workerName, accepted.worker)
    field = "queue"
    const queue = accepted.queue = checkName("queue", request.queue, accepted.queue)
    field = "priority"
    const priority = checkInteger("priority", request.priority, 0, 9)
    field = "maxAttempts"
    const maxAttempts = checkInteger("maxAttempts", request.maxAttempts, 1, maxSmallint)
    field = "scheduleIn"
    const scheduleIn: unknown = request.scheduleIn
    field = "scheduledAt"
    const scheduledAt: unknown = request.scheduledAt
    if (scheduleIn !== undefined && scheduledAt !== undefined) {
      throw new Problem("scheduleIn", "give scheduleIn or scheduledAt, not both")
    }
    field = "scheduleIn"
    const delay = scheduleIn === undefined ? null : checkScheduleIn(scheduleIn)
    field = "scheduledAt"
    const at = scheduledAt === undefined ? null : checkScheduledAt(scheduledAt)
    field = "tags"
    const tags = checkTags(request.tags)
    field = "timeout"
    const timeout: unknown = request.timeout
    const timeoutMillis = timeout === undefined ? undefined : checkMillis("timeout", "timeout", timeout, 1)
    field = "backoff"
    const backoffInput: unknown = request.backoff
    const backoff = backoffInput === undefined ? undefined : checkBackoff(backoffInput)
    field = "meta"
    const given: unknown = request.meta
    const text = checkMeta(given, trace)
    const meta = withRunOptions(text, timeoutMillis, backoff)
    // A meta that is only the traceparent is handed back as an object built here, not parsed from the text.
    const metaObject = given === noRequestMeta && meta === text && trace !== undefined
      ? { [traceKey]: trace.parent }
      : undefined
    field = "unique"
    const unique: unknown = request.unique
    field = "args"
    const value: unknown = request.args
    return {
      queue,
      worker,
      priority,
      maxAttempts,
      scheduleIn: delay,
      scheduledAt: at,
      tags,
      meta,
      metaObject,
      args: "",
      value,
      unique
    }
  } catch (error) {
    return error instanceof Problem ? error : new Problem(field, `reading ${field} threw: ${errorText(error)}`)
  }
}

/** The encoded unique options of a request with checked fields, or why they are refused. */
const uniqueOf = (request: JobRequest, fields: Fields): EncodedUnique | Problem => {
  try {
    const args = { value: () => request.args, text: fields.args, fields: storedFieldsOf(request) }
    return encodeUnique(fields.unique, fields.worker, fields.queue, args, durationInputProblem)
  } catch (error) {
    return new Problem(
      "unique",
      error instanceof UniqueProblem ? error.message : `computing the unique key threw: ${errorText(error)}`
    )
  }
}

/** The encoding of a request's args, with a throwing read of it as a defect of the encoding. */
const encodingOf = (request: JobRequest): Effect.Effect<unknown, SchemaFailure> => {
  try {
    return request.encodeArgs
  } catch (error) {
    return Effect.die(error)
  }
}

/** How a worker's schema fails to encode args. */
interface SchemaFailure {
  readonly message: string
}

/**
 * Why the args encoding of a request failed: the schema refused them or
 * threw (say, on a Proxy). `undefined` for an interruption, which stays one.
 */
const encodingProblem = (cause: Cause.Cause<SchemaFailure>): Problem | undefined => {
  const error = Cause.findError(cause)
  if (Result.isSuccess(error)) return new Problem("args", `args do not match the worker's schema: ${error.success.message}`)
  const defect = Cause.findDefect(error.failure)
  return Result.isSuccess(defect) ? new Problem("args", `encoding args threw: ${errorText(defect.success)}`) : undefined
}

/**
 * Validates `requests` in order and returns them encoded, or the error of
 * the first bad one, which names the index `indexOf` gives its position
 * (none for `undefined`). The args of each request are encoded in turn in
 * one fiber; a failure of the encoding is mapped to the request being
 * encoded at the time, so a good request costs no wrapper of its own. The
 * requests are walked by a chain of `flatMap`s rather than a generator,
 * which cost a single `Oban.insert` more than the checks themselves.
 */
export const encodeRequests = (
  requests: ReadonlyArray<JobRequest>,
  settings: SettingsShape,
  traceparent: string | undefined,
  indexOf: (position: number) => number | undefined
): Effect.Effect<ReadonlyArray<EncodedRequest>, InvalidJobError> =>
  Effect.suspend(() => {
    const trace = traceOf(traceparent)
    const encoded: Array<EncodedRequest> = new Array(requests.length)
    let position = 0
    let fields: Fields | undefined
    /** The args of the request at `position`, encoded, complete its fields; then on to the next request. */
    const withArgs = (value: unknown): Effect.Effect<ReadonlyArray<EncodedRequest>, InvalidJobError | SchemaFailure> => {
      const request = requests[position]!
      const checked = fields!
      const args = toJsonText(value, "args", settings.maxArgsBytes)
      if (args._tag === "JsonRefusal") return Effect.fail(invalid(request, new Problem("args", args.message), indexOf(position)))
      checked.args = args.text
      if (checked.unique !== undefined) {
        const unique = uniqueOf(request, checked)
        if (unique instanceof Problem) return Effect.fail(invalid(request, unique, indexOf(position)))
        checked.unique = unique
      }
      encoded[position] = checked as EncodedRequest
      position++
      return next()
    }
    /** Checks the request at `position` and encodes its args, or returns every request encoded. */
    const next = (): Effect.Effect<ReadonlyArray<EncodedRequest>, InvalidJobError | SchemaFailure> => {
      if (position === requests.length) return Effect.succeed(encoded)
      const request = requests[position]!
      const checked = checkFields(request, trace)
      if (checked instanceof Problem) return Effect.fail(invalid(request, checked, indexOf(position)))
      fields = checked
      return Effect.flatMap(encodingOf(request), withArgs)
    }
    return next().pipe(Effect.catchCause((cause) => {
      const refused = Cause.findError(cause)
      if (Result.isSuccess(refused) && refused.success instanceof InvalidJobError) return Effect.fail(refused.success)
      const problem = encodingProblem(cause as Cause.Cause<SchemaFailure>)
      const request = requests[position]!
      return problem === undefined
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.fail(invalid(request, problem, indexOf(position)))
    }))
  })

/** Validates one request; `index`, when given, is named in the error. */
export const encodeRequest = (
  request: JobRequest,
  settings: SettingsShape,
  index: number | undefined,
  traceparent?: string | undefined
): Effect.Effect<EncodedRequest, InvalidJobError> =>
  Effect.map(encodeRequests([request], settings, traceparent, () => index), (encoded) => encoded[0]!)

/** An encoded request as one JSON object (scheduling aside), for statements that insert a single row. */
export const rowJson = (request: EncodedRequest): string =>
  `{"queue":${JSON.stringify(request.queue)},"worker":${JSON.stringify(request.worker)},` +
  `"args":${request.args},"meta":${request.meta},"tags":${JSON.stringify(request.tags)},` +
  `"max_attempts":${request.maxAttempts},"priority":${request.priority}}`
