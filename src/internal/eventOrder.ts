/**
 * Keeps the events of one job in order on the node that inserted it.
 *
 * A job inserted by this node can start here, and even finish, before the
 * insert call has published its `inserted` event: the commit wakes the
 * node's producers while the reply to the insert (or to the COMMIT of the
 * transaction around it) is still on its way. So the node's other events wait
 * for such an insert, for at most `maxHoldMillis` each; `inserted` events
 * never wait.
 *
 * - An insert inside a transaction (the caller's, or a savepoint of it)
 *   knows its job ids before the COMMIT: the events of those jobs wait until
 *   its `inserted` events are out, and nothing else does. A rolled-back one
 *   leaves ids that no event will carry (forgotten after `pendingTtlMillis`).
 * - An insert outside a transaction learns its ids only from the reply that
 *   is late: from its start until it has published (or failed) it opens a
 *   gate, and every event published meanwhile waits behind it, in order.
 *
 * Only inserts made while someone subscribes do either, so a node nobody
 * watches pays nothing.
 */
import * as PubSub from "effect/PubSub"
import type { JobEvent } from "../Events.ts"

/** The longest an event waits for an insert. */
export const maxHoldMillis = 1_000

/** How long the ids of a transaction's insert are remembered if it never publishes (it rolled back). */
const pendingTtlMillis = 10 * 60_000

/** One insert outside a transaction, whose `inserted` events may still come. */
export interface InsertGate {
  done: boolean
}

interface Held {
  readonly events: ReadonlyArray<JobEvent>
  readonly blockers: ReadonlyArray<InsertGate>
  /** The `performance.now()` after which it goes out whatever its blockers. */
  readonly until: number
}

interface JobHeld {
  readonly event: JobEvent
  readonly until: number
}

/** The node's open gates, its jobs inserted in transactions not yet announced, and what waits for them. */
export interface EventOrder {
  readonly gates: Set<InsertGate>
  /** Events waiting behind gates, in order. */
  readonly held: Array<Held>
  /** Ids inserted in a transaction whose `inserted` events are not out yet, with when (insertion order). */
  readonly pending: Map<number, number>
  /** Events of pending jobs, per job, in order. */
  readonly jobHeld: Map<number, Array<JobHeld>>
  /** Publishes what waits when its time is up. */
  timer: ReturnType<typeof setTimeout> | undefined
  timerAt: number
}

export const makeEventOrder = (): EventOrder => ({
  gates: new Set(),
  held: [],
  pending: new Map(),
  jobHeld: new Map(),
  timer: undefined,
  timerAt: Infinity
})

const publishNow = (pubsub: PubSub.PubSub<JobEvent>, events: ReadonlyArray<JobEvent>): void => {
  for (const event of events) PubSub.publishUnsafe(pubsub, event)
}

/** Stops the timer and publishes what still waits, in order (the hub is about to shut down). */
export const stopEventOrder = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  if (order.timer !== undefined) clearTimeout(order.timer)
  order.timer = undefined
  for (const gate of order.gates) gate.done = true
  order.gates.clear()
  for (const held of order.held.splice(0)) publishNow(pubsub, held.events)
  for (const waiting of order.jobHeld.values()) publishNow(pubsub, waiting.map((held) => held.event))
  order.jobHeld.clear()
  order.pending.clear()
}

/** Publishes the event, or keeps it behind its job's insert if that is not announced yet. */
const deliver = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>, event: JobEvent, now: number): void => {
  if (!order.pending.has(event.jobId)) return void PubSub.publishUnsafe(pubsub, event)
  const waiting = order.jobHeld.get(event.jobId)
  const held = { event, until: now + maxHoldMillis }
  if (waiting === undefined) order.jobHeld.set(event.jobId, [held])
  else waiting.push(held)
}

/**
 * Publishes what may go: the gated events whose gates are done or whose time
 * is up (in order), and the events of jobs whose wait is over (the job is
 * then no longer waited for).
 */
const release = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  const now = performance.now()
  while (order.held.length > 0) {
    const head = order.held[0]!
    if (head.until > now && head.blockers.some((gate) => !gate.done)) break
    order.held.shift()
    for (const event of head.events) deliver(order, pubsub, event, now)
  }
  let next = order.held.length > 0 ? order.held[0]!.until : Infinity
  for (const [jobId, waiting] of order.jobHeld) {
    if (waiting[0]!.until <= now) {
      order.jobHeld.delete(jobId)
      order.pending.delete(jobId)
      publishNow(pubsub, waiting.map((held) => held.event))
    } else if (waiting[0]!.until < next) {
      next = waiting[0]!.until
    }
  }
  if (next === Infinity || (order.timer !== undefined && order.timerAt <= next)) return
  if (order.timer !== undefined) clearTimeout(order.timer)
  order.timerAt = next
  order.timer = setTimeout(() => {
    order.timer = undefined
    order.timerAt = Infinity
    release(order, pubsub)
  }, Math.max(0, next - now))
  order.timer.unref()
}

/** Publishes `events` (none of them `inserted`) behind the inserts they may follow. */
export const publishInOrder = (
  order: EventOrder,
  pubsub: PubSub.PubSub<JobEvent>,
  events: ReadonlyArray<JobEvent>
): void => {
  if (order.gates.size === 0 && order.held.length === 0 && order.pending.size === 0) return publishNow(pubsub, events)
  const now = performance.now()
  if (order.gates.size === 0 && order.held.length === 0) {
    for (const event of events) deliver(order, pubsub, event, now)
  } else {
    order.held.push({ events, blockers: Array.from(order.gates), until: now + maxHoldMillis })
  }
  release(order, pubsub)
}

/** Publishes `inserted` events at once, then what waited for them alone. */
export const publishFirst = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>, events: ReadonlyArray<JobEvent>): void => {
  publishNow(pubsub, events)
  if (order.pending.size === 0) return
  for (const event of events) {
    order.pending.delete(event.jobId)
    const waiting = order.jobHeld.get(event.jobId)
    if (waiting !== undefined) {
      order.jobHeld.delete(event.jobId)
      publishNow(pubsub, waiting.map((held) => held.event))
    }
  }
}

/** Notes jobs inserted in a transaction: their events wait until their `inserted` events are out. */
export const awaitAnnouncement = (order: EventOrder, jobIds: ReadonlyArray<number>): void => {
  const now = performance.now()
  // Insertion order is age order: the ids of transactions that never committed go from the front.
  for (const [jobId, since] of order.pending) {
    if (now - since < pendingTtlMillis) break
    order.pending.delete(jobId)
  }
  for (const jobId of jobIds) order.pending.set(jobId, now)
}

/** Forgets jobs whose insert will not be announced (it was not written after all). */
export const forgetAnnouncement = (order: EventOrder, jobIds: ReadonlyArray<number>): void => {
  for (const jobId of jobIds) order.pending.delete(jobId)
}

/** Opens the gate of an insert outside a transaction, about to run. */
export const openGate = (order: EventOrder): InsertGate => {
  const gate: InsertGate = { done: false }
  order.gates.add(gate)
  return gate
}

/** The insert has published (or will never): what waited for it alone goes out. */
export const closeGate = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>, gate: InsertGate): void => {
  if (gate.done) return
  gate.done = true
  order.gates.delete(gate)
  release(order, pubsub)
}
