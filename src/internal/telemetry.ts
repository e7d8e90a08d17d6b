/**
 * Metrics, spans and trace propagation. Everything goes through Effect's own
 * `Metric` and `Tracer`, so applications choose the exporter (Otlp,
 * Prometheus, @effect/opentelemetry) and the library depends on none.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"
import type { Job } from "../Job.ts"

const durationBoundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 18 })

/** Attempts that ended: one series per queue, worker and outcome. */
const jobsTotal = (attributes: { readonly queue: string; readonly worker: string; readonly outcome: string }) =>
  Metric.counter("oban_jobs_total", {
    description: "Attempts that ended, by queue, worker and outcome",
    incremental: true,
    attributes
  })

/** How long `perform` ran, in milliseconds: one series per queue and worker. */
const jobDuration = (attributes: { readonly queue: string; readonly worker: string }) =>
  Metric.histogram("oban_job_duration_ms", {
    description: "Execution time of an attempt, in milliseconds",
    boundaries: durationBoundaries,
    attributes
  })

/**
 * How long a job waited from its `scheduled_at` to the start of an attempt, in milliseconds: one
 * series per queue and worker. A job given back at shutdown or rescued keeps its `scheduled_at`, so
 * its next start counts from when it first became due, as Oban counts it.
 */
const queueTime = (attributes: { readonly queue: string; readonly worker: string }) =>
  Metric.histogram("oban_job_queue_time_ms", {
    description: "Time from scheduled_at to the start of an attempt, in milliseconds",
    boundaries: durationBoundaries,
    attributes
  })

/** Jobs executing on this node: one series per queue. */
const executing = (attributes: { readonly queue: string }) =>
  Metric.gauge("oban_jobs_executing", { description: "Jobs executing on this node, per queue", attributes })

/** Available jobs per queue, sampled from the database. */
export const available = Metric.gauge("oban_jobs_available", { description: "Available jobs per queue (sampled)" })

/**
 * One metric instance per series (queue, worker, outcome), each with its
 * attributes built in: an instance keeps its registry key cached, while one
 * metric shared by many series (`Metric.withAttributes`) adds its attributes
 * to the context and recomputes its key whenever the series changes, on
 * every update of the hot path.
 */
const perSeries = <K, M>(make: (key: K) => M) => {
  const series = new Map<K, M>()
  return (key: K): M => {
    let metric = series.get(key)
    if (metric === undefined) {
      metric = make(key)
      series.set(key, metric)
    }
    return metric
  }
}

/** The metrics of one worker on one queue. */
export interface WorkerSeries {
  readonly queueTime: Metric.Histogram<number>
  readonly duration: Metric.Histogram<number>
  readonly total: (outcome: string) => Metric.Counter<number>
}

const workerSeries = perSeries((queue: string) =>
  perSeries((worker: string): WorkerSeries => ({
    queueTime: queueTime({ queue, worker }),
    duration: jobDuration({ queue, worker }),
    total: perSeries((outcome: string) => jobsTotal({ queue, worker, outcome }))
  }))
)
const seriesOf = (job: Pick<Job, "queue" | "worker">): WorkerSeries => workerSeries(job.queue)(job.worker)

const executingFor = perSeries((queue: string) => executing({ queue }))
const availableFor = perSeries((queue: string) => Metric.withAttributes(available, { queue }))

/**
 * What a metric update reads from a context: its registry and the ambient
 * attributes. The context of a job's fiber holds every service of the node;
 * this one holds those two alone, made again only when either changes (one
 * per set of attributes a series sets itself, see `ownAttributes`).
 */
const metricContextFor = (own: ReadonlyArray<string>) => {
  let last:
    | { readonly registry: unknown; readonly attributes: unknown; readonly context: Context.Context<never> }
    | undefined
  // The context last read: contexts do not change, and the hot path passes the same one again and again.
  let lastRead: Context.Context<never> | undefined
  return (context: Context.Context<never>): Context.Context<never> => {
    if (context === lastRead) return last!.context
    const registry = Context.get(context, Metric.MetricRegistry)
    const attributes = Context.get(context, Metric.CurrentMetricAttributes)
    if (last?.registry !== registry || last.attributes !== attributes) {
      last = {
        registry,
        attributes,
        context: Context.makeUnsafe<never>(
          new Map<string, unknown>([
            [Metric.MetricRegistry.key, registry],
            [Metric.CurrentMetricAttributes.key, ownAttributes(attributes, own)]
          ])
        )
      }
    }
    lastRead = context
    return last.context
  }
}

/**
 * The ambient attributes without those a series sets itself. A metric's own
 * attributes yield to the ambient ones of the same name, while a series' own
 * queue, worker and outcome must win, as they did when the series were
 * `Metric.withAttributes` of one metric (else every queue and worker would
 * share one series).
 */
const ownAttributes = (
  attributes: Metric.Metric.AttributeSet,
  own: ReadonlyArray<string>
): Metric.Metric.AttributeSet => {
  if (!own.some((key) => Object.hasOwn(attributes, key))) return attributes
  const rest: Record<string, string> = { ...attributes }
  for (const key of own) delete rest[key]
  return rest
}

const outcomeContext = metricContextFor(["queue", "worker", "outcome"])
const workerContext = metricContextFor(["queue", "worker"])
const queueContext = metricContextFor(["queue"])

/**
 * Counts an ended attempt and records its duration, synchronously, in the metrics of `context`;
 * `series` is the job's, when the caller has it already (from `recordStartUnsafe`).
 */
export const recordOutcomeUnsafe = (
  job: Pick<Job, "queue" | "worker">,
  outcome: string,
  durationMillis: number,
  context: Context.Context<never>,
  series: WorkerSeries = seriesOf(job)
): void => {
  series.total(outcome).updateUnsafe(1, outcomeContext(context))
  series.duration.updateUnsafe(durationMillis, workerContext(context))
}

/** Records how long a job waited to start, synchronously, in the metrics of `context`; returns the job's series. */
export const recordStartUnsafe = (
  job: Pick<Job, "queue" | "worker" | "scheduledAt">,
  startedAtMillis: number,
  context: Context.Context<never>
): WorkerSeries => {
  const series = seriesOf(job)
  const waited = startedAtMillis - job.scheduledAt.getTime()
  // Not for a job plain SQL scheduled at -infinity (read as an invalid Date): NaN would spoil the histogram's sum for good.
  if (!Number.isNaN(waited)) series.queueTime.updateUnsafe(Math.max(0, waited), workerContext(context))
  return series
}

/** Sets a queue's executing gauge, synchronously, in the metrics of `context`. */
export const setExecutingUnsafe = (queue: string, count: number, context: Context.Context<never>): void =>
  executingFor(queue).updateUnsafe(count, queueContext(context))

export const setAvailable = (queue: string, count: number) => Metric.update(availableFor(queue), count)

/**
 * Whether spans made here can be seen: not under Effect's default tracer
 * (`Tracer.nativeTracer`), which has no backend. Inserts make no span there
 * (as Effect's HTTP server makes none for a request): their jobs carry the
 * traceparent of the caller's span, if any (`callerTraceparent`).
 */
export const hasTracingBackend = (fiber: Fiber.Fiber<unknown, unknown>): boolean =>
  fiber.getRef(Tracer.Tracer) !== Tracer.nativeTracer

/** `Effect.withSpan` for a span that parents inserted jobs: none without a tracing backend (`hasTracingBackend`). */
export const withInsertSpan = (name: string, options: Tracer.SpanOptionsNoTrace) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) =>
    hasTracingBackend(fiber) ? Effect.withSpan(name, options, { captureStackTrace: false })(self) : self
  )

/** The meta key that carries the enqueuing span's context to the job (W3C traceparent). */
export const traceKey = "traceparent"

/**
 * `span` as a W3C traceparent, if it propagates: a span made while tracing is
 * switched off (`References.TracerEnabled`) has no trace to continue (its ids
 * are placeholders), so its jobs carry none. A trace id of 16 hex digits (B3's
 * 64-bit ids) is left-padded to 32, as OpenTelemetry does.
 */
export const traceparentOf = (span: Tracer.AnySpan): string | undefined => {
  if (span._tag === "Span" && Context.get(span.annotations, Tracer.DisablePropagation)) return undefined
  const traceId = span.traceId.length === 16 ? span.traceId.padStart(32, "0") : span.traceId
  return validTraceparent(`00-${traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`)
}

/**
 * `span` as the traceparent of jobs inserted with `context`: none when the
 * context asks not to propagate traces (`Tracer.DisablePropagation`).
 */
export const traceparentIn = (context: Context.Context<never>, span: Tracer.AnySpan): string | undefined =>
  Context.get(context, Tracer.DisablePropagation) ? undefined : traceparentOf(span)

/**
 * The traceparent of the span the fiber runs in (its `Tracer.ParentSpan`, an external one included),
 * if it propagates: none while tracing is switched off (`References.TracerEnabled`).
 */
export const callerTraceparent = (fiber: Fiber.Fiber<unknown, unknown>): string | undefined => {
  if (!fiber.getRef(References.TracerEnabled)) return undefined
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  return span === undefined ? undefined : traceparentIn(fiber.context, span)
}

/** The current span as a W3C traceparent, if there is one that propagates (`callerTraceparent`). */
export const currentTraceparent: Effect.Effect<string | undefined> = Effect.withFiber((fiber) =>
  Effect.succeed(callerTraceparent(fiber))
)

/**
 * A W3C traceparent of version 00: a trace id of 32 and a parent id of 16
 * lowercase hex digits, neither all zeros, and two hex digits of flags whose
 * lowest bit says whether the trace is sampled.
 */
const traceparentPattern = /^00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})$/

const validTraceparent = (text: string): string | undefined => traceparentPattern.test(text) ? text : undefined

/** The last traceparent parsed: jobs inserted together share one, and arrive together. */
let lastParsed: { readonly value: string; readonly span: Tracer.ExternalSpan | undefined } | undefined

/**
 * The enqueuing span stored in a job's meta, as a parent for its perform
 * span; none when meta holds no valid W3C traceparent (a perform span then
 * starts a trace of its own rather than continue a made-up one).
 */
export const parentFromMeta = (meta: Readonly<Record<string, unknown>>): Tracer.ExternalSpan | undefined => {
  const value = meta[traceKey]
  if (typeof value !== "string") return undefined
  if (lastParsed?.value === value) return lastParsed.span
  const match = traceparentPattern.exec(value)
  const span = match === null
    ? undefined
    : Tracer.externalSpan({ traceId: match[1]!, spanId: match[2]!, sampled: (Number.parseInt(match[3]!, 16) & 1) === 1 })
  lastParsed = { value, span }
  return span
}
