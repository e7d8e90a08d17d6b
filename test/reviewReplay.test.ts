/**
 * Review of the node's replay of thread spans (`replay.ts`), driven with the
 * events a thread sends: what the node keeps of an attempt's spans.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type { ThreadEvent } from "../src/internal/threads/events.ts"
import { endOpenSpans, makeSink, replay } from "../src/internal/threads/replay.ts"

/** A native span that counts the calls to its `end` (an exporter's span may not tolerate two). */
class CountingSpan extends Tracer.NativeSpan {
  ends = 0
  override end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.ends++
    super.end(endTime, exit)
  }
}

const made: Array<CountingSpan> = []
const tracer = Tracer.make({
  span: (options) => {
    const span = new CountingSpan(options)
    made.push(span)
    return span
  }
})

const job = new Tracer.NativeSpan({
  name: "oban.perform",
  parent: Option.none(),
  annotations: Context.empty(),
  links: [],
  startTime: 0n,
  kind: "consumer",
  sampled: true
})

const ref = (spanId: string) => ({ spanId, traceId: job.traceId, sampled: true })

const start = (id: string, parent: string): ThreadEvent => ({
  _tag: "SpanStart",
  id,
  parent: ref(parent),
  name: `span ${id}`,
  kind: "internal",
  sampled: true,
  start: 1n,
  attributes: undefined,
  links: undefined
})

const end = (id: string): ThreadEvent => ({ _tag: "SpanEnd", id, end: 2n, failure: undefined, attributes: undefined })

describe("thread span replay, reviewed", () => {
  it("the node does not keep the spans of an attempt once they ended", () => {
    const sink = makeSink(Context.make(Tracer.Tracer, tracer).pipe(Context.add(Tracer.ParentSpan, job)))
    for (let i = 0; i < 10_000; i++) replay(sink, [start(`s${i}`, job.spanId), end(`s${i}`)])
    assert.strictEqual(made.length, 10_000)
    assert.isTrue(made.every((span) => span.status._tag === "Ended"))
    assert.strictEqual(sink.spans?.size ?? 0, 0)
  })

  it("a span started after its parent ended stays in the job's trace, under the job's span", () => {
    made.length = 0
    const sink = makeSink(Context.make(Tracer.Tracer, tracer).pipe(Context.add(Tracer.ParentSpan, job)))
    replay(sink, [start("parent", job.spanId), start("open", "parent"), end("parent"), start("late", "parent")])
    const [parent, open, late] = made
    assert.strictEqual(Option.getOrUndefined(open!.parent), parent)
    assert.strictEqual(late!.traceId, job.traceId)
    assert.strictEqual(Option.getOrUndefined(late!.parent), job)
  })

  it("a span the node ended when it stopped the thread is not ended again by a late end from the thread", () => {
    made.length = 0
    const sink = makeSink(Context.make(Tracer.Tracer, tracer).pipe(Context.add(Tracer.ParentSpan, job)))
    replay(sink, [start("stopped", job.spanId)])
    endOpenSpans(sink)
    const status = made[0]!.status
    replay(sink, [end("stopped")])
    assert.strictEqual(made[0]!.ends, 1)
    assert.strictEqual(made[0]!.status, status)
    assert.isTrue(Exit.hasInterrupts((status as Extract<Tracer.SpanStatus, { _tag: "Ended" }>).exit))
  })
})
