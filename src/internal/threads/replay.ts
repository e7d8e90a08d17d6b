/**
 * The node's side of a thread's logs and spans: each `ThreadEvent` of an
 * attempt is replayed in the context of the fiber that runs the attempt, so
 * that it meets the node's own loggers, minimum log level, tracer and log
 * annotations (the job's among them), as a log or span of a main-thread job
 * would. A log keeps its level, message, cause, annotations (the thread's
 * over the node's), log spans and date, and runs under the span it was
 * written in; a span is made by the node's tracer under its parent (the
 * job's `oban.perform` span or a thread span replayed before it), with the
 * thread's start and end times, kind, attributes, events and exit.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as RpcClient from "effect/rpc/RpcClient"
import type { AckEncoded } from "effect/rpc/RpcMessage"
import * as Tracer from "effect/Tracer"
import { fromWireCause, type LogEvent, type SpanRef, type SpanStartEvent, type ThreadEvent } from "./events.ts"

/** Where an attempt's events are replayed: its fiber's context, and its open thread spans as the node made them. */
export interface Sink {
  readonly context: Context.Context<never>
  spans: Map<string, Tracer.Span> | undefined
}

export const makeSink = (context: Context.Context<never>): Sink => ({ context, spans: undefined })

/**
 * Replays `events`, in order, synchronously. An event that throws (a tracer
 * or logger of the node's that fails) is logged as a warning and the others
 * still replay.
 */
export const replay = (sink: Sink, events: ReadonlyArray<ThreadEvent>): void => {
  for (const event of events) {
    try {
      replayOne(sink, event)
    } catch (defect) {
      Effect.runForkWith(sink.context)(
        Effect.logWarning("a log or span of a worker thread could not be replayed", Cause.die(defect))
      )
    }
  }
}

const replayOne = (sink: Sink, event: ThreadEvent): void => {
  switch (event._tag) {
    case "Log":
      replayLog(sink, event)
      break
    case "SpanStart":
      replaySpanStart(sink, event)
      break
    case "SpanEvent":
      sink.spans?.get(event.id)?.event(event.name, event.time, event.attributes)
      break
    case "SpanEnd": {
      const span = sink.spans?.get(event.id)
      if (span === undefined) break
      setAttributes(span, event.attributes)
      span.end(event.end, event.failure === undefined ? Exit.void : Exit.failCause(fromWireCause(event.failure)))
      // Not kept: a long attempt may make a span per item. What still names it falls back to the job's span.
      sink.spans!.delete(event.id)
      break
    }
  }
}

/**
 * Ends the thread spans that never ended (their thread was terminated or
 * crashed), now, as interrupted.
 */
export const endOpenSpans = (sink: Sink): void => {
  if (sink.spans === undefined) return
  const clock = Context.get(sink.context, Clock.Clock)
  for (const span of sink.spans.values()) {
    if (span.status._tag === "Started") span.end(clock.currentTimeNanosUnsafe(), Exit.interrupt())
  }
  sink.spans.clear()
}

const setAttributes = (span: Tracer.Span, attributes: Readonly<Record<string, unknown>> | undefined): void => {
  if (attributes === undefined) return
  for (const key in attributes) span.attribute(key, attributes[key])
}

/**
 * The node's span for a span the thread names: an open replayed thread span;
 * the job's span, for itself or another span of its trace (one that ended,
 * whose node span is no longer kept); or an external one.
 */
const spanOf = (sink: Sink, ref: SpanRef): Tracer.AnySpan => {
  const replayed = sink.spans?.get(ref.spanId)
  if (replayed !== undefined) return replayed
  const parent = Context.getOrUndefined(sink.context, Tracer.ParentSpan)
  return parent !== undefined && (parent.spanId === ref.spanId || parent.traceId === ref.traceId)
    ? parent
    : Tracer.externalSpan(ref)
}

const replaySpanStart = (sink: Sink, event: SpanStartEvent): void => {
  const context = sink.context
  if (!Context.get(context, References.TracerEnabled)) return
  const span = Context.get(context, Tracer.Tracer).span({
    name: event.name,
    parent: event.parent === undefined ? Option.none() : Option.some(spanOf(sink, event.parent)),
    annotations: Context.empty(),
    links: event.links === undefined
      ? []
      : event.links.map((link) => ({ span: spanOf(sink, link.span), attributes: link.attributes })),
    startTime: event.start,
    kind: event.kind,
    root: event.parent === undefined,
    sampled: event.sampled
  })
  // As `Effect.withSpan` does on the main thread: the node's span annotations, then the span's own.
  setAttributes(span, Context.get(context, References.TracerSpanAnnotations))
  setAttributes(span, event.attributes)
  ;(sink.spans ??= new Map()).set(event.id, span)
}

const replayLog = (sink: Sink, event: LogEvent): void => {
  const base = sink.context
  if (LogLevel.isGreaterThan(Context.get(base, References.MinimumLogLevel), event.level)) return
  const loggers = Context.get(base, Logger.CurrentLoggers)
  if (loggers.size === 0) return
  let context = Context.add(base, Clock.Clock, clockAt(Context.get(base, Clock.Clock), event.date, event.time))
  if (event.annotations !== undefined) {
    context = Context.add(context, References.CurrentLogAnnotations, {
      ...Context.get(base, References.CurrentLogAnnotations),
      ...event.annotations
    })
  }
  if (event.spans !== undefined) {
    context = Context.add(context, References.CurrentLogSpans, [
      ...Context.get(base, References.CurrentLogSpans),
      ...event.spans.map(([label, start]): [string, number] => [label, start])
    ])
  }
  const span = event.span === undefined ? undefined : sink.spans?.get(event.span)
  if (span !== undefined) context = Context.add(context, Tracer.ParentSpan, span)
  const cause = fromWireCause(event.cause)
  const date = new Date(event.date)
  // A fiber of its own, run to its end here, so that each logger sees this context as the fiber's.
  const fiber = Effect.runForkWith(context)(Effect.withFiber((fiber) => {
    for (const logger of loggers) {
      logger.log({ message: event.message, logLevel: event.level, cause, fiber, date })
    }
    return Effect.void
  }))
  // A logger that throws kills that fiber, where nobody would see it: `replay` reports it.
  const exit = fiber.pollUnsafe()
  if (exit !== undefined && Exit.isFailure(exit)) throw Cause.squash(exit.cause)
}

/**
 * A clock that reads the time of the log line, so that what a logger stamps
 * from the clock (the span event of `Logger.tracerLogger`) has the thread's
 * time, not the time it was replayed.
 */
const clockAt = (clock: Clock.Clock, millis: number, nanos: bigint): Clock.Clock => ({
  currentTimeMillisUnsafe: () => millis,
  currentTimeMillis: Effect.succeed(millis),
  currentTimeNanosUnsafe: () => nanos,
  currentTimeNanos: Effect.succeed(nanos),
  monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
  monotonicTimeNanos: clock.monotonicTimeNanos,
  sleep: (duration) => clock.sleep(duration)
})

/**
 * The slot's RPC protocol, holding back the `Ack` the client sends for each
 * chunk of the `Events` stream (the only stream on a slot) as soon as the
 * chunk is in the slot's queue, until `release`, which the slot calls once
 * it has replayed everything queued. The thread lets only a `LogWindow`
 * of log lines go unacknowledged (logWindow.ts), so held back until
 * replayed, the acks bound what the node holds of a thread's lines, in the
 * queue and on the wire together; acked on arrival, they would not: Node
 * delivers up to 1,000 messages of a worker in one turn, each acked as it
 * is taken, and the thread sends on meanwhile.
 */
export const withheldAcks = (protocol: RpcClient.Protocol["Service"]) => {
  let owed: Array<readonly [clientId: number, ack: AckEncoded]> = []
  const release = Effect.suspend(() => {
    if (owed.length === 0) return Effect.void
    const due = owed
    owed = []
    // An ack that cannot go out (a defect of the worker protocol) is for a thread that is gone.
    return Effect.catchCause(
      Effect.forEach(due, ([clientId, ack]) => protocol.send(clientId, ack), { discard: true }),
      () => Effect.void
    )
  })
  const held = RpcClient.Protocol.of({
    ...protocol,
    send: (clientId, request, transferables) => {
      if (request._tag !== "Ack") return protocol.send(clientId, request, transferables)
      owed.push([clientId, request])
      return Effect.void
    }
  })
  return { protocol: held, release }
}
