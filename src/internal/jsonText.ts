/**
 * Strict JSON text for `jsonb` columns: a value is written only when it reads
 * back exactly as given. `JSON.stringify` silently changes many values (a
 * `Date` becomes a string, a `Map` becomes `{}`, `NaN` becomes `null`,
 * `undefined` and functions vanish, a hole in an array becomes `null`, a
 * `toJSON` method replaces the value), and PostgreSQL refuses text with a NUL
 * character or a lone UTF-16 surrogate. This module refuses all of those,
 * naming where in the value the problem is, and reads every property once.
 */

import * as Schema from "effect/Schema"

/** Why a value was refused. */
export interface JsonRefusal {
  readonly _tag: "JsonRefusal"
  readonly message: string
}

/** The JSON text of an accepted value. */
export interface JsonText {
  readonly _tag: "JsonText"
  readonly text: string
}

/** How deep arrays and objects may nest. PostgreSQL's parser gives up far deeper, at about 10,000 levels. */
export const maxJsonDepth = 1000

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * What PostgreSQL cannot store in text or `jsonb`: the NUL character, and a
 * lone UTF-16 surrogate (half of a pair, which is not a Unicode character).
 * `undefined` when the string is fine.
 */
export const textProblem = (text: string): string | undefined =>
  !suspect.test(text)
    ? undefined
    : text.includes("\u0000")
    ? "contains the NUL character (U+0000), which PostgreSQL cannot store"
    : loneSurrogate.test(text)
    ? "contains a lone UTF-16 surrogate, which is not a Unicode character"
    : undefined

/** A Schema check for text PostgreSQL can store: a name with NUL in it is bad input, not a database failure. */
export const storableText = Schema.makeFilter<string>((text) => textProblem(text) ?? true)

/** NUL or any surrogate: text without one needs no closer look (one scan, no lookaround). */
const suspect = /[\u0000\uD800-\uDFFF]/

/** The number of Unicode characters (code points) of a string without lone surrogates, as `char_length` counts. */
export const characterCount = (text: string): number => {
  let count = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0xDC00 || unit > 0xDFFF) count++
  }
  return count
}

/** A short description of a value for error messages, that never runs user code. */
export const describe = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      return value.length > 40 ? `a string of ${value.length} UTF-16 units` : JSON.stringify(value)
    case "number":
    case "boolean":
      return `${typeof value} ${String(value)}`
    case "bigint":
      return "a bigint"
    case "symbol":
      return "a symbol"
    case "undefined":
      return "undefined"
    case "function":
      return "a function"
  }
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  try {
    const proto: unknown = Object.getPrototypeOf(value)
    if (proto === null || proto === Object.prototype) return "an object"
    const ctor: unknown = (proto as { readonly constructor?: unknown }).constructor
    const name: unknown = typeof ctor === "function" ? ctor.name : undefined
    return typeof name === "string" && name.length > 0 ? `an instance of ${name}` : "an object with a prototype"
  } catch {
    return "an object"
  }
}

class Refused {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

interface State {
  /** A lower bound on the text's length so far, to stop early on oversized values. */
  units: number
  readonly maxBytes: number
  /** Where the writer is: the root's name, then keys and indexes. Turned into text only for a refusal. */
  readonly path: Array<string | number>
}

const shownKey = (key: string): string => {
  const shown = key.length > 40 ? `${key.slice(0, 40)}...` : key
  return /^[A-Za-z_$][\w$]*$/.test(shown) ? `.${shown}` : `[${JSON.stringify(shown)}]`
}

const shownPart = (part: string | number): string => typeof part === "number" ? `[${part}]` : shownKey(part)

/** The path being written, as in `meta.user["first name"][2]`; a deep one keeps its two ends. */
const here = (state: State): string => {
  const [root, ...parts] = state.path
  const shown = parts.length > 8
    ? [...parts.slice(0, 4).map(shownPart), "...", ...parts.slice(-3).map(shownPart)]
    : parts.map(shownPart)
  return String(root) + shown.join("")
}

const grow = (state: State, units: number): void => {
  state.units += units
  if (state.units > state.maxBytes) {
    throw new Refused(`${String(state.path[0])} is more than ${state.maxBytes} bytes of JSON, the limit`)
  }
}

const writeString = (text: string, state: State, isKey: boolean): string => {
  grow(state, text.length + 2)
  const problem = textProblem(text)
  if (problem !== undefined) throw new Refused(`${isKey ? "the key of " : ""}${here(state)} ${problem}`)
  return JSON.stringify(text)
}

/**
 * Keys accepted before, as JSON: the same few keys recur in every job of a
 * worker, so each is checked and quoted once. Bounded; cleared when full.
 */
const quotedKeys = new Map<string, string>()
const maxQuotedKeys = 4096
const maxQuotedKeyLength = 64

const writeKey = (key: string, state: State): string => {
  const known = quotedKeys.get(key)
  if (known !== undefined) {
    grow(state, key.length + 2)
    return known
  }
  const quoted = writeString(key, state, true)
  if (key.length <= maxQuotedKeyLength) {
    if (quotedKeys.size >= maxQuotedKeys) quotedKeys.clear()
    quotedKeys.set(key, quoted)
  }
  return quoted
}

const writeArray = (array: ReadonlyArray<unknown>, state: State): string => {
  let out = "["
  const length = array.length
  for (let i = 0; i < length; i++) {
    state.path.push(i)
    if (!(i in array)) throw new Refused(`${here(state)} is a hole in a sparse array, which JSON cannot store`)
    if (i > 0) out += ","
    out += write(array[i], state)
    state.path.pop()
  }
  grow(state, 2)
  return out + "]"
}

const writeObject = (object: object, state: State): string => {
  const proto: unknown = Object.getPrototypeOf(object)
  if (proto !== Object.prototype && proto !== null) {
    throw new Refused(`${here(state)} is ${describe(object)}, not a plain JSON object`)
  }
  if (Object.getOwnPropertySymbols(object).length > 0) {
    throw new Refused(`${here(state)} has symbol keys, which JSON cannot store`)
  }
  let out = "{"
  const record = object as Readonly<Record<string, unknown>>
  for (const key of Object.keys(object)) {
    state.path.push(key)
    if (out.length > 1) out += ","
    out += writeKey(key, state) + ":" + write(record[key], state)
    state.path.pop()
  }
  grow(state, 2)
  return out + "}"
}

/**
 * How long PostgreSQL writes a number back (`jsonb` keeps it as `numeric`, which it prints without
 * an exponent): `1e+300` is 301 characters, `5e-324` 326. Counted against the limit, so that args
 * within it are read back within what the driver reads in one message.
 */
const storedNumberLength = (text: string): number => {
  const e = text.indexOf("e")
  if (e === -1) return text.length
  const exponent = Number(text.slice(e + 1))
  const digits = text.slice(0, e).replace(/[-.]/g, "").length
  // "-", then the digits and zeros, then "0." and a point for a fraction: an upper bound.
  return 1 + digits + Math.abs(exponent) + 2
}

const write = (value: unknown, state: State): string => {
  switch (typeof value) {
    case "string":
      return writeString(value, state, false)
    case "number": {
      if (!Number.isFinite(value)) throw new Refused(`${here(state)} is ${String(value)}, which JSON cannot store`)
      // For a finite number this is what JSON.stringify writes.
      const text = String(value)
      grow(state, storedNumberLength(text))
      return text
    }
    case "boolean":
      grow(state, 5)
      return value ? "true" : "false"
    case "object": {
      if (value === null) {
        grow(state, 4)
        return "null"
      }
      // A cycle ends here too: it nests forever.
      if (state.path.length > maxJsonDepth) {
        throw new Refused(`${here(state)} is nested more than ${maxJsonDepth} levels deep, or refers back to itself`)
      }
      return Array.isArray(value) ? writeArray(value, state) : writeObject(value, state)
    }
  }
  throw new Refused(`${here(state)} is ${describe(value)}, which JSON cannot store`)
}

/**
 * The JSON text of `value`, or why it cannot be stored as given. `root` names
 * the value in messages (`meta`, `args`); `maxBytes` bounds the UTF-8 size.
 * A getter or Proxy that throws is a refusal, never a defect.
 */
export const toJsonText = (value: unknown, root: string, maxBytes: number): JsonText | JsonRefusal => {
  try {
    const text = write(value, { units: 0, maxBytes, path: [root] })
    // A UTF-16 unit is at most 3 bytes of UTF-8: short text needs no count.
    const bytes = text.length * 3 <= maxBytes ? 0 : Buffer.byteLength(text, "utf8")
    return bytes > maxBytes
      ? { _tag: "JsonRefusal", message: `${root} is ${bytes} bytes of JSON, more than the limit of ${maxBytes}` }
      : { _tag: "JsonText", text }
  } catch (error) {
    return {
      _tag: "JsonRefusal",
      message: error instanceof Refused ? error.message : `reading ${root} threw: ${errorText(error)}`
    }
  }
}

/** The message of something thrown, without running user code that could throw again. */
export const errorText = (error: unknown): string => {
  try {
    return error instanceof Error ? error.message : describe(error)
  } catch {
    return "an unreadable error"
  }
}
