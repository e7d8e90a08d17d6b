/**
 * Keeps the events of one job in order on the node that inserted it.
 *
 * A job inserted by this node can start here, and even finish, before the
 * insert call has published its `inserted` event: the commit wakes the
 * node's producers while the reply to the insert is still on its way (a
 * server slow to send it, a busy event loop). So while an insert of this node
 * may have committed without having published, every other event waits
 * behind it, in arrival order, for at most `maxHoldMillis`; `inserted` events
 * never wait.
 *
 * An insert outside a transaction holds from before its statement until it
 * has published (or failed). One inside a caller's transaction holds only
 * from the moment that transaction has ended (its COMMIT is on its way) until
 * its `afterCommit` callback has published: while the transaction is open,
 * nobody can run what it inserted. A rolled-back one never publishes; it is
 * forgotten `maxHoldMillis` after it ended (seen within `sweepMillis`). One
 * inside a savepoint opens no gate (see `withInsertedEvents`).
 *
 * Only inserts made while someone subscribes open a gate, so a node nobody
 * watches pays nothing.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as PubSub from "effect/PubSub"
import { activeTransactionConnection } from "effect/sql/SqlClient"
import type { JobEvent } from "../Events.ts"

/** The longest an event waits for an insert in flight. */
export const maxHoldMillis = 1_000

/** The transaction level an insert ran in (the value of `sql.transactionService`). */
export type TransactionLevel = readonly [connection: unknown, counter: number]

/** One insert whose `inserted` events may still come. */
export interface InsertGate {
  /** The caller's transaction level the insert ran in; undefined outside one. */
  readonly level: TransactionLevel | undefined
  done: boolean
  /** When its transaction was first seen ended (performance.now()). */
  endedSeenAt: number | undefined
}

interface Held {
  readonly events: ReadonlyArray<JobEvent>
  readonly blockers: ReadonlyArray<InsertGate>
  /** performance.now() after which it goes out whatever its blockers. */
  readonly until: number
}

/** The node's open gates and the events waiting behind them. */
export interface EventOrder {
  readonly gates: Set<InsertGate>
  readonly held: Array<Held>
  /** Publishes the head of `held` when its time is up. */
  timer: ReturnType<typeof setTimeout> | undefined
  /** Looks at the transactions' gates while there are any (see `sweep`). */
  sweeper: ReturnType<typeof setTimeout> | undefined
}

export const makeEventOrder = (): EventOrder => ({ gates: new Set(), held: [], timer: undefined, sweeper: undefined })

/** Stops the timers and publishes what still waits, in order (the hub is about to shut down). */
export const stopEventOrder = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  if (order.timer !== undefined) clearTimeout(order.timer)
  if (order.sweeper !== undefined) clearTimeout(order.sweeper)
  order.timer = undefined
  order.sweeper = undefined
  for (const gate of order.gates) gate.done = true
  order.gates.clear()
  for (const held of order.held.splice(0)) publishNow(pubsub, held.events)
}

/** How often the gates of transactions are looked at, to see when each ended. */
const sweepMillis = 100

const ended = (level: TransactionLevel): boolean => Exit.isFailure(Effect.runSyncExit(activeTransactionConnection(level)))

/**
 * Notes when each transaction's gate ended, within `sweepMillis`, and drops
 * the gates of those ended `maxHoldMillis` ago without publishing (rolled
 * back); runs again while such gates remain.
 */
const sweep = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  order.sweeper = undefined
  const now = performance.now()
  let dropped = false
  let waiting = false
  for (const gate of order.gates) {
    if (gate.level === undefined) continue
    if (gate.endedSeenAt === undefined && ended(gate.level)) gate.endedSeenAt = now
    if (gate.endedSeenAt !== undefined && now - gate.endedSeenAt >= maxHoldMillis) {
      gate.done = true
      order.gates.delete(gate)
      dropped = true
    } else {
      waiting = true
    }
  }
  if (waiting) startSweeping(order, pubsub)
  if (dropped) release(order, pubsub)
}

const startSweeping = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  if (order.sweeper !== undefined) return
  order.sweeper = setTimeout(() => sweep(order, pubsub), sweepMillis)
  order.sweeper.unref()
}

/** The gates an event published now must wait for: inserts in flight, and transactions committing. */
const blockingNow = (order: EventOrder): Array<InsertGate> => {
  const blockers: Array<InsertGate> = []
  for (const gate of order.gates) {
    if (gate.level === undefined || gate.endedSeenAt !== undefined || ended(gate.level)) blockers.push(gate)
  }
  return blockers
}

const publishNow = (pubsub: PubSub.PubSub<JobEvent>, events: ReadonlyArray<JobEvent>): void => {
  for (const event of events) PubSub.publishUnsafe(pubsub, event)
}

/** Publishes the waiting events whose gates are done or whose time is up, in order. */
const release = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>): void => {
  const now = performance.now()
  while (order.held.length > 0) {
    const head = order.held[0]!
    if (head.until > now && head.blockers.some((gate) => !gate.done)) break
    order.held.shift()
    publishNow(pubsub, head.events)
  }
  if (order.held.length > 0 && order.timer === undefined) {
    order.timer = setTimeout(() => {
      order.timer = undefined
      release(order, pubsub)
    }, Math.max(0, order.held[0]!.until - now))
    order.timer.unref()
  }
}

/** Publishes `events` (none of them `inserted`) behind the inserts that may have committed unannounced. */
export const publishInOrder = (
  order: EventOrder,
  pubsub: PubSub.PubSub<JobEvent>,
  events: ReadonlyArray<JobEvent>
): void => {
  if (order.gates.size === 0 && order.held.length === 0) return publishNow(pubsub, events)
  const blockers = order.gates.size === 0 ? [] : blockingNow(order)
  if (blockers.length === 0 && order.held.length === 0) return publishNow(pubsub, events)
  order.held.push({ events, blockers, until: performance.now() + maxHoldMillis })
  release(order, pubsub)
}

/** Publishes `inserted` events at once: they are what the others wait for. */
export const publishFirst = (pubsub: PubSub.PubSub<JobEvent>, events: ReadonlyArray<JobEvent>): void =>
  publishNow(pubsub, events)

/** Opens the gate of an insert about to run (in the caller's transaction `level`, if any). */
export const openGate = (
  order: EventOrder,
  pubsub: PubSub.PubSub<JobEvent>,
  level: TransactionLevel | undefined
): InsertGate => {
  const gate: InsertGate = { level, done: false, endedSeenAt: undefined }
  order.gates.add(gate)
  if (level !== undefined) startSweeping(order, pubsub)
  return gate
}

/** The insert has published (or will never): what waited for it alone goes out. */
export const closeGate = (order: EventOrder, pubsub: PubSub.PubSub<JobEvent>, gate: InsertGate): void => {
  if (gate.done) return
  gate.done = true
  order.gates.delete(gate)
  release(order, pubsub)
}
