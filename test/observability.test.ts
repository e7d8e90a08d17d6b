/**
 * Spans, metrics, logs and events, observed with an in-memory tracer, metric
 * snapshots, a capturing logger and the node's event stream.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, Metric, Option, References, Schema, Stream, Tracer } from "effect"
import { Chain, Migrations, Oban, Worker, Workflow } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { dropSchemaOnClose, pgLayer, testLayer, uniquePrefix } from "./support/db.ts"
import { startNode } from "./support/node.ts"

/** A tracer that records every span it starts. */
const recordingTracer = Effect.map(Effect.tracer, (base) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = base.span(options)
      spans.push(span)
      return span
    }
  })
  return { tracer, spans }
})

const parentId = (span: Tracer.Span): string | undefined =>
  Option.match(span.parent, { onNone: () => undefined, onSome: (parent) => parent.spanId })

const Greet = Worker.make("ObsGreet", {
  args: Schema.Struct({ name: Schema.String }),
  perform: (job) => Effect.log(`hello ${job.args.name}`)
})
const Fail = Worker.make("ObsFail", {
  args: Schema.Struct({}),
  maxAttempts: 1,
  perform: () => Effect.fail("nope")
})
const Nap = Worker.make("ObsNap", { args: Schema.Struct({}), perform: () => Worker.snooze("1 minute") })

describe("traces, metrics and logs", () => {
  const prefix = uniquePrefix("obs")
  const TestLive = ObanTest.layer({ workers: [Greet, Fail, Nap], prefix }).pipe(
    Layer.provideMerge(Layer.effectDiscard(Effect.gen(function*() {
      yield* dropSchemaOnClose(prefix)
      yield* Migrations.run({ prefix })
    })).pipe(Layer.provideMerge(pgLayer())))
  )
  layer(TestLive)((it) => {
    it.effect("one trace runs from the request that enqueued to the job's perform span", () =>
      Effect.gen(function*() {
        const { tracer, spans } = yield* recordingTracer
        yield* Effect.gen(function*() {
          yield* Oban.insert(Greet.job({ name: "ada" })).pipe(Effect.withSpan("http.request"))
          yield* Oban.insert(Fail.job({}))
          yield* ObanTest.drainQueue({ queue: "default" })
        }).pipe(Effect.withTracer(tracer))
        const request = spans.find((span) => span.name === "http.request")!
        const insert = spans.find((span) => span.name === "oban.insert" && parentId(span) === request.spanId)!
        assert.isDefined(insert)
        const performs = spans.filter((span) => span.name === "oban.perform")
        const greet = performs.find((span) => span.attributes.get("oban.job.worker") === "ObsGreet")!
        assert.strictEqual(greet.traceId, request.traceId)
        assert.strictEqual(parentId(greet), insert.spanId)
        assert.strictEqual(greet.attributes.get("oban.outcome"), "completed")
        assert.strictEqual(greet.attributes.get("oban.job.queue"), "default")
        assert.strictEqual(greet.attributes.get("oban.job.attempt"), 1)
        assert.strictEqual(greet.status._tag, "Ended")
        if (greet.status._tag === "Ended") assert.strictEqual(greet.status.exit._tag, "Success")
        const failed = performs.find((span) => span.attributes.get("oban.job.worker") === "ObsFail")!
        assert.strictEqual(failed.attributes.get("oban.outcome"), "failed")
        if (failed.status._tag === "Ended") assert.strictEqual(failed.status.exit._tag, "Failure")
        // Enqueue and perform are the two ends of a message's life.
        assert.strictEqual(insert.kind, "producer")
        assert.strictEqual(greet.kind, "consumer")
      }))

    it.effect("with tracing switched off, an insert stores no traceparent and its job still runs", () =>
      Effect.gen(function*() {
        const { tracer, spans } = yield* recordingTracer
        const job = yield* Oban.insert(Greet.job({ name: "untraced" })).pipe(
          Effect.withSpan("http.request"),
          Effect.withTracerEnabled(false),
          Effect.withTracer(tracer)
        )
        assert.deepStrictEqual(job.meta, {})
        const stored = yield* Oban.getJob(job.id)
        assert.deepStrictEqual(Option.map(stored, (stored) => stored.meta), Option.some({}))
        yield* ObanTest.drainQueue({ queue: "default" }).pipe(Effect.withTracer(tracer))
        const ran = yield* Oban.getJob(job.id)
        assert.strictEqual(Option.map(ran, (ran) => ran.state).pipe(Option.getOrUndefined), "completed")
        assert.isUndefined(spans.find((span) => span.name === "http.request"))
        // Run with tracing on, its perform span starts a trace of its own.
        const perform = spans.find((span) => span.name === "oban.perform" && span.attributes.get("oban.job.id") === job.id)!
        assert.isDefined(perform)
        assert.isTrue(Option.isNone(perform.parent))
      }))

    it.effect("under the native tracer (no backend) inserts store the caller's span as traceparent, if any", () =>
      Effect.gen(function*() {
        const tracer = yield* Effect.tracer
        assert.strictEqual(tracer, Tracer.nativeTracer)
        // In a span of the caller's: its own traceparent, which the perform span continues.
        const [request, inside] = yield* Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          const job = yield* Oban.insert(Greet.job({ name: "native" }))
          return [span, job] as const
        }).pipe(Effect.withSpan("http.request"))
        assert.strictEqual(inside.meta["traceparent"], `00-${request.traceId}-${request.spanId}-01`)
        const [workflowRequest, workflow] = yield* Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          return [span, yield* Workflow.insert(Workflow.make("native-flow").add("a", Greet.job({ name: "step" })))] as const
        }).pipe(Effect.withSpan("http.request"))
        assert.strictEqual(
          workflow.jobs["a"]!.meta["traceparent"],
          `00-${workflowRequest.traceId}-${workflowRequest.spanId}-01`
        )
        // A chain runs in a transaction of its own; its jobs still carry the caller's span, not the transaction's.
        const [chainRequest, chained] = yield* Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          return [span, yield* Chain.insert("native-chain", [Greet.job({ name: "c1" }), Greet.job({ name: "c2" })])] as const
        }).pipe(Effect.withSpan("http.request"))
        for (const job of chained) {
          assert.strictEqual(job.meta["traceparent"], `00-${chainRequest.traceId}-${chainRequest.spanId}-01`)
        }
        // An external parent (a trace that came in) is continued by every kind of insert.
        const external = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" })
        const fromExternal = yield* Effect.all([
          Oban.insert(Greet.job({ name: "ext" })),
          Effect.map(Workflow.insert(Workflow.make("native-ext").add("a", Greet.job({ name: "ext" }))), (w) => w.jobs["a"]!),
          Effect.map(Chain.insert("native-ext", [Greet.job({ name: "ext" })]), (jobs) => jobs[0]!)
        ]).pipe(Effect.withParentSpan(external))
        for (const job of fromExternal) {
          assert.strictEqual(job.meta["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        }
        // Outside any span, or with tracing switched off: no trace to continue, so none is made up.
        const outside = yield* Oban.insertAll([Greet.job({ name: "a" }), Greet.job({ name: "b" })])
        const untraced = yield* Effect.all([
          Oban.insert(Greet.job({ name: "off" })),
          Effect.map(Workflow.insert(Workflow.make("native-off").add("a", Greet.job({ name: "off" }))), (w) => w.jobs["a"]!),
          Effect.map(Chain.insert("native-off", [Greet.job({ name: "off" })]), (jobs) => jobs[0]!)
        ]).pipe(Effect.withSpan("http.request"), Effect.withTracerEnabled(false))
        const unspanned = yield* Chain.insert("native-none", [Greet.job({ name: "none" })])
        for (const job of [...outside, ...untraced, ...unspanned]) assert.notProperty(job.meta, "traceparent")
        const stored = yield* Oban.getJob(inside.id)
        assert.deepStrictEqual(Option.map(stored, (job) => job.meta["traceparent"]), Option.some(inside.meta["traceparent"]))
        // With a tracer installed, the same insert stores its own oban.insert span, a child of the caller's.
        const { tracer: recording, spans } = yield* recordingTracer
        const traced = yield* Oban.insert(Greet.job({ name: "traced" })).pipe(
          Effect.withSpan("http.request"),
          Effect.withTracer(recording)
        )
        const insert = spans.find((span) => span.name === "oban.insert")!
        assert.strictEqual(traced.meta["traceparent"], `00-${insert.traceId}-${insert.spanId}-01`)
        yield* ObanTest.drainQueue({ queue: "default" })
      }))

    it.effect("an insert under Tracer.DisablePropagation stores no traceparent", () =>
      Effect.gen(function*() {
        const { tracer } = yield* recordingTracer
        const job = yield* Oban.insert(Greet.job({ name: "private" })).pipe(
          Effect.withSpan("http.request"),
          Effect.provideService(Tracer.DisablePropagation, true),
          Effect.withTracer(tracer)
        )
        assert.deepStrictEqual(job.meta, {})
        assert.deepStrictEqual(Option.map(yield* Oban.getJob(job.id), (stored) => stored.meta), Option.some({}))
        yield* ObanTest.drainQueue({ queue: "default" })
      }))

    it.effect("a stored traceparent that is not a valid W3C one is not continued", () =>
      Effect.gen(function*() {
        const { tracer, spans } = yield* recordingTracer
        // What jobs inserted with tracing off carried before, and two other malformed ones.
        const bogus = ["00-noop-noop-00", "00-00000000000000000000000000000000-28bca78e32720451-01", "not a traceparent"]
        const jobs = yield* Oban.insertAll(bogus.map((traceparent) => Greet.job({ name: "bogus" }, { meta: { traceparent } })))
        const valid = "00-4d3007489cca4b41dddefe18327140e6-28bca78e32720451-03"
        const continued = yield* Oban.insert(Greet.job({ name: "valid" }, { meta: { traceparent: valid } }))
        yield* ObanTest.drainQueue({ queue: "default" }).pipe(Effect.withTracer(tracer))
        const performOf = (id: number) =>
          spans.find((span) => span.name === "oban.perform" && span.attributes.get("oban.job.id") === id)!
        for (const job of jobs) {
          assert.strictEqual(job.meta["traceparent"], bogus[jobs.indexOf(job)])
          const perform = performOf(job.id)
          assert.isTrue(Option.isNone(perform.parent), `job with ${String(job.meta["traceparent"])}`)
          assert.match(perform.traceId, /^[0-9a-f]{32}$/)
        }
        // A valid one is continued, its flags read by their lowest bit (03: sampled).
        const perform = performOf(continued.id)
        assert.strictEqual(perform.traceId, "4d3007489cca4b41dddefe18327140e6")
        assert.strictEqual(parentId(perform), "28bca78e32720451")
        assert.isTrue(perform.sampled)
      }))

    it.effect("metrics count attempts by queue, worker and outcome, with duration and queue-time histograms", () =>
      Effect.gen(function*() {
        yield* Oban.insertAll([Greet.job({ name: "a" }), Greet.job({ name: "b" }), Fail.job({}), Nap.job({})])
        yield* ObanTest.drainQueue({ queue: "default" })
        const snapshot = yield* Metric.snapshot
        const count = (worker: string, outcome: string) =>
          snapshot.filter((m) =>
            m.id === "oban_jobs_total" && m.attributes?.["worker"] === worker && m.attributes?.["outcome"] === outcome
          ).reduce((total, m) => total + Number((m.state as { count: number | bigint }).count), 0)
        assert.isAtLeast(count("ObsGreet", "completed"), 2)
        assert.isAtLeast(count("ObsFail", "failed"), 1)
        assert.isAtLeast(count("ObsNap", "snoozed"), 1)
        const duration = snapshot.find((m) => m.id === "oban_job_duration_ms" && m.attributes?.["worker"] === "ObsGreet")
        assert.isDefined(duration)
        assert.isAtLeast(Number((duration!.state as { count: number }).count), 2)
        assert.isDefined(snapshot.find((m) => m.id === "oban_job_queue_time_ms"))
      }))

    it.effect("logs inside perform carry the job id, worker, queue and attempt", () =>
      Effect.gen(function*() {
        const lines: Array<{ message: unknown; annotations: Readonly<Record<string, unknown>> }> = []
        const capture = Logger.make(({ fiber, message }) => {
          lines.push({ message, annotations: fiber.getRef(References.CurrentLogAnnotations) })
        })
        const job = yield* Oban.insert(Greet.job({ name: "logs" }))
        yield* ObanTest.drainQueue({ queue: "default" }).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture]))
        )
        const line = lines.find((entry) => String(entry.message).includes("hello logs"))!
        assert.deepStrictEqual(
          [line.annotations["jobId"], line.annotations["worker"], line.annotations["queue"], line.annotations["attempt"]],
          [job.id, "ObsGreet", "default", 1]
        )
      }))
  })
})

describe("Oban.events", () => {
  const prefix = uniquePrefix("events")
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("delivers each event once, in order per job", () =>
      Effect.gen(function*() {
        const node = yield* startNode({ prefix, node: "events", queues: { default: 5 }, workers: [Greet, Fail, Nap] })
        const collector = yield* Effect.forkChild(
          node.oban.events.pipe(Stream.take(9), Stream.runCollect)
        )
        yield* Effect.yieldNow
        yield* Effect.sleep("50 millis")
        const [ok, bad, nap] = yield* node.oban.insertAll([Greet.job({ name: "e" }), Fail.job({}), Nap.job({})])
        const events = Array.from(yield* Fiber.join(collector).pipe(Effect.timeout("10 seconds")))
        const of = (id: number) => events.filter((event) => event.jobId === id).map((event) => event.kind)
        assert.deepStrictEqual(of(ok!.id), ["inserted", "started", "completed"])
        assert.deepStrictEqual(of(bad!.id), ["inserted", "started", "failed"])
        assert.deepStrictEqual(of(nap!.id).slice(0, 3), ["inserted", "started", "snoozed"])
        const failed = events.find((event) => event.jobId === bad!.id && event.kind === "failed")!
        assert.strictEqual(failed.willRetry, false)
        assert.isDefined(failed.durationMillis)
        assert.isTrue(events.every((event) => event.workflow === undefined))
      }))

    it.effect("names the workflow and step of a workflow job's events", () =>
      Effect.gen(function*() {
        const node = yield* startNode({ prefix, node: "events-flow", queues: { default: 5 }, workers: [Greet] })
        const collector = yield* Effect.forkChild(node.oban.events.pipe(Stream.take(6), Stream.runCollect))
        yield* Effect.yieldNow
        yield* Effect.sleep("50 millis")
        yield* node.oban.insertWorkflow(
          Workflow.make("events-42").add("first", Greet.job({ name: "a" })).add("second", Greet.job({ name: "b" }), {
            deps: ["first"]
          })
        )
        const events = Array.from(yield* Fiber.join(collector).pipe(Effect.timeout("10 seconds")))
        assert.deepStrictEqual(
          events.map((event) => [event.kind, event.workflow?.id, event.workflow?.step]).sort(),
          [
            ["completed", "events-42", "first"],
            ["completed", "events-42", "second"],
            ["inserted", "events-42", "first"],
            ["inserted", "events-42", "second"],
            ["started", "events-42", "first"],
            ["started", "events-42", "second"]
          ]
        )
      }))
  })
})
