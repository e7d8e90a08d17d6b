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
 * - An insert that announces its jobs inside a transaction (the caller's, a
 *   savepoint of it, or one of the library's own) knows their ids before the
 *   COMMIT: the events of those jobs wait until its `inserted` events are
 *   out, and nothing else does. Ids whose announcement never comes (a
 *   rollback) are forgotten after `pendingTtlMillis`, or sooner past
 *   `maxPending`.
 * - An insert that commits in its own statement learns its ids only from the
 *   reply that is late: from its start until it has published (or failed) it
 *   opens a gate, and every event published meanwhile waits behind it, in
 *   order.
 *
 * Only inserts made while someone subscribes do either, so a node nobody
 * watches pays nothing.
 */
import type { JobEvent } from "../Events.ts"

/** The longest an event waits for an insert. */
export const maxHoldMillis = 1_000

/** How long the ids of a transaction's insert are remembered if it never announces them (it rolled back). */
const pendingTtlMillis = 10 * 60_000

/** The most ids remembered; the oldest go first. */
const maxPending = 200_000

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
  /** Hands an event to the subscribers. */
  readonly send: (event: JobEvent) => void
  readonly gates: Set<InsertGate>
  /** Events waiting behind gates, in order. */
  readonly held: Array<Held>
  /** Ids whose `inserted` events are not out yet, with when they were noted (in that order). */
  readonly pending: Map<number, number>
  /** Events of pending jobs, per job, in order; the map in order of the first one's deadline. */
  readonly jobHeld: Map<number, Array<JobHeld>>
  /** Publishes what waits when its time is up. */
  timer: ReturnType<typeof setTimeout> | undefined
  timerAt: number
}

export const makeEventOrder = (send: (event: JobEvent) => void): EventOrder => ({
  send,
  gates: new Set(),
  held: [],
  pending: new Map(),
  jobHeld: new Map(),
  timer: undefined,
  timerAt: Infinity
})

const sendAll = (order: EventOrder, events: ReadonlyArray<JobEvent>): void => {
  for (const event of events) order.send(event)
}

/** Sends what waited for job `jobId` and stops waiting for it. */
const letGo = (order: EventOrder, jobId: number): void => {
  order.pending.delete(jobId)
  const waiting = order.jobHeld.get(jobId)
  if (waiting === undefined) return
  order.jobHeld.delete(jobId)
  for (const held of waiting) order.send(held.event)
}

/** Stops the timer and sends what still waits, in order (the hub is about to shut down). */
export const stopEventOrder = (order: EventOrder): void => {
  if (order.timer !== undefined) clearTimeout(order.timer)
  order.timer = undefined
  for (const gate of order.gates) gate.done = true
  order.gates.clear()
  // A job's events behind its announcement came before any of its events behind a gate.
  for (const jobId of Array.from(order.jobHeld.keys())) letGo(order, jobId)
  for (const held of order.held.splice(0)) sendAll(order, held.events)
  order.pending.clear()
}

/** Sends the event, or keeps it (until `until`) behind its job's announcement if that is not out yet. */
const deliver = (order: EventOrder, event: JobEvent, until: number): void => {
  if (!order.pending.has(event.jobId)) return order.send(event)
  const waiting = order.jobHeld.get(event.jobId)
  if (waiting === undefined) order.jobHeld.set(event.jobId, [{ event, until }])
  else waiting.push({ event, until })
}

/** Forgets the oldest ids: those past `pendingTtlMillis`, and any beyond `maxPending`. */
const expire = (order: EventOrder, now: number): void => {
  for (const [jobId, since] of order.pending) {
    if (now - since < pendingTtlMillis && order.pending.size <= maxPending) break
    letGo(order, jobId)
  }
}

/**
 * Sends what may go: the gated events whose gates are done or whose time is
 * up (in order), and the events of jobs whose wait is over (the job is then
 * no longer waited for); sets the timer for what is left.
 */
const release = (order: EventOrder): void => {
  const now = performance.now()
  if (order.pending.size > 0) expire(order, now)
  while (order.held.length > 0) {
    const head = order.held[0]!
    if (head.until > now && head.blockers.some((gate) => !gate.done)) break
    order.held.shift()
    for (const event of head.events) deliver(order, event, head.until)
  }
  let next = order.held.length > 0 ? order.held[0]!.until : Infinity
  for (const [jobId, waiting] of order.jobHeld) {
    if (waiting[0]!.until > now) {
      next = Math.min(next, waiting[0]!.until)
      break
    }
    letGo(order, jobId)
  }
  if (next === Infinity || (order.timer !== undefined && order.timerAt <= next)) return
  if (order.timer !== undefined) clearTimeout(order.timer)
  order.timerAt = next
  order.timer = setTimeout(() => {
    order.timer = undefined
    order.timerAt = Infinity
    release(order)
  }, Math.max(0, next - now))
  order.timer.unref?.()
}

/** Sends `events` (none of them `inserted`) behind the inserts they may follow. */
export const publishInOrder = (order: EventOrder, events: ReadonlyArray<JobEvent>): void => {
  if (order.gates.size === 0 && order.held.length === 0 && order.pending.size === 0) return sendAll(order, events)
  const until = performance.now() + maxHoldMillis
  if (order.gates.size === 0 && order.held.length === 0) {
    for (const event of events) deliver(order, event, until)
  } else {
    order.held.push({ events, blockers: Array.from(order.gates), until })
  }
  release(order)
}

/** Sends `inserted` events at once, then what waited for them alone. */
export const publishFirst = (order: EventOrder, events: ReadonlyArray<JobEvent>): void => {
  sendAll(order, events)
  if (order.pending.size > 0) for (const event of events) letGo(order, event.jobId)
}

/** Notes jobs to be announced after a COMMIT: their events wait until their `inserted` events are out. */
export const awaitAnnouncement = (order: EventOrder, jobIds: ReadonlyArray<number>): void => {
  const now = performance.now()
  for (const jobId of jobIds) order.pending.set(jobId, now)
  expire(order, now)
}

/** Opens the gate of an insert that commits in its own statement, about to run. */
export const openGate = (order: EventOrder): InsertGate => {
  const gate: InsertGate = { done: false }
  order.gates.add(gate)
  return gate
}

/** The insert has published (or will never): what waited for it alone goes out. */
export const closeGate = (order: EventOrder, gate: InsertGate): void => {
  if (gate.done) return
  gate.done = true
  order.gates.delete(gate)
  release(order)
}
