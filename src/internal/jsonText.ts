/**
 * Strict JSON text for `jsonb` columns: a value is written only when it reads
 * back exactly as given. `JSON.stringify` silently changes many values (a
 * `Date` becomes a string, a `Map` becomes `{}`, `NaN` becomes `null`,
 * `undefined` and functions vanish, a hole in an array becomes `null`, a
 * `toJSON` method replaces the value), and PostgreSQL refuses text with a NUL
 * character or a lone UTF-16 surrogate. This module refuses all of those,
 * naming where in the value the problem is, and reads every property once.
 */

/** Why a value was refused. */
export interface JsonRefusal {
  readonly _tag: "JsonRefusal"
  readonly message: string
}

/** The JSON text of an accepted value and its size in UTF-8 bytes. */
export interface JsonText {
  readonly _tag: "JsonText"
  readonly text: string
  readonly bytes: number
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
  text.includes("\u0000")
    ? "contains the NUL character (U+0000), which PostgreSQL cannot store"
    : loneSurrogate.test(text)
    ? "contains a lone UTF-16 surrogate, which is not a Unicode character"
    : undefined

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
  readonly ancestors: Set<object>
}

const keyPath = (path: string, key: string): string => {
  const shown = key.length > 40 ? `${key.slice(0, 40)}...` : key
  return /^[A-Za-z_$][\w$]*$/.test(shown) ? `${path}.${shown}` : `${path}[${JSON.stringify(shown)}]`
}

const grow = (state: State, units: number): void => {
  state.units += units
  if (state.units > state.maxBytes) throw new Refused(`is more than ${state.maxBytes} bytes of JSON, the limit`)
}

const writeString = (text: string, path: string, state: State): string => {
  grow(state, text.length + 2)
  const problem = textProblem(text)
  if (problem !== undefined) throw new Refused(`${path} ${problem}`)
  return JSON.stringify(text)
}

const writeArray = (array: ReadonlyArray<unknown>, path: string, depth: number, state: State): string => {
  let out = "["
  const length = array.length
  for (let i = 0; i < length; i++) {
    if (!(i in array)) throw new Refused(`${path}[${i}] is a hole in a sparse array, which JSON cannot store`)
    if (i > 0) out += ","
    out += write(array[i], `${path}[${i}]`, depth + 1, state)
  }
  grow(state, 2)
  return out + "]"
}

const writeObject = (object: object, path: string, depth: number, state: State): string => {
  const proto: unknown = Object.getPrototypeOf(object)
  if (proto !== Object.prototype && proto !== null) {
    throw new Refused(`${path} is ${describe(object)}, not a plain JSON object`)
  }
  if (Object.getOwnPropertySymbols(object).length > 0) {
    throw new Refused(`${path} has symbol keys, which JSON cannot store`)
  }
  let out = "{"
  const record = object as Readonly<Record<string, unknown>>
  for (const key of Object.keys(object)) {
    const at = keyPath(path, key)
    if (out.length > 1) out += ","
    out += writeString(key, `the key of ${at}`, state) + ":" + write(record[key], at, depth + 1, state)
  }
  grow(state, 2)
  return out + "}"
}

const write = (value: unknown, path: string, depth: number, state: State): string => {
  switch (typeof value) {
    case "string":
      return writeString(value, path, state)
    case "number": {
      if (!Number.isFinite(value)) throw new Refused(`${path} is ${String(value)}, which JSON cannot store`)
      const text = JSON.stringify(value)
      grow(state, text.length)
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
      if (depth >= maxJsonDepth) throw new Refused(`${path} is nested more than ${maxJsonDepth} levels deep`)
      if (state.ancestors.has(value)) throw new Refused(`${path} refers back to itself (a cycle)`)
      state.ancestors.add(value)
      const text = Array.isArray(value)
        ? writeArray(value, path, depth, state)
        : writeObject(value, path, depth, state)
      state.ancestors.delete(value)
      return text
    }
  }
  throw new Refused(`${path} is ${describe(value)}, which JSON cannot store`)
}

/**
 * The JSON text of `value`, or why it cannot be stored as given. `root` names
 * the value in messages (`meta`, `args`); `maxBytes` bounds the UTF-8 size.
 * A getter or Proxy that throws is a refusal, never a defect.
 */
export const toJsonText = (value: unknown, root: string, maxBytes: number): JsonText | JsonRefusal => {
  const state: State = { units: 0, maxBytes, ancestors: new Set() }
  try {
    const text = write(value, root, 0, state)
    const bytes = Buffer.byteLength(text, "utf8")
    return bytes > maxBytes
      ? { _tag: "JsonRefusal", message: `${root} is ${bytes} bytes of JSON, more than the limit of ${maxBytes}` }
      : { _tag: "JsonText", text, bytes }
  } catch (error) {
    if (error instanceof Refused) {
      return { _tag: "JsonRefusal", message: error.message.startsWith("is ") ? `${root} ${error.message}` : error.message }
    }
    return { _tag: "JsonRefusal", message: `reading ${root} threw: ${errorText(error)}` }
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
