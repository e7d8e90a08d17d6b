/**
 * The thread's side of logs and spans: a `Logger` and a `Tracer` that, while
 * an attempt runs, turn each log line and each span's start, events and end
 * into `ThreadEvent`s for the node, which replays them (`replay.ts`).
 *
 * Events go out synchronously, without a fiber in between, so that a log
 * written just before a busy loop reaches the node even if the thread is
 * terminated in that loop: a log line and a span's start are sent at once,
 * with the span records gathered before them, so that a span around a busy
 * loop reaches the node too; a span's events and end wait for the end of the
 * current tick (a microtask), the next log or start, or the end of the
 * attempt. The attributes set after a span's start (those of
 * `Effect.withSpan` too) go with its end. An attempt that neither logs nor
 * makes spans sends nothing. Only the fibers of the running attempt (those
 * with its `CurrentAttempt`) are recorded: a fiber that outlives its
 * attempt logs as outside attempts, not as the next attempt's.
 *
 * Log lines are bounded, spans are not. A line that finds the thread's
 * `LogWindow` full (lines the node has not replayed yet, see logWindow.ts)
 * is dropped and counted, and a summary line (a warning: "N log lines from
 * job X dropped: the node could not keep up", annotated `droppedLogLines`)
 * says how many, at most once a second (`dropSummaryMillis`) while the
 * attempt runs, window full or not, and once when it ends. So a worker that logs faster than the node
 * replays costs the node a bounded backlog, and what it loses is counted
 * where its logs go. The window learns what the node replayed from the acks
 * the node's RPC client sends for every chunk anyway: no message of its
 * own, and sending stays synchronous (a stream written from a fiber that
 * waits for acks would never send from a thread that spins). Spans are not
 * dropped: a trace with holes would mislead, and a span costs the node a
 * map entry until it ends.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"
import { randomBytes } from "node:crypto"
import {
  cloneable,
  cloneableRecord,
  counted,
  type Meter,
  type SpanRef,
  type SpanStartEvent,
  type ThreadEvent,
  toWireCause
} from "./events.ts"
import * as LogWindow from "./logWindow.ts"

/** How often, at most, an attempt that drops lines says so while it runs; it always does when it ends. */
export const dropSummaryMillis = 1000

/** Sends a batch of events to the node (the `Events` stream's next chunk). */
export type Outlet = (events: readonly [ThreadEvent, ...Array<ThreadEvent>]) => void

/** The attempt a fiber of the thread belongs to: its number from `Recorder.begin`, none outside attempts. */
export const CurrentAttempt = Context.Reference<number | undefined>("effect-oban/threads/CurrentAttempt", {
  defaultValue: () => undefined
})

export interface Recorder {
  /** Installed in the thread: forwards the logs of attempts, and logs the rest as Effect's default logger does. */
  readonly logger: Logger.Logger<unknown, void>
  /** Installed in the thread: spans made during an attempt are recorded, the others are plain native spans. */
  readonly tracer: Tracer.Tracer
  /** Where events go from now on; events recorded before are sent to it at once. */
  readonly connect: (outlet: Outlet | undefined) => void
  /** The node replayed the oldest chunk not yet acknowledged. */
  readonly acknowledge: () => void
  /** The attempt of job `jobId` starts: its number, for the `CurrentAttempt` of its fibers. */
  readonly begin: (jobId: number) => number
  /** An attempt ended: sends what is left, and how many of its lines were dropped, before its outcome goes out. */
  readonly end: () => void
}

const randomId = (bytes: number): string => randomBytes(bytes).toString("hex")

const refOf = (span: Tracer.AnySpan): SpanRef => ({
  spanId: span.spanId,
  traceId: span.traceId,
  sampled: span.sampled
})

export const make = (): Recorder => {
  let outlet: Outlet | undefined
  let active = false
  let attempt = 0
  const isRunning = (fiber: Fiber.Fiber<unknown, unknown> | undefined): boolean =>
    active && fiber !== undefined && fiber.getRef(CurrentAttempt) === attempt
  let pending: Array<ThreadEvent | RecordedSpan> = []
  let scheduled = false
  const backlog = LogWindow.make()
  // The running attempt's job, its lines dropped since the last summary, and when that summary went.
  let jobId = 0
  let dropped = 0
  let summarized = 0

  const flush = (): void => {
    scheduled = false
    if (outlet === undefined || pending.length === 0) return
    const batch = pending.map((item) => item instanceof RecordedSpan ? item.startEvent() : item)
    pending = []
    try {
      outlet(batch as [ThreadEvent, ...Array<ThreadEvent>])
      backlog.sent()
    } catch (error) {
      backlog.lost()
      // `cloneable` should make this impossible; if it happens, say so where the thread's output goes.
      process.stderr.write(`effect-oban: ${batch.length} logs or spans of a worker thread could not be sent: ${String(error)}\n`)
    }
  }

  /**
   * Queues the summary of the lines dropped since the last one, once
   * `dropSummaryMillis` have passed since the attempt started or the last
   * summary, or at the attempt's end (`force`), full window or not: one
   * line a second is no burden, and a thread that its timeout terminates
   * has said what it dropped but for its last second. Says whether it did.
   */
  const summarize = (force: boolean): boolean => {
    if (dropped === 0) return false
    const now = Date.now()
    if (!force && now - summarized < dropSummaryMillis) return false
    backlog.add(0)
    pending.push(dropSummary(jobId, dropped, now))
    dropped = 0
    summarized = now
    return true
  }

  const push = (item: ThreadEvent | RecordedSpan, now: boolean): void => {
    pending.push(item)
    if (now) flush()
    else if (!scheduled) {
      scheduled = true
      queueMicrotask(flush)
    }
  }

  class RecordedSpan implements Tracer.Span {
    readonly _tag = "Span"
    readonly spanId = randomId(8)
    readonly traceId: string
    readonly name: string
    readonly parent: Option.Option<Tracer.AnySpan>
    readonly annotations: Context.Context<never>
    readonly links: Array<Tracer.SpanLink>
    readonly sampled: boolean
    readonly kind: Tracer.SpanKind
    status: Tracer.SpanStatus
    readonly attributes = new Map<string, unknown>()
    /** Attributes set after the start was sent: they go with the end. */
    private late: Record<string, unknown> | undefined
    private sent = false

    constructor(options: Parameters<Tracer.Tracer["span"]>[0]) {
      this.name = options.name
      this.parent = options.parent
      this.annotations = options.annotations
      this.links = options.links
      this.sampled = options.sampled
      this.kind = options.kind
      this.traceId = Option.isSome(options.parent) ? options.parent.value.traceId : randomId(16)
      this.status = { _tag: "Started", startTime: options.startTime }
      // At once: the worker may spin in this span until the thread is terminated.
      push(this, true)
    }

    startEvent(): SpanStartEvent {
      this.sent = true
      const attributes: Record<string, unknown> = {}
      for (const [key, value] of this.attributes) attributes[key] = cloneable(value)
      return {
        _tag: "SpanStart",
        id: this.spanId,
        parent: Option.isSome(this.parent) ? refOf(this.parent.value) : undefined,
        name: this.name,
        kind: this.kind,
        sampled: this.sampled,
        start: this.status.startTime,
        attributes: this.attributes.size === 0 ? undefined : attributes,
        links: this.links.length === 0
          ? undefined
          : this.links.map((link) => ({ span: refOf(link.span), attributes: cloneableRecord(link.attributes) ?? {} }))
      }
    }

    end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
      if (this.status._tag === "Ended") return
      this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
      push({
        _tag: "SpanEnd",
        id: this.spanId,
        end: endTime,
        failure: exit._tag === "Failure" ? toWireCause(exit.cause) : undefined,
        attributes: cloneableRecord(this.late)
      }, false)
    }

    attribute(key: string, value: unknown): void {
      if (this.status._tag === "Ended") return
      this.attributes.set(key, value)
      if (this.sent) (this.late ??= {})[key] = value
    }

    event(name: string, startTime: bigint, attributes?: Record<string, unknown>): void {
      if (this.status._tag === "Ended") return
      push({ _tag: "SpanEvent", id: this.spanId, name, time: startTime, attributes: cloneableRecord(attributes) }, false)
    }

    addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
      // Links cross with the start only.
      if (this.status._tag === "Ended" || this.sent) return
      for (const link of links) this.links.push(link)
    }
  }

  const logger = Logger.make<unknown, void>((options) => {
    if (!isRunning(options.fiber)) return Logger.defaultLogger.log(options)
    if (backlog.isFull()) {
      dropped++
      if (summarize(false)) flush()
      return
    }
    summarize(false)
    const { cause, date, fiber, logLevel, message } = options
    const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
    const spans = fiber.getRef(References.CurrentLogSpans)
    const meter: Meter = { bytes: 0 }
    const event: ThreadEvent = {
      _tag: "Log",
      level: logLevel,
      message: cloneable(Array.isArray(message) ? message : [message], meter) as ReadonlyArray<unknown>,
      cause: toWireCause(cause, meter),
      date: date.getTime(),
      time: fiber.getRef(Clock.Clock).currentTimeNanosUnsafe(),
      annotations: cloneableRecord(fiber.getRef(References.CurrentLogAnnotations), meter),
      spans: spans.length === 0 ? undefined : spans.map(([label, start]) => [label, start] as const),
      span: span instanceof RecordedSpan ? span.spanId : undefined
    }
    backlog.add(meter.bytes)
    push(event, true)
  })

  const tracer = Tracer.make({
    // Called by the fiber that makes the span.
    span: (options) => isRunning(Fiber.getCurrent()) ? new RecordedSpan(options) : new Tracer.NativeSpan(options)
  })

  return {
    logger,
    tracer,
    connect: (next) => {
      backlog.disconnected()
      outlet = next
      flush()
    },
    acknowledge: () => {
      backlog.acknowledged()
      if (active && summarize(false)) flush()
    },
    begin: (job) => {
      active = true
      jobId = job
      summarized = Date.now()
      return ++attempt
    },
    end: () => {
      active = false
      summarize(true)
      flush()
    }
  }
}

/** The warning that counts an attempt's dropped lines, replayed on the node like the others. */
const dropSummary = (jobId: number, dropped: number, now: number): ThreadEvent => ({
  _tag: "Log",
  level: "Warn",
  message: [`${counted(dropped, "log line")} from job ${jobId} dropped: the node could not keep up`],
  cause: undefined,
  date: now,
  time: BigInt(now) * 1_000_000n,
  annotations: { droppedLogLines: dropped },
  spans: undefined,
  span: undefined
})
