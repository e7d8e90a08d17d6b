/**
 * What a worker thread tells the node about an attempt besides its outcome:
 * its logs and its spans, as plain values that cross by structured clone
 * (the `Events` RPC of `protocol.ts`). The thread records them
 * (`recorder.ts`), the node replays them into its own loggers and tracer
 * (`replay.ts`). Both sides run this same module, so the shapes need no
 * schema beyond structured clone; `cloneable` keeps what the user logs
 * within what clones, and within `maxPayloadBytes`.
 */
import * as Cause from "effect/Cause"
import type * as LogLevel from "effect/LogLevel"
import type * as Tracer from "effect/Tracer"
import { Buffer } from "node:buffer"

/** A span named across the boundary: a thread span's id, or the job's `oban.perform` span, or another. */
export interface SpanRef {
  readonly spanId: string
  readonly traceId: string
  readonly sampled: boolean
}

/** One reason of a `Cause`, with its error or defect made cloneable. */
export type WireReason =
  | { readonly _tag: "Fail"; readonly error: unknown }
  | { readonly _tag: "Die"; readonly defect: unknown }
  | { readonly _tag: "Interrupt"; readonly fiberId: number | undefined }

/** A log line of the thread, with its own annotations, log spans and span (a thread span's id). */
export interface LogEvent {
  readonly _tag: "Log"
  readonly level: LogLevel.LogLevel
  readonly message: ReadonlyArray<unknown>
  readonly cause: ReadonlyArray<WireReason> | undefined
  /** Milliseconds since the epoch: the log's date. */
  readonly date: number
  /** Nanoseconds since the epoch, as the thread's clock read them when logging (for span events). */
  readonly time: bigint
  readonly annotations: Readonly<Record<string, unknown>> | undefined
  readonly spans: ReadonlyArray<readonly [label: string, startMillis: number]> | undefined
  readonly span: string | undefined
}

/** A span the thread started: its parent is a thread span, the job's span, or none (a root). */
export interface SpanStartEvent {
  readonly _tag: "SpanStart"
  readonly id: string
  readonly parent: SpanRef | undefined
  readonly name: string
  readonly kind: Tracer.SpanKind
  readonly sampled: boolean
  /** Nanoseconds since the epoch. */
  readonly start: bigint
  readonly attributes: Readonly<Record<string, unknown>> | undefined
  readonly links: ReadonlyArray<{ readonly span: SpanRef; readonly attributes: Readonly<Record<string, unknown>> }> | undefined
}

/** An event on a thread span (`span.event`). */
export interface SpanEventEvent {
  readonly _tag: "SpanEvent"
  readonly id: string
  readonly name: string
  readonly time: bigint
  readonly attributes: Readonly<Record<string, unknown>> | undefined
}

/** A thread span ended: its failure if it failed, and the attributes set after its start was sent. */
export interface SpanEndEvent {
  readonly _tag: "SpanEnd"
  readonly id: string
  readonly end: bigint
  readonly failure: ReadonlyArray<WireReason> | undefined
  readonly attributes: Readonly<Record<string, unknown>> | undefined
}

export type ThreadEvent = LogEvent | SpanStartEvent | SpanEventEvent | SpanEndEvent

const maxDepth = 8

/**
 * The most bytes of user values that one part of what crosses carries: a
 * log line's message, its cause, its annotations; a span attribute, the
 * attributes of a span event or end. Beyond it a string is cut with a
 * marker saying how many bytes went (`"xxxx… [52428800 bytes cut]"`), and
 * what is left of an array, object, map or set, or a typed array that does
 * not fit, is replaced by a marker too. A string counts its UTF-8 bytes,
 * a key its length, any other value 8. 64 KiB is far more than a readable
 * log line and far less than what would hurt the node: a 50 MB line
 * otherwise crosses whole, is copied twice, and reaches every logger.
 */
export const maxPayloadBytes = 64 * 1024

/** What is left of a part's `maxPayloadBytes` while it is cloned. */
interface Budget {
  left: number
}

const budget = (): Budget => ({ left: maxPayloadBytes })

/** Adds up the bytes that cloned parts take, as `maxPayloadBytes` counts them (the recorder's bound). */
export interface Meter {
  bytes: number
}

const spend = <A>(value: A, left: Budget, meter: Meter | undefined): A => {
  if (meter !== undefined) meter.bytes += maxPayloadBytes - left.left
  return value
}

/**
 * `value` as something structured clone accepts, cut to `maxPayloadBytes`:
 * functions and symbols become their names, class instances their `toJSON`
 * or their own fields, errors an `Error` with their name, message and
 * stack; nesting deeper than 8 levels (or a cycle) is cut off. A value that
 * throws when read (a getter) becomes a placeholder. `meter`, if given,
 * adds the bytes it takes.
 */
export const cloneable = (value: unknown, meter?: Meter): unknown => {
  const left = budget()
  return spend(cloneWithin(value, left), left, meter)
}

const cloneWithin = (value: unknown, left: Budget): unknown => {
  try {
    return cloneAt(value, 0, left)
  } catch {
    return unreadable
  }
}

const unreadable = "[unreadable value]"

const cloneAt = (value: unknown, depth: number, left: Budget): unknown => {
  switch (typeof value) {
    case "string":
      return cutString(value, left)
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      left.left -= 8
      return value
    case "function":
      return cutString(`[Function ${value.name === "" ? "anonymous" : value.name}]`, left)
    case "symbol":
      return cutString(value.toString(), left)
  }
  if (value === null) return null
  if (depth >= maxDepth) return "[Object]"
  if (ArrayBuffer.isView(value)) return cutBytes(value, left)
  if (value instanceof Date) {
    left.left -= 8
    return value
  }
  if (value instanceof RegExp) return new RegExp(cutString(value.source, left), value.flags)
  if (value instanceof Error) return errorOf(value, left)
  if (Array.isArray(value)) return cutItems(value, depth, left)
  if (value instanceof Map) return cutEntries(value, depth, left)
  if (value instanceof Set) return new Set(cutItems(Array.from(value), depth, left))
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === "function") {
    try {
      return cloneAt(toJSON.call(value), depth + 1, left)
    } catch {
      return unreadable
    }
  }
  return cloneRecordAt(value as Record<string, unknown>, depth, left)
}

/** `n` and the noun, plural unless `n` is 1: "2 more keys". */
export const counted = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`

/** A string within the budget, or its first bytes and a marker saying how many were cut. */
const cutString = (text: string, left: Budget): string => {
  const bytes = Buffer.byteLength(text, "utf8")
  if (bytes <= left.left) {
    left.left -= bytes
    return text
  }
  const kept = prefixOf(text, Math.max(0, left.left))
  left.left = 0
  return `${kept}… [${bytes - Buffer.byteLength(kept, "utf8")} bytes cut]`
}

/** The longest start of `text` that has at most `bytes` bytes of UTF-8, cut between characters. */
const prefixOf = (text: string, bytes: number): string => {
  const encoded = Buffer.from(text.slice(0, bytes), "utf8")
  if (encoded.length <= bytes) return encoded.toString("utf8")
  let end = bytes
  // Back to the first byte of the character that `bytes` falls in (continuation bytes are 10xxxxxx).
  while (end > 0 && (encoded[end]! & 0xc0) === 0x80) end--
  return encoded.toString("utf8", 0, end)
}

const cutBytes = (view: ArrayBufferView, left: Budget): unknown => {
  if (view.byteLength <= left.left) {
    left.left -= view.byteLength
    return view
  }
  left.left = 0
  return `[${view.constructor.name} of ${view.byteLength} bytes cut]`
}

/** The items that fit, and a marker for the rest. */
const cutItems = (items: ReadonlyArray<unknown>, depth: number, left: Budget): Array<unknown> => {
  const out: Array<unknown> = []
  for (let i = 0; i < items.length; i++) {
    if (left.left <= 0) {
      out.push(`[${counted(items.length - i, "more item")} cut]`)
      break
    }
    out.push(cloneAt(items[i], depth + 1, left))
  }
  return out
}

const cutEntries = (map: ReadonlyMap<unknown, unknown>, depth: number, left: Budget): Map<unknown, unknown> => {
  const out = new Map<unknown, unknown>()
  let i = 0
  for (const [key, item] of map) {
    if (left.left <= 0) {
      out.set("…", `[${counted(map.size - i, "more item")} cut]`)
      break
    }
    out.set(cloneAt(key, depth + 1, left), cloneAt(item, depth + 1, left))
    i++
  }
  return out
}

const cloneRecordAt = (record: Readonly<Record<string, unknown>>, depth: number, left: Budget): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  const keys = Object.keys(record)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (left.left <= 0) {
      out["…"] = `[${counted(keys.length - i, "more key")} cut]`
      break
    }
    left.left -= key.length
    try {
      out[key] = cloneAt(record[key], depth + 1, left)
    } catch {
      out[key] = unreadable
    }
  }
  return out
}

/**
 * A record's values made cloneable, cut to `maxPayloadBytes` in all; none
 * for an empty record. `meter`, if given, adds the bytes it takes.
 */
export const cloneableRecord = (
  record: Readonly<Record<string, unknown>> | undefined,
  meter?: Meter
): Readonly<Record<string, unknown>> | undefined => {
  if (record === undefined) return undefined
  for (const _ in record) {
    const left = budget()
    return spend(cloneRecordAt(record, 0, left), left, meter)
  }
  return undefined
}

/** Structured clone keeps an error's message and stack, and its name only for the standard ones. */
const errorOf = (error: Error, left: Budget): Error => {
  const copy = new Error(cutString(error.message, left))
  copy.name = cutString(error.name, left)
  if (error.stack !== undefined) copy.stack = cutString(error.stack, left)
  return copy
}

/** A cause's reasons as they cross; none for an empty cause. */
export const toWireCause = (cause: Cause.Cause<unknown>, meter?: Meter): ReadonlyArray<WireReason> | undefined => {
  if (cause.reasons.length === 0) return undefined
  // One budget for all the reasons: a cause of a thousand failures is one part.
  const left = budget()
  return spend(
    cause.reasons.map((reason): WireReason => {
      if (Cause.isFailReason(reason)) return { _tag: "Fail", error: cloneWithin(reason.error, left) }
      if (Cause.isDieReason(reason)) return { _tag: "Die", defect: cloneWithin(reason.defect, left) }
      return { _tag: "Interrupt", fiberId: reason.fiberId }
    }),
    left,
    meter
  )
}

/** The cause again, on the node. */
export const fromWireCause = (reasons: ReadonlyArray<WireReason> | undefined): Cause.Cause<unknown> =>
  reasons === undefined ? Cause.empty : Cause.fromReasons(reasons.map((reason) => {
    switch (reason._tag) {
      case "Fail":
        return Cause.makeFailReason(reason.error)
      case "Die":
        return Cause.makeDieReason(reason.defect)
      case "Interrupt":
        return Cause.makeInterruptReason(reason.fiberId)
    }
  }))
