/**
 * The text of an error that has no message of its own, for its errors entry:
 * a tagged error such as `Data.TaggedError("Timeout")<{ host }>` says why it
 * failed only in its fields (and its cause). Used where a node records a failure and where a
 * thread worker's failure is sent to its node.
 */
import { cutText, firstLine } from "./errorText.ts"

/** Keys a failure shows otherwise (its tag and message), or that hold no data of the error's own. */
const shownOtherwise = new Set(["_tag", "message", "stack", "cause", "name"])

/** The most characters of fields a failure records (its message is cut to 64 KiB later anyway). */
const maxFieldsLength = 4096

/** The most characters of one string field, or of a cause's line. */
const maxStringLength = 1024

/**
 * Each value as JSON takes it, but bigints as text, binary data as its size
 * (read from the holder: a `Buffer` reaches a replacer already turned into an
 * array of its bytes by its `toJSON`), and long strings cut.
 */
function bounded(this: unknown, key: string, value: unknown): unknown {
  const original = typeof this === "object" && this !== null ? (this as Record<string, unknown>)[key] : value
  if (ArrayBuffer.isView(original) || original instanceof ArrayBuffer) return `[${original.byteLength} bytes]`
  if (typeof value === "bigint") return value.toString()
  return typeof value === "string" ? cutText(value, maxStringLength) : value
}

/**
 * The JSON of an error's own fields (`{"host":"db-2"}`), or undefined when it
 * has none or they cannot be written (a cycle, a getter that throws): a tagged
 * error without a message whose data is in its fields
 * (`Data.TaggedError("Timeout")<{ host }>`) would otherwise leave only its tag
 * in the job's errors.
 */
export const errorFields = (error: object): string | undefined => {
  try {
    const fields: Record<string, unknown> = {}
    let count = 0
    for (const key of Object.keys(error)) {
      if (shownOtherwise.has(key)) continue
      fields[key] = (error as Record<string, unknown>)[key]
      count++
    }
    if (count === 0) return undefined
    const json = JSON.stringify(fields, bounded)
    return cutText(json, maxFieldsLength)
  } catch {
    return undefined
  }
}

/** What an error's `cause` says, in one line at most 1,024 characters long, when it says anything. */
const causeText = (cause: unknown): string | undefined => {
  let text: string | undefined
  if (typeof cause === "string") text = cause
  else if (cause instanceof Error || (typeof cause === "object" && cause !== null && "_tag" in cause)) {
    const named = cause as { readonly _tag?: unknown; readonly name?: unknown; readonly message?: unknown }
    const name = typeof named._tag === "string" ? named._tag : typeof named.name === "string" ? named.name : "Error"
    text = typeof named.message === "string" && named.message !== "" ? `${name}: ${named.message}` : name
  }
  return text === undefined || text === "" ? undefined : firstLine(text, maxStringLength)
}

/**
 * The message of an error that has none of its own: its fields, and what its
 * `cause` says (`{"table":"users"}; cause: Error: connection refused`), or
 * undefined when it has neither. `Data.TaggedError("DbError")<{ cause }>`
 * wraps a driver's error this way, and would otherwise be recorded as its tag.
 */
export const unmessagedText = (error: object): string | undefined => {
  const fields = errorFields(error)
  let cause: string | undefined
  try {
    cause = causeText((error as { readonly cause?: unknown }).cause)
  } catch {
    cause = undefined
  }
  return fields === undefined
    ? cause === undefined ? undefined : `cause: ${cause}`
    : cause === undefined
    ? fields
    : `${fields}; cause: ${cause}`
}
