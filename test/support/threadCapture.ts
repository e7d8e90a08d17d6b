/**
 * What a node's own loggers and tracer receive from its thread workers, for
 * the tests of thread logs and spans (threadTelemetry, reviewThreads,
 * threadLogLimits): a logger and a tracer that keep everything, and a node
 * built with them in the suite's scope.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as Oban from "../../src/Oban.ts"
import type * as Worker from "../../src/Worker.ts"
import { jobRow, waitFor } from "./node.ts"

/** A log line as the node's logger received it. */
export interface Line {
  readonly level: LogLevel.LogLevel
  readonly message: ReadonlyArray<unknown>
  readonly annotations: Readonly<Record<string, unknown>>
  readonly logSpans: ReadonlyArray<readonly [string, number]>
  readonly span: Tracer.AnySpan | undefined
  readonly date: Date
}

export interface Observed {
  readonly lines: Array<Line>
  readonly spans: Array<Tracer.NativeSpan>
  /** Keeps every line in `lines`. */
  readonly capture: Logger.Logger<unknown, void>
  /** Makes native spans and keeps each in `spans`. */
  readonly tracer: Tracer.Tracer
}

/**
 * A logger and a tracer that keep what they receive. With `throwsOn`, the
 * logger throws on a line whose first part is that text (and keeps it not),
 * as a broken logger of the node's would.
 */
export const observe = (options: { readonly throwsOn?: string } = {}): Observed => {
  const lines: Array<Line> = []
  const spans: Array<Tracer.NativeSpan> = []
  const capture = Logger.make<unknown, void>(({ date, fiber, logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    if (options.throwsOn !== undefined && parts[0] === options.throwsOn) throw new Error("the node's logger broke")
    lines.push({
      level: logLevel,
      message: parts,
      annotations: fiber.getRef(References.CurrentLogAnnotations),
      logSpans: fiber.getRef(References.CurrentLogSpans),
      span: Context.getOrUndefined(fiber.context, Tracer.ParentSpan),
      date
    })
  })
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { lines, spans, capture, tracer }
}

/**
 * A node (`Oban.layer(options)`) whose loggers, tracer and minimum log
 * level are these, built into the scope of the layer (a suite's).
 */
export const observedNode = <W extends Worker.Any>(
  options: Oban.LayerOptions<W>,
  telemetry: {
    readonly loggers: ReadonlyArray<Logger.Logger<unknown, unknown>>
    readonly tracer: Tracer.Tracer
    readonly minimumLogLevel: LogLevel.LogLevel
  }
) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const scope = yield* Scope.Scope
    yield* Layer.buildWithScope(Layer.fresh(Oban.layer(options)), scope).pipe(
      Effect.provideService(References.MinimumLogLevel, telemetry.minimumLogLevel),
      Effect.provideService(Logger.CurrentLoggers, new Set(telemetry.loggers)),
      Effect.provideService(Tracer.Tracer, telemetry.tracer)
    )
  }))

/** Waits until job `id` has left `available` and `executing`. */
export const settled = (prefix: string, id: number) =>
  waitFor(`job ${id} to leave executing`, Effect.map(jobRow(prefix, id), (row) => !["available", "executing"].includes(row.state)))
