/**
 * Logs and spans made in a thread worker reach the node's own Logger and
 * Tracer (#14 part 3): the node here installs a capturing logger (with
 * `Logger.tracerLogger`, which turns logs into span events), a tracer that
 * keeps every span, and a minimum log level of Debug, and the assertions
 * read what they received.
 */
import { assert, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import type * as Tracer from "effect/Tracer"
import * as Oban from "../src/Oban.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"
import { type Line, type Observed, observe, observedNode, settled } from "./support/threadCapture.ts"
import { Chatty, LogThenSpin, queue } from "./support/threadTelemetryWorkers.ts"

const nodeLayer = (prefix: string, seen: Observed, isolation: "thread" | "process") =>
  observedNode({
    prefix,
    node: `telemetry-${isolation}`,
    queues: { [queue]: 2 },
    workers: [Chatty, LogThenSpin],
    pollInterval: "100 millis",
    shutdownGracePeriod: "1 second",
    threads: { size: 1, isolation }
  }, { loggers: [seen.capture, Logger.tracerLogger], tracer: seen.tracer, minimumLogLevel: "Debug" })

const lineOf = (seen: Observed, text: string): Line | undefined => seen.lines.find((line) => line.message[0] === text)

/** The job's `oban.perform` span, once it ended. */
const performSpanOf = (seen: Observed, id: number) =>
  Effect.gen(function*() {
    const find = () => seen.spans.find((span) => span.name === "oban.perform" && span.attributes.get("oban.job.id") === id)
    yield* waitFor("the perform span to end", Effect.sync(() => find()?.status._tag === "Ended"))
    return find()!
  })

const spanNamed = (seen: Observed, name: string, traceId: string): Tracer.NativeSpan => {
  const span = seen.spans.find((span) => span.name === name && span.traceId === traceId)
  assert.isDefined(span, `the node's tracer received ${name}`)
  return span!
}

const ended = (span: Tracer.Span) => {
  assert.strictEqual(span.status._tag, "Ended", `${span.name} ended`)
  return span.status as Extract<Tracer.SpanStatus, { _tag: "Ended" }>
}

const parentOf = (span: Tracer.Span) => Option.getOrUndefined(span.parent)

const millis = (nanos: bigint) => Number(nanos / 1_000_000n)

/**
 * Times taken in the thread or child process come from its own clock, whose
 * origin can differ from the node's by a few milliseconds (seen: 4 ms in CI),
 * so comparisons across the two allow this much.
 */
const skewMillis = 25
const skewNanos = BigInt(skewMillis) * 1_000_000n

/** Runs a `Chatty` job and checks its log lines and spans on the node. */
const chattyArrives = (prefix: string, seen: Observed) =>
  Effect.gen(function*() {
    const job = yield* Oban.insert(Chatty.job({}))
    yield* settled(prefix, job.id)
    assert.strictEqual((yield* jobRow(prefix, job.id)).state, "completed")
    const perform = yield* performSpanOf(seen, job.id)
    const performEnded = ended(perform)

    const hello = lineOf(seen, "hello from the thread")
    assert.isDefined(hello, "the thread's log line reached the node's logger")
    assert.strictEqual(hello!.level, "Info")
    assert.deepStrictEqual(hello!.message, ["hello from the thread", { n: 1 }])
    const { annotations } = hello!
    assert.deepStrictEqual(
      [annotations["jobId"], annotations["worker"], annotations["queue"], annotations["attempt"], annotations["own"]],
      [job.id, "ThreadChatty", queue, 1, "mine"]
    )
    assert.deepStrictEqual(hello!.logSpans.map(([label]) => label), ["work"])
    // Logged under the job's span, at the time the thread wrote it.
    assert.strictEqual(hello!.span, perform)
    assert.isAtLeast(hello!.date.getTime(), millis(perform.startTime) - skewMillis)
    assert.isAtMost(hello!.date.getTime(), millis(performEnded.endTime) + skewMillis)

    const odd = lineOf(seen, "odd values")?.message[1] as { fn: unknown; at: unknown; error: unknown } | undefined
    assert.strictEqual(odd?.fn, "[Function named]")
    assert.deepStrictEqual(odd?.at, new Date(0))
    assert.instanceOf(odd?.error, Error)
    assert.strictEqual((odd?.error as Error).message, "kept")

    // The node's minimum level (Debug) crossed: the thread's default (Info) would have dropped this.
    assert.strictEqual(lineOf(seen, "a debug line")?.level, "Debug")
    assert.isUndefined(lineOf(seen, "a trace line"))

    const outer = spanNamed(seen, "thread.outer", perform.traceId)
    const inner = spanNamed(seen, "thread.inner", perform.traceId)
    const failing = spanNamed(seen, "thread.failing", perform.traceId)
    assert.strictEqual(parentOf(outer), perform)
    assert.strictEqual(parentOf(inner), outer)
    assert.strictEqual(parentOf(failing), perform)
    assert.strictEqual(outer.kind, "client")
    assert.deepStrictEqual(Object.fromEntries(outer.attributes), { "thread.attr": "a", "thread.late": true })
    assert.deepStrictEqual(Object.fromEntries(inner.attributes), { depth: 2 })

    // Start and end as measured in the thread: nested in each other and in the job's span.
    const [outerEnded, innerEnded, failingEnded] = [ended(outer), ended(inner), ended(failing)]
    assert.isTrue(perform.startTime - skewNanos <= outer.startTime && outerEnded.endTime <= performEnded.endTime + skewNanos)
    assert.isTrue(outer.startTime <= inner.startTime && innerEnded.endTime <= outerEnded.endTime)
    assert.isTrue(Exit.isSuccess(outerEnded.exit))
    assert.isTrue(Exit.isFailure(failingEnded.exit))
    const reason = (failingEnded.exit as Exit.Failure<unknown, unknown>).cause.reasons[0]!
    assert.isTrue(Cause.isFailReason(reason))
    assert.include(String((reason as Cause.Fail<unknown>).error), "the span fails")

    // The warning was written inside thread.outer: the logger sees that span, and the node's
    // tracerLogger made it an event of it, at the thread's time.
    const warning = lineOf(seen, "inside the outer span")
    assert.strictEqual(warning?.level, "Warn")
    assert.strictEqual(warning?.span, outer)
    const events = outer.events.filter(([name]) => name === "inside the outer span")
    assert.strictEqual(events.length, 1)
    assert.isTrue(outer.startTime <= events[0]![1] && events[0]![1] <= outerEnded.endTime)
    assert.strictEqual(events[0]![2]["jobId"], job.id)
  })

/** Runs a `LogThenSpin` job into its timeout and checks that its log line and span arrived. */
const spinLogArrives = (prefix: string, seen: Observed) =>
  Effect.gen(function*() {
    const job = yield* Oban.insert(LogThenSpin.job({ millis: 10_000 }, { timeout: "300 millis" }))
    yield* settled(prefix, job.id)
    const row = yield* jobRow(prefix, job.id)
    assert.strictEqual(row.state, "retryable")
    assert.strictEqual(row.errors[0]!.kind, "timeout")
    const perform = yield* performSpanOf(seen, job.id)
    const line = seen.lines.find((line) => line.message[0] === "about to spin" && line.annotations["jobId"] === job.id)
    assert.isDefined(line, "the log line reached the node's logger")
    const spinning = spanNamed(seen, "thread.spinning", perform.traceId)
    assert.strictEqual(line!.span, spinning)
    assert.strictEqual(parentOf(spinning), perform)
    // Never ended in the thread: the node ends it, as interrupted, when it stops the thread.
    assert.isTrue(Exit.hasInterrupts(ended(spinning).exit))
  })

const prefix = uniquePrefix("thread_telemetry")
const seen = observe()

layer(nodeLayer(prefix, seen, "thread").pipe(Layer.provideMerge(testLayer(prefix))), {
  excludeTestServices: true,
  timeout: 60_000
})("thread telemetry", (it) => {
  it.effect("logs and spans made in a thread reach the node's logger and tracer, in the job's trace", () =>
    chattyArrives(prefix, seen), 30_000)

  it.effect("a log written before a busy loop arrives although the timeout terminates the thread", () =>
    spinLogArrives(prefix, seen), 30_000)
})

const processPrefix = uniquePrefix("thread_telemetry_proc")
const processSeen = observe()

layer(nodeLayer(processPrefix, processSeen, "process").pipe(Layer.provideMerge(testLayer(processPrefix))), {
  excludeTestServices: true,
  timeout: 60_000
})("thread telemetry, isolation: process", (it) => {
  it.effect("logs and spans cross from a child process too", () => chattyArrives(processPrefix, processSeen), 30_000)

  it.effect("a child process's log written before a busy loop arrives although the timeout kills it", () =>
    spinLogArrives(processPrefix, processSeen), 30_000)
})
