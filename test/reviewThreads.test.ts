/**
 * Review of the thread workers' logs and spans (#14 part 3): cases the first
 * tests did not cover. The node installs a logger that throws on one line,
 * and a tracer that keeps every span.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Tracer from "effect/Tracer"
import * as Oban from "../src/Oban.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"
import { Lingers, LogsBoom, LogsHuge, LogsThenExits, queue, Sleeps, SpanThenSpin } from "./support/reviewThreadWorkers.ts"
import { observe, observedNode, settled as settledIn } from "./support/threadCapture.ts"

/** Keeps every line but "boom", on which the logger throws, as a broken logger of the node's would. */
const { capture: throwsOnBoom, lines, spans, tracer } = observe({ throwsOn: "boom" })

const prefix = uniquePrefix("review_threads")

const nodeLayer = (isolation: "thread" | "process") =>
  observedNode({
    prefix,
    node: `review-${isolation}`,
    queues: { [queue]: 1 },
    workers: [LogsBoom, SpanThenSpin, Lingers, Sleeps, LogsThenExits, LogsHuge],
    pollInterval: "100 millis",
    shutdownGracePeriod: "1 second",
    threads: { size: 1, isolation }
  }, { loggers: [throwsOnBoom], tracer, minimumLogLevel: "Info" })

const settled = (id: number) => settledIn(prefix, id)

/**
 * A 50 MB line (it used to cross whole, copied twice, to every logger of the
 * node) arrives as its first 64 KiB and a marker; the job completes.
 */
const hugeLineIsCut = Effect.gen(function*() {
  // Both suites share the prefix, so job ids repeat: only the lines from now on count.
  const from = lines.length
  const job = yield* Oban.insert(LogsHuge.job({ megabytes: 50 }))
  yield* settled(job.id)
  assert.strictEqual((yield* jobRow(prefix, job.id)).state, "completed")
  const line = lines.slice(from).find((line) => line.message[0] === "huge" && line.annotations["jobId"] === job.id)
  const kept = 64 * 1024 - "huge".length
  assert.strictEqual(line?.message[1], `${"x".repeat(kept)}… [${50 * 1024 * 1024 - kept} bytes cut]`)
})

layer(nodeLayer("thread").pipe(Layer.provideMerge(testLayer(prefix))), { excludeTestServices: true, timeout: 60_000 })(
  "thread telemetry, reviewed",
  (it) => {
    it.effect("a node logger that throws on a thread's line is reported as a warning, and the next lines still arrive", () =>
      Effect.gen(function*() {
        const job = yield* Oban.insert(LogsBoom.job({}))
        yield* settled(job.id)
        assert.strictEqual((yield* jobRow(prefix, job.id)).state, "completed")
        assert.isDefined(lines.find((line) => line.message[0] === "after the boom"))
        assert.isDefined(
          lines.find((line) => line.message[0] === "a log or span of a worker thread could not be replayed"),
          "the logger's failure was reported"
        )
      }), 30_000)

    it.effect("a log from a fiber that outlives its job is not attributed to the next job on the thread", () =>
      Effect.gen(function*() {
        const first = yield* Oban.insert(Lingers.job({ millis: 500 }))
        yield* settled(first.id)
        const second = yield* Oban.insert(Sleeps.job({ millis: 1500 }))
        yield* settled(second.id)
        assert.strictEqual((yield* jobRow(prefix, second.id)).state, "completed")
        const late = lines.filter((line) => line.message[0] === "late, from a fiber of the earlier job")
        assert.deepStrictEqual(late.filter((line) => line.annotations["jobId"] === second.id), [])
      }), 30_000)

    it.effect("a span around a busy loop reaches the node, ended as interrupted, when the timeout stops the thread", () =>
      Effect.gen(function*() {
        const job = yield* Oban.insert(SpanThenSpin.job({ millis: 10_000 }, { timeout: "300 millis" }))
        yield* settled(job.id)
        assert.strictEqual((yield* jobRow(prefix, job.id)).errors[0]!.kind, "timeout")
        const perform = spans.find((span) => span.name === "oban.perform" && span.attributes.get("oban.job.id") === job.id)
        assert.isDefined(perform)
        const spinning = spans.find((span) => span.name === "review.spinning" && span.traceId === perform!.traceId)
        assert.isDefined(spinning, "the node's tracer received the span")
        assert.strictEqual(spinning!.status._tag, "Ended")
        assert.isTrue(Exit.hasInterrupts((spinning!.status as Extract<Tracer.SpanStatus, { _tag: "Ended" }>).exit))
      }), 30_000)

    it.effect("a thread's last log and open span arrive when it exits, and the span ends as interrupted", () =>
      Effect.gen(function*() {
        const job = yield* Oban.insert(LogsThenExits.job({}))
        yield* settled(job.id)
        const row = yield* jobRow(prefix, job.id)
        assert.strictEqual(row.errors[0]!.kind, "defect")
        assert.isDefined(lines.find((line) => line.message[0] === "last words" && line.annotations["jobId"] === job.id))
        const perform = spans.find((span) => span.name === "oban.perform" && span.attributes.get("oban.job.id") === job.id)
        const exiting = spans.find((span) => span.name === "review.exiting" && span.traceId === perform?.traceId)
        assert.isDefined(exiting)
        assert.strictEqual(exiting!.status._tag, "Ended")
        // process.exit emits no "error" event: the node says so from the thread's exit code.
        yield* waitFor(
          "the node to warn of the thread's exit",
          Effect.sync(() => lines.some((line) => line.level === "Warn" && line.message[0] === "a worker thread exited with code 3"))
        )
      }), 30_000)

    it.effect("a 50 MB log line arrives cut to 64 KiB, with a marker saying how many bytes were cut", () =>
      hugeLineIsCut, 30_000)
  }
)

layer(nodeLayer("process").pipe(Layer.provideMerge(testLayer(prefix))), { excludeTestServices: true, timeout: 60_000 })(
  "thread telemetry, reviewed, isolation: process",
  (it) => {
    it.effect("a 50 MB log line from a child process arrives cut too", () => hugeLineIsCut, 30_000)
  }
)
