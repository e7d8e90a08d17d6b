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
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Backoff from "../Backoff.ts"
import type { SettingsShape } from "../Config.ts"
import { InvalidJobError, type JobField } from "../Errors.ts"
import type { JobRequest } from "../Worker.ts"
import { characterCount, describe, errorText, textProblem, toJsonText } from "./jsonText.ts"
import { traceKey } from "./telemetry.ts"
import { type EncodedUnique, encodeUnique, UniqueProblem } from "./uniqueKey.ts"

/** The longest queue or worker name, in characters (code points), as the table's check constraints count. */
export const maxNameLength = 128
/** The longest tag, in characters (code points). */
export const maxTagLength = 255
/** The most tags one job may carry. */
export const maxTags = 1000
/** The largest `meta`, in bytes of JSON, not counting the `traceparent` added on insert. */
export const maxMetaBytes = 64 * 1024
/** The longest `scheduleIn`: 1,000 years of 365.25 days. */
export const maxScheduleInMillis = 1000 * 365.25 * 86_400_000
/** The earliest `scheduledAt`, 0001-01-01T00:00:00.000Z. */
export const minScheduledAtMillis = Date.parse("0001-01-01T00:00:00.000Z")
/** The latest `scheduledAt`, 9999-12-31T23:59:59.999Z. */
export const maxScheduledAtMillis = Date.parse("9999-12-31T23:59:59.999Z")

const maxSmallint = 32767

/** A refusal of one field, thrown inside the synchronous checks below and turned into an `InvalidJobError`. */
class Problem {
  readonly field: JobField
  readonly message: string
  constructor(field: JobField, message: string) {
    this.field = field
    this.message = message
  }
}

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

const checkText = (field: JobField, label: string, value: unknown, maxLength: number): string => {
  if (typeof value !== "string") throw new Problem(field, `${label} must be a string, got ${describe(value)}`)
  if (value.length === 0) throw new Problem(field, `${label} must not be empty`)
  const problem = textProblem(value)
  if (problem !== undefined) throw new Problem(field, `${label} ${problem}`)
  const length = value.length > maxLength * 2 ? value.length : characterCount(value)
  if (length > maxLength) {
    throw new Problem(field, `${label} must be at most ${maxLength} characters, got ${length}`)
  }
  return value
}

const checkInteger = (field: JobField, value: unknown, min: number, max: number): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Problem(field, `${field} must be an integer from ${min} to ${max}, got ${describe(value)}`)
  }
  return value
}

/** Shared by every request without tags (its jobs hand it out as their tags, so it is frozen). */
export const noTags: ReadonlyArray<string> = Object.freeze([])

/** A copy of the tags (so a later change to the caller's array changes nothing), checked. */
const checkTags = (value: unknown): ReadonlyArray<string> => {
  if (!Array.isArray(value)) throw new Problem("tags", `tags must be an array of strings, got ${describe(value)}`)
  const tags: ReadonlyArray<unknown> = value
  if (tags.length === 0) return noTags
  if (tags.length > maxTags) throw new Problem("tags", `at most ${maxTags} tags, got ${tags.length}`)
  const checked: Array<string> = []
  for (let i = 0; i < tags.length; i++) {
    if (!(i in tags)) throw new Problem("tags", `tags[${i}] is a hole in a sparse array`)
    checked.push(checkText("tags", `tags[${i}]`, tags[i], maxTagLength))
  }
  return checked
}

const durationKeys = new Set([
  "weeks",
  "days",
  "hours",
  "minutes",
  "seconds",
  "milliseconds",
  "microseconds",
  "nanoseconds"
])

/**
 * What `Duration.fromInput` would silently read as zero or coerce: NaN
 * anywhere, a tuple of non-numbers, an object with unknown keys or
 * non-number fields.
 */
export const durationInputProblem = (input: unknown): string | undefined => {
  if (Duration.isDuration(input)) return undefined
  switch (typeof input) {
    case "number":
      return Number.isNaN(input) ? "is NaN" : undefined
    case "bigint":
    case "string":
      return undefined
    case "object": {
      if (input === null) break
      if (Array.isArray(input)) {
        const parts: ReadonlyArray<unknown> = input
        return parts.length === 2 && parts.every((part) => typeof part === "number" && !Number.isNaN(part))
          ? undefined
          : "must be a [seconds, nanos] pair of numbers"
      }
      for (const [key, part] of Object.entries(input)) {
        if (!durationKeys.has(key)) return `has an unknown key ${JSON.stringify(key)}`
        if (part !== undefined && (typeof part !== "number" || Number.isNaN(part))) {
          return `.${key} must be a number, got ${describe(part)}`
        }
      }
      return undefined
    }
  }
  return `is not a duration: ${describe(input)}`
}

const checkScheduleIn = (input: unknown): number => {
  const inputProblem = durationInputProblem(input)
  if (inputProblem !== undefined) throw new Problem("scheduleIn", `scheduleIn ${inputProblem}`)
  const duration = Duration.fromInput(input as Duration.Input)
  if (Option.isNone(duration)) throw new Problem("scheduleIn", `scheduleIn is not a duration: ${describe(input)}`)
  const millis = Duration.toMillis(duration.value)
  if (!Number.isFinite(millis)) throw new Problem("scheduleIn", "scheduleIn must be finite")
  if (millis < 0) throw new Problem("scheduleIn", `scheduleIn must not be negative, got ${millis} ms`)
  if (millis > maxScheduleInMillis) {
    throw new Problem("scheduleIn", `scheduleIn must be at most 1000 years (${maxScheduleInMillis} ms), got ${millis} ms`)
  }
  return millis
}

const checkScheduledAt = (at: unknown): Date => {
  const date = DateTime.isDateTime(at) ? DateTime.toDate(at) : at
  if (!(date instanceof Date)) {
    throw new Problem("scheduledAt", `scheduledAt must be a Date or DateTime, got ${describe(at)}`)
  }
  const millis = date.getTime()
  if (Number.isNaN(millis)) throw new Problem("scheduledAt", "scheduledAt is not a valid date")
  if (millis < minScheduledAtMillis || millis > maxScheduledAtMillis) {
    throw new Problem("scheduledAt", `scheduledAt must be in the years 0001 to 9999, got ${date.toISOString()}`)
  }
  return new Date(millis)
}

/** Whether `value` is `{}`: a plain object without keys of any kind. */
const isEmptyObject = (value: object): boolean => {
  const proto: unknown = Object.getPrototypeOf(value)
  return (proto === Object.prototype || proto === null) && Reflect.ownKeys(value).length === 0
}

/**
 * The meta of every request that gives none (`Worker.job` hands out this one
 * object, frozen as the request's readonly type allows), so the common case
 * is known empty without a look at its keys.
 */
export const noRequestMeta: Readonly<Record<string, unknown>> = Object.freeze({})

const quotedTraceKey = JSON.stringify(traceKey)

/**
 * The insert's `traceparent` in the forms its jobs' meta take, built once
 * per call: every job of a batch then shares one meta text (so the batch
 * statement sees one value, compared by identity) instead of a copy each.
 */
interface Trace {
  readonly parent: string
  /** `"traceparent":"..."`, the entry added to a job's own meta. */
  readonly entry: string
  /** The meta text of a job that gives no meta: only the entry. */
  readonly only: string
}

const traceOf = (parent: string | undefined): Trace | undefined => {
  if (parent === undefined) return undefined
  const entry = `${quotedTraceKey}:${JSON.stringify(parent)}`
  return { parent, entry, only: `{${entry}}` }
}

const checkMeta = (value: unknown, trace: Trace | undefined): string => {
  if (value === noRequestMeta) return trace === undefined ? "{}" : trace.only
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Problem("meta", `meta must be a plain JSON object, got ${describe(value)}`)
  }
  const meta = isEmptyObject(value) ? { _tag: "JsonText", text: "{}" } as const : toJsonText(value, "meta", maxMetaBytes)
  if (meta._tag === "JsonRefusal") throw new Problem("meta", meta.message)
  if (trace === undefined || Object.hasOwn(value, traceKey)) return meta.text
  return meta.text === "{}" ? trace.only : `{${trace.entry},${meta.text.slice(1)}`
}

/** A duration option of one job, in milliseconds: finite, from `min` to 1,000 years. */
const checkMillis = (field: "timeout" | "backoff", name: string, input: unknown, min: number): number => {
  const inputProblem = durationInputProblem(input)
  if (inputProblem !== undefined) throw new Problem(field, `${name} ${inputProblem}`)
  const duration = Duration.fromInput(input as Duration.Input)
  if (Option.isNone(duration)) throw new Problem(field, `${name} is not a duration: ${describe(input)}`)
  const millis = Duration.toMillis(duration.value)
  if (!Number.isFinite(millis) || millis < min || millis > maxScheduleInMillis) {
    throw new Problem(field, `${name} must be from ${min} ms to 1000 years, got ${describe(input)}`)
  }
  return Math.round(millis)
}

const backoffKeys = new Set(["type", "delay", "max", "jitter"])

/** A job's own backoff, checked and in its stored form. */
const checkBackoff = (input: unknown): Backoff.StoredSpec => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new Problem("backoff", `backoff must be { type, delay, max?, jitter? }, got ${describe(input)}`)
  }
  const spec = input as Record<string, unknown>
  for (const key of Reflect.ownKeys(spec)) {
    if (typeof key !== "string" || !backoffKeys.has(key)) {
      throw new Problem("backoff", `backoff has an unknown key ${String(key)}; it takes type, delay, max and jitter`)
    }
  }
  if (spec["type"] !== "fixed" && spec["type"] !== "exponential") {
    throw new Problem("backoff", `backoff.type must be "fixed" or "exponential", got ${describe(spec["type"])}`)
  }
  const delay = checkMillis("backoff", "backoff.delay", spec["delay"], 0)
  const max = spec["max"] === undefined ? undefined : checkMillis("backoff", "backoff.max", spec["max"], 0)
  if (spec["jitter"] !== undefined && typeof spec["jitter"] !== "boolean") {
    throw new Problem("backoff", `backoff.jitter must be a boolean, got ${describe(spec["jitter"])}`)
  }
  return {
    type: spec["type"],
    delay_ms: delay,
    ...(max === undefined ? {} : { max_ms: max }),
    ...(spec["jitter"] === true ? { jitter: true } : {})
  }
}

/** The meta text with the job's own timeout and backoff, which the executor reads from there. */
const withRunOptions = (meta: string, timeout: number | undefined, backoff: Backoff.StoredSpec | undefined): string => {
  if (timeout === undefined && backoff === undefined) return meta
  const extra = [
    ...(timeout === undefined ? [] : [`${JSON.stringify(timeoutKey)}:${timeout}`]),
    ...(backoff === undefined ? [] : [`${JSON.stringify(Backoff.specKey)}:${JSON.stringify(backoff)}`])
  ].join(",")
  return meta === "{}" ? `{${extra}}` : `{${extra},${meta.slice(1)}`
}

/** Where a job's own timeout (in ms) is kept in its meta. */
export const timeoutKey = "oban:timeout_ms"

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
const checkName = (field: "worker" | "queue", value: unknown, last: string | undefined): string =>
  typeof value === "string" && value === last ? value : checkText(field, `${field} name`, value, maxNameLength)

const accepted: Accepted = { worker: undefined, queue: undefined }

/**
 * Reads and checks every field but `args`, each exactly once. A read that
 * throws (a getter, a Proxy) is a refusal of that field.
 */
const checkFields = (request: JobRequest, trace: Trace | undefined): Fields | Problem => {
  let field: JobField = "worker"
  try {
    const worker = accepted.worker = checkName("worker", request.worker, accepted.worker)
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
    return encodeUnique(fields.unique, fields.worker, fields.queue, () => request.args, fields.args, durationInputProblem)
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
