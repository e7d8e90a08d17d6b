/**
 * The checks of a job request's fields but its args and uniqueness, one
 * function per field: each returns the field as stored, or throws a
 * `Problem` naming the field, which `encodeRequest.ts` turns into an
 * `InvalidJobError`. The limits they enforce are the table's own (its check
 * constraints and column types) or the documented ones.
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Backoff from "../Backoff.ts"
import type { JobField } from "../Errors.ts"
import { characterCount, describe, textProblem, toJsonText } from "./jsonText.ts"
import { traceKey } from "./telemetry.ts"

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

export const maxSmallint = 32767

/**
 * The mark of a request whose options could not be taken where it was built
 * (a getter that threw in `worker.job(args, options)`, or an option `job` does
 * not know): the field and why. The insert refuses such a request with an
 * `InvalidJobError`, as it does a field that throws when it reads it, rather
 * than `job` throwing at its caller. An own enumerable symbol property, so a
 * copy of the request (`{ ...request, worker }`) keeps it.
 */
const unreadKey: unique symbol = Symbol.for("effect-oban/JobRequest/unreadOption")

interface UnreadOption {
  readonly field: JobField
  readonly message: string
}

/** Marks `request` as built from options the insert must refuse, saying why. */
export const refuseOnInsert = <R extends object>(request: R, field: JobField, message: string): R => {
  ;(request as { [unreadKey]?: UnreadOption })[unreadKey] = { field, message }
  return request
}

/** The option of `request` that threw when it was built, if one did. */
export const unreadOption = (request: object): UnreadOption | undefined =>
  (request as { readonly [unreadKey]?: UnreadOption })[unreadKey]

/** A refusal of one field, thrown inside the synchronous checks below and turned into an `InvalidJobError`. */
export class Problem {
  readonly field: JobField
  readonly message: string
  constructor(field: JobField, message: string) {
    this.field = field
    this.message = message
  }
}

export const checkText = (field: JobField, label: string, value: unknown, maxLength: number): string => {
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

export const checkInteger = (field: JobField, value: unknown, min: number, max: number): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Problem(field, `${field} must be an integer from ${min} to ${max}, got ${describe(value)}`)
  }
  return value
}

/** Shared by every request without tags (its jobs hand it out as their tags, so it is frozen). */
export const noTags: ReadonlyArray<string> = Object.freeze([])

/** A copy of the tags (so a later change to the caller's array changes nothing), checked. */
export const checkTags = (value: unknown): ReadonlyArray<string> => {
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

export const checkScheduleIn = (input: unknown): number => {
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

export const checkScheduledAt = (at: unknown): Date => {
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
export interface Trace {
  readonly parent: string
  /** `"traceparent":"..."`, the entry added to a job's own meta. */
  readonly entry: string
  /** The meta text of a job that gives no meta: only the entry. */
  readonly only: string
}

export const traceOf = (parent: string | undefined): Trace | undefined => {
  if (parent === undefined) return undefined
  const entry = `${quotedTraceKey}:${JSON.stringify(parent)}`
  return { parent, entry, only: `{${entry}}` }
}

export const checkMeta = (value: unknown, trace: Trace | undefined): string => {
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
export const checkMillis = (field: "timeout" | "backoff", name: string, input: unknown, min: number): number => {
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
export const checkBackoff = (input: unknown): Backoff.StoredSpec => {
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
  // Accepted, it made every delay `max`: almost surely the two were swapped.
  if (max !== undefined && max < delay) {
    throw new Problem("backoff", `backoff.max (${max} ms) is below backoff.delay (${delay} ms); max bounds the growing delay, so it must be at least delay`)
  }
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
export const withRunOptions = (meta: string, timeout: number | undefined, backoff: Backoff.StoredSpec | undefined): string => {
  if (timeout === undefined && backoff === undefined) return meta
  const extra = [
    ...(timeout === undefined ? [] : [`${JSON.stringify(timeoutKey)}:${timeout}`]),
    ...(backoff === undefined ? [] : [`${JSON.stringify(Backoff.specKey)}:${JSON.stringify(backoff)}`])
  ].join(",")
  return meta === "{}" ? `{${extra}}` : `{${extra},${meta.slice(1)}`
}

/** Where a job's own timeout (in ms) is kept in its meta. */
export const timeoutKey = "oban:timeout_ms"
