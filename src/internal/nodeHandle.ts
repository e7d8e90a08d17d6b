/**
 * What `ObanTest.advance` needs of a running node, and nothing in the public
 * API shows: its activity, its queues, and its stager. A node registers its
 * handle under its `Oban` service object, so a test finds it from the service.
 */
import type * as Effect from "effect/Effect"
import type { SqlError } from "effect/sql/SqlError"
import type { LocalQueueState } from "./producerTypes.ts"
import type { Activity } from "./activity.ts"
import type { PendingWork } from "./sql/pendingWork.ts"

export interface NodeHandle {
  readonly activity: Activity
  /** The largest step of virtual time that keeps heartbeats and the lease on schedule, in ms. */
  readonly maxStepMillis: number
  readonly queues: ReadonlyArray<{
    readonly name: string
    readonly check: Effect.Effect<LocalQueueState>
    readonly wake: Effect.Effect<void>
  }>
  /** Stages due jobs now (on the node's clock) and wakes this node's producers of their queues. */
  readonly stage: Effect.Effect<unknown, SqlError>
  /** Work not done yet, and the next moment a scheduled job or one of this node's cron slots falls due. */
  readonly pendingWork: Effect.Effect<PendingWork, SqlError>
}

const handles = new WeakMap<object, NodeHandle>()

export const register = (service: object, handle: NodeHandle): void => {
  handles.set(service, handle)
}

export const handleOf = (service: object): NodeHandle | undefined => handles.get(service)
