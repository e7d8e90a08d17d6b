/**
 * Checks a request's unique options and turns them into what the unique
 * insert stores: a hash of the key's parts (worker, queue, the selected args
 * as canonical JSON, the period), the period (the statement adds the bucket
 * of its own clock), the states as a bitmask and the fields to replace.
 * Runs before any SQL: a bad option is a refusal of the `unique` field.
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import type { JobState } from "../Job.ts"
import type { ReplaceField, UniqueField } from "../Worker.ts"
import { parseJson } from "./jsonParse.ts"
import { describe, toJsonText } from "./jsonText.ts"

/** A request's uniqueness, as the unique insert stores it. */
export interface EncodedUnique {
  /** sha256 (hex) of the key's parts; `unique_key` is this, plus `:<bucket>` with a period. */
  readonly hash: string
  /** The window in milliseconds, or `null` for "forever". */
  readonly periodMs: number | null
  /** The states that hold the key, as the bitmask of `oban_state_in`. */
  readonly states: number
  /** The fields to replace on a conflict, distinct and sorted. */
  readonly replace: ReadonlyArray<ReplaceField>
}

/** The default window: 60 seconds, as in Oban. */
export const defaultPeriodMillis = 60_000

/** The bit of each state in `unique_states` (migration 0007). */
export const stateBits: Readonly<Record<JobState, number>> = {
  available: 1,
  scheduled: 2,
  executing: 4,
  retryable: 8,
  completed: 16,
  discarded: 32,
  cancelled: 64,
  suspended: 128
}

/**
 * States every set must hold: the library itself moves jobs between them
 * (staging, claiming, retries, snoozes, rescues), and a move from a state
 * outside the set into one inside it could collide with a newer job and fail
 * that statement (an ack of many jobs, say).
 */
export const requiredStates: ReadonlyArray<JobState> = ["available", "scheduled", "executing", "retryable"]

/** Every state but `cancelled` and `discarded`. */
export const defaultStates: number = stateBits.available | stateBits.scheduled | stateBits.executing |
  stateBits.retryable | stateBits.completed | stateBits.suspended

const uniqueFields: ReadonlyArray<UniqueField> = ["worker", "queue", "args"]
const replaceFields: ReadonlyArray<ReplaceField> = ["args", "maxAttempts", "meta", "priority", "scheduledAt", "tags"]
const optionKeys = new Set(["keys", "period", "states", "fields", "replace"])

/** Refused unique options; the caller names the field. */
export class UniqueProblem {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const refuse = (message: string): never => {
  throw new UniqueProblem(message.startsWith(".") ? `unique${message}` : `unique ${message}`)
}

/** A copy of an array option without repeats, refused unless every element is one of `allowed`. */
const checkList = <A>(name: string, value: unknown, allowed: ReadonlyArray<A>): ReadonlyArray<A> => {
  if (!Array.isArray(value)) return refuse(`.${name} must be an array, got ${describe(value)}`)
  const items: ReadonlyArray<unknown> = value
  const checked: Array<A> = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    if (!allowed.includes(item as A)) {
      return refuse(`.${name}[${i}] must be one of ${allowed.join(", ")}, got ${describe(item)}`)
    }
    if (!checked.includes(item as A)) checked.push(item as A)
  }
  return checked
}

const checkStates = (value: unknown): number => {
  if (value === undefined) return defaultStates
  const states = checkList("states", value, Object.keys(stateBits) as ReadonlyArray<JobState>)
  const missing = requiredStates.filter((state) => !states.includes(state))
  if (missing.length > 0) {
    refuse(`.states must include ${requiredStates.join(", ")} (missing ${missing.join(", ")})`)
  }
  let mask = 0
  for (const state of states) mask |= stateBits[state]
  return mask
}

/** The window in milliseconds: 60 seconds by default, `null` for "forever". */
const checkPeriod = (value: unknown, durationProblem: (input: unknown) => string | undefined): number | null => {
  if (value === undefined) return defaultPeriodMillis
  if (value === "forever") return null
  const problem = durationProblem(value)
  if (problem !== undefined) return refuse(`.period ${problem}`)
  const duration = Duration.fromInput(value as Duration.Input)
  if (Option.isNone(duration)) return refuse(`.period is not a duration: ${describe(value)}`)
  const millis = Duration.toMillis(duration.value)
  if (!Number.isFinite(millis)) return refuse(`.period must be finite (use "forever" for no period)`)
  if (millis < 1) return refuse(`.period must be at least 1 millisecond, got ${millis} ms`)
  return millis
}

/** JSON text with object keys sorted at every level, from a value that is plain JSON. */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record).sort()
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(",")}}`
  }
  return JSON.stringify(value)
}

/** The canonical JSON of the args the key considers. */
const selectedArgs = (
  keys: unknown,
  args: unknown,
  argsText: string,
  stored: ReadonlyArray<string> | undefined
): string => {
  if (keys === undefined) return canonicalJson(parseJson(argsText))
  if (typeof keys === "function") {
    const result = toJsonText(keys(args), "the result of unique.keys", 1024 * 1024)
    if (result._tag === "JsonRefusal") return refuse(`key function: ${result.message}`)
    return canonicalJson(parseJson(result.text))
  }
  if (!Array.isArray(keys)) return refuse(`.keys must be an array of args keys or a function, got ${describe(keys)}`)
  const names: ReadonlyArray<unknown> = keys
  if (names.length === 0) return refuse(".keys must name at least one key (leave it out to use all args)")
  const encoded: unknown = parseJson(argsText)
  if (typeof encoded !== "object" || encoded === null || Array.isArray(encoded)) {
    return refuse(".keys needs args that encode to a JSON object")
  }
  const record = encoded as Record<string, unknown>
  // No prototype: an args key named "__proto__" is a key like any other.
  const selected: Record<string, unknown> = Object.create(null)
  for (let i = 0; i < names.length; i++) {
    const name = names[i]
    if (typeof name !== "string") return refuse(`.keys[${i}] must be a string, got ${describe(name)}`)
    // A name no stored args can have would leave every job of the worker one key.
    if (stored !== undefined && !stored.includes(name)) {
      return refuse(
        `.keys names ${JSON.stringify(name)}, which is no field of the args as stored (their fields: ${
          stored.join(", ")
        }); name a stored field, or use a key function`
      )
    }
    if (Object.hasOwn(record, name)) selected[name] = record[name]
  }
  return canonicalJson(selected)
}

/** The args of the job a unique key is for. */
export interface KeyedArgs {
  /** The args as given (read only by a key function). */
  readonly value: () => unknown
  /** Their JSON as stored. */
  readonly text: string
  /** The field names the worker's schema stores, when it stores a struct (see `storedFields`). */
  readonly fields: ReadonlyArray<string> | undefined
}

/**
 * Checks `options` (a request's `unique`) and encodes it for a job of
 * `worker` in `queue` with `args`. Throws `UniqueProblem` (or whatever a
 * getter or the key function throws).
 */
export const encodeUnique = (
  options: unknown,
  worker: string,
  queue: string,
  args: KeyedArgs,
  durationProblem: (input: unknown) => string | undefined
): EncodedUnique => {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    return refuse(`must be an object of options or false, got ${describe(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (!optionKeys.has(key)) refuse(`has an unknown option ${JSON.stringify(key)}`)
  }
  const raw = options as Record<string, unknown>
  const keys = raw["keys"]
  const fields = raw["fields"] === undefined ? uniqueFields : checkList("fields", raw["fields"], uniqueFields)
  if (fields.length === 0) refuse(".fields must name at least one of worker, queue, args")
  if (keys !== undefined && !fields.includes("args")) refuse(".keys selects args, but .fields leaves args out")
  const periodMs = checkPeriod(raw["period"], durationProblem)
  const states = checkStates(raw["states"])
  const replace = raw["replace"] === undefined ? [] : [...checkList("replace", raw["replace"], replaceFields)].sort()
  const parts = JSON.stringify([
    fields.includes("worker") ? worker : null,
    fields.includes("queue") ? queue : null,
    fields.includes("args") ? selectedArgs(keys, typeof keys === "function" ? args.value() : undefined, args.text, args.fields) : null,
    periodMs
  ])
  return { hash: createHash("sha256").update(parts).digest("hex"), periodMs, states, replace }
}
