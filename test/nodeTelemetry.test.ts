/**
 * What a running node (producer and executor, not the testing kit) reports
 * around each attempt: the `oban.perform` span continues the enqueuing trace
 * and is the parent of the spans a worker makes, `perform` carries the job's
 * log annotations, and the metrics follow the jobs: the executing gauge while
 * they run and after they end, and one count per outcome.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Metric, Option, References, Schema, Tracer } from "effect"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("node_telemetry")
// Queues of their own, so that the metric series read here are this file's alone.
const traced = `${prefix}_traced`
const gauged = `${prefix}_gauged`

/** What `perform` saw: its span, the span it made itself, and its log annotations. */
interface Seen {
  readonly span: Tracer.AnySpan | undefined
  readonly inner: Tracer.Span
  readonly annotations: Readonly<Record<string, unknown>>
}
const seen: Array<Seen> = []

const Traced = Worker.make("TelemetryTraced", {
  args: Schema.Struct({ n: Schema.Number }),
  queue: traced,
  perform: () =>
    Effect.gen(function*() {
      const span = Option.getOrUndefined(yield* Effect.option(Effect.currentParentSpan))
      const inner = yield* Effect.makeSpan("worker.inner")
      const annotations = yield* Effect.withFiber((fiber) =>
        Effect.succeed(fiber.getRef(References.CurrentLogAnnotations))
      )
      seen.push({ span, inner, annotations })
    })
})

const release = Deferred.makeUnsafe<void>()
const Held = Worker.make("TelemetryHeld", {
  args: Schema.Struct({}),
  queue: gauged,
  perform: () => Deferred.await(release)
})

/** The value of a series of this file's queues in the node's metrics. */
const metricValue = (id: string, attributes: Readonly<Record<string, string>>) =>
  Effect.map(Metric.snapshot, (snapshot) => {
    const series = snapshot.find((metric) =>
      metric.id === id && Object.entries(attributes).every(([key, value]) => metric.attributes?.[key] === value)
    )
    if (series === undefined) return undefined
    const state = series.state as { readonly value?: number; readonly count?: number | bigint }
    return Number(state.value ?? state.count)
  })

layer(testLayer(prefix), { excludeTestServices: true })("a node's telemetry", (it) => {
  it.effect("perform runs in an oban.perform span that continues the enqueuing trace, with the job's log annotations", () =>
    Effect.gen(function*() {
      const node = yield* startNode({ prefix, node: "telemetry", queues: { [traced]: 5 }, workers: [Traced] })
      const enqueue = yield* Effect.makeSpan("http.request")
      const [job] = yield* node.oban.insertAll([Traced.job({ n: 1 })]).pipe(Effect.withParentSpan(enqueue))
      yield* waitFor("the job ran", Effect.sync(() => seen.length === 1))
      const { annotations, inner, span } = seen[0]!
      assert.isDefined(span)
      assert.strictEqual(span!._tag, "Span")
      const perform = span as Tracer.Span
      assert.strictEqual(perform.name, "oban.perform")
      assert.strictEqual(perform.traceId, enqueue.traceId)
      assert.strictEqual(perform.attributes.get("oban.job.id"), job!.id)
      assert.strictEqual(perform.attributes.get("oban.job.queue"), traced)
      assert.strictEqual(perform.attributes.get("oban.node"), "telemetry")
      // A span the worker makes is a child of the attempt's span.
      assert.strictEqual(Option.getOrUndefined(inner.parent)?.spanId, perform.spanId)
      assert.deepStrictEqual(
        [annotations["jobId"], annotations["worker"], annotations["queue"], annotations["attempt"]],
        [job!.id, "TelemetryTraced", traced, 1]
      )
      yield* waitFor("the span ended", Effect.sync(() => perform.status._tag === "Ended"))
      assert.strictEqual(perform.attributes.get("oban.outcome"), "completed")
      yield* node.stop
    }).pipe(Effect.scoped))

  it.effect("the executing gauge counts the running jobs, and is 0 once they all ended", () =>
    Effect.gen(function*() {
      const node = yield* startNode({ prefix, node: "telemetry-gauge", queues: { [gauged]: 5 }, workers: [Held] })
      const executing = metricValue("oban_jobs_executing", { queue: gauged })
      // A series from the node's start, at 0: a dashboard shows 0 for an idle queue, not "no data".
      assert.strictEqual(yield* executing, 0)
      yield* node.oban.insertAll([Held.job({}), Held.job({}), Held.job({})])
      yield* waitFor("three jobs executing", Effect.map(executing, (value) => value === 3))
      yield* Deferred.succeed(release, undefined)
      const completed = metricValue("oban_jobs_total", { queue: gauged, worker: "TelemetryHeld", outcome: "completed" })
      yield* waitFor("three attempts counted", Effect.map(completed, (value) => value === 3))
      assert.strictEqual(yield* executing, 0)
      yield* node.stop
    }).pipe(Effect.scoped))
})
