/**
 * The rules of `eventOrder.ts` on their own, with fake timers: what waits
 * behind a gate (an insert outside a transaction) or behind a job's
 * announcement (an insert inside one), for how long, and in which order it
 * goes out, also at shutdown. The database-backed cases are in
 * eventOrder.test.ts.
 */
import { afterEach, assert, beforeEach, describe, it, vi } from "vitest"
import type { EventKind, JobEvent } from "../src/Events.ts"
import {
  awaitAnnouncement,
  closeGate,
  makeEventOrder,
  maxHoldMillis,
  openGate,
  publishFirst,
  publishInOrder,
  stopEventOrder
} from "../src/internal/eventOrder.ts"

const event = (kind: EventKind, jobId: number): JobEvent => ({
  kind,
  jobId,
  worker: "W",
  queue: "default",
  attempt: kind === "inserted" ? 0 : 1,
  at: new Date(0)
})

/** An order whose sent events are kept as `kind#jobId`. */
const recording = () => {
  const sent: Array<string> = []
  const order = makeEventOrder((sentEvent) => sent.push(`${sentEvent.kind}#${sentEvent.jobId}`))
  return { order, sent }
}

describe("event order rules", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it("with nothing to wait for, events go out at once", () => {
    const { order, sent } = recording()
    publishInOrder(order, [event("started", 1), event("completed", 1)])
    assert.deepStrictEqual(sent, ["started#1", "completed#1"])
  })

  it("behind a gate, every event waits, in order, until the insert has announced its jobs", () => {
    const { order, sent } = recording()
    const gate = openGate(order)
    publishInOrder(order, [event("started", 1)])
    publishInOrder(order, [event("started", 2)])
    publishInOrder(order, [event("completed", 1)])
    assert.deepStrictEqual(sent, [])
    publishFirst(order, [event("inserted", 1)])
    closeGate(order, gate)
    assert.deepStrictEqual(sent, ["inserted#1", "started#1", "started#2", "completed#1"])
  })

  it("an event waits for the gates open when it was published, not for later ones", () => {
    const { order, sent } = recording()
    const first = openGate(order)
    publishInOrder(order, [event("started", 1)])
    const second = openGate(order)
    closeGate(order, first)
    assert.deepStrictEqual(sent, ["started#1"])
    closeGate(order, second)
  })

  it("a gate that never closes holds an event a second at most", () => {
    const { order, sent } = recording()
    openGate(order)
    publishInOrder(order, [event("started", 1)])
    vi.advanceTimersByTime(maxHoldMillis - 1)
    assert.deepStrictEqual(sent, [])
    vi.advanceTimersByTime(1)
    assert.deepStrictEqual(sent, ["started#1"])
  })

  it("behind an announcement, only that job's events wait", () => {
    const { order, sent } = recording()
    awaitAnnouncement(order, [1])
    publishInOrder(order, [event("started", 1)])
    publishInOrder(order, [event("started", 2)])
    publishInOrder(order, [event("completed", 1)])
    assert.deepStrictEqual(sent, ["started#2"])
    publishFirst(order, [event("inserted", 1)])
    assert.deepStrictEqual(sent, ["started#2", "inserted#1", "started#1", "completed#1"])
    // Announced: its later events go out at once.
    publishInOrder(order, [event("failed", 1)])
    assert.deepStrictEqual(sent.at(-1), "failed#1")
  })

  it("an announcement that never comes holds the job's events a second at most, then no longer", () => {
    const { order, sent } = recording()
    awaitAnnouncement(order, [1])
    publishInOrder(order, [event("started", 1)])
    vi.advanceTimersByTime(maxHoldMillis)
    assert.deepStrictEqual(sent, ["started#1"])
    publishInOrder(order, [event("completed", 1)])
    assert.deepStrictEqual(sent, ["started#1", "completed#1"])
  })

  it("an event that waited behind a gate and then for its job's announcement waits a second in all", () => {
    const { order, sent } = recording()
    awaitAnnouncement(order, [1])
    openGate(order)
    publishInOrder(order, [event("started", 1)])
    vi.advanceTimersByTime(maxHoldMillis)
    assert.deepStrictEqual(sent, ["started#1"])
  })

  it("at shutdown a job's events go out in order: those behind its announcement before those behind a gate", () => {
    const { order, sent } = recording()
    awaitAnnouncement(order, [1])
    publishInOrder(order, [event("started", 1)])
    openGate(order)
    publishInOrder(order, [event("completed", 1)])
    assert.deepStrictEqual(sent, [])
    stopEventOrder(order)
    assert.deepStrictEqual(sent, ["started#1", "completed#1"])
    assert.deepStrictEqual([order.gates.size, order.held.length, order.jobHeld.size, order.pending.size], [0, 0, 0, 0])
  })

  it("ids never announced (a rollback) are forgotten after ten minutes, their waiting events sent first", () => {
    const { order, sent } = recording()
    awaitAnnouncement(order, [1, 2, 3])
    vi.advanceTimersByTime(10 * 60_000)
    awaitAnnouncement(order, [4])
    assert.deepStrictEqual(Array.from(order.pending.keys()), [4])
    publishInOrder(order, [event("started", 1)])
    assert.deepStrictEqual(sent, ["started#1"])
  })

  it("at most 200,000 ids are remembered, the oldest forgotten first", () => {
    const { order } = recording()
    awaitAnnouncement(order, Array.from({ length: 200_001 }, (_, index) => index + 1))
    assert.strictEqual(order.pending.size, 200_000)
    assert.isFalse(order.pending.has(1))
    assert.isTrue(order.pending.has(200_001))
  })
})
