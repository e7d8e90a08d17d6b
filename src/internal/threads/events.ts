/**
 * What a worker thread tells the node about an attempt besides its outcome:
 * its logs and its spans, as plain values that cross by structured clone
 * (the `Events` RPC of `protocol.ts`). The thread records them
 * (`recorder.ts`), the node replays them into its own loggers and tracer
 * (`replay.ts`). Both sides run this same module, so the shapes need no
 * schema beyond structured clone; `cloneable` keeps what the user logs
 * within what clones.
 */
import * as Cause from "effect/Cause"
import type * as LogLevel from "effect/LogLevel"
import type * as Tracer from "effect/Tracer"

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
 * `value` as something structured clone accepts: functions and symbols
 * become their names, class instances their `toJSON` or their own fields,
 * errors an `Error` with their name, message and stack; nesting deeper than
 * 8 levels (or a cycle) is cut off. A value that throws when read (a
 * getter) becomes a placeholder.
 */
export const cloneable = (value: unknown): unknown => {
  try {
    return cloneAt(value, 0)
  } catch {
    return unreadable
  }
}

const unreadable = "[unreadable value]"

const cloneAt = (value: unknown, depth: number): unknown => {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      return value
    case "function":
      return `[Function ${value.name === "" ? "anonymous" : value.name}]`
    case "symbol":
      return value.toString()
  }
  if (value === null) return null
  if (depth >= maxDepth) return "[Object]"
  if (value instanceof Date || value instanceof RegExp || ArrayBuffer.isView(value)) return value
  if (value instanceof Error) return errorOf(value)
  if (Array.isArray(value)) return value.map((item) => cloneAt(item, depth + 1))
  if (value instanceof Map) {
    return new Map(Array.from(value, ([key, item]) => [cloneAt(key, depth + 1), cloneAt(item, depth + 1)]))
  }
  if (value instanceof Set) return new Set(Array.from(value, (item) => cloneAt(item, depth + 1)))
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === "function") {
    try {
      return cloneAt(toJSON.call(value), depth + 1)
    } catch {
      return unreadable
    }
  }
  return cloneRecordAt(value as Record<string, unknown>, depth)
}

const cloneRecordAt = (record: Readonly<Record<string, unknown>>, depth: number): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(record)) {
    try {
      out[key] = cloneAt(record[key], depth + 1)
    } catch {
      out[key] = unreadable
    }
  }
  return out
}

/** A record's values made cloneable; none for an empty record. */
export const cloneableRecord = (
  record: Readonly<Record<string, unknown>> | undefined
): Readonly<Record<string, unknown>> | undefined => {
  if (record === undefined) return undefined
  for (const _ in record) return cloneRecordAt(record, 0)
  return undefined
}

/** Structured clone keeps an error's message and stack, and its name only for the standard ones. */
const errorOf = (error: Error): Error => {
  const copy = new Error(error.message)
  copy.name = error.name
  if (error.stack !== undefined) copy.stack = error.stack
  return copy
}

/** A cause's reasons as they cross; none for an empty cause. */
export const toWireCause = (cause: Cause.Cause<unknown>): ReadonlyArray<WireReason> | undefined =>
  cause.reasons.length === 0 ? undefined : cause.reasons.map((reason): WireReason => {
    if (Cause.isFailReason(reason)) return { _tag: "Fail", error: cloneable(reason.error) }
    if (Cause.isDieReason(reason)) return { _tag: "Die", defect: cloneable(reason.defect) }
    return { _tag: "Interrupt", fiberId: reason.fiberId }
  })

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
