/**
 * What `ObanTest.advance` needs of a running node, and nothing in the public
 * API shows: its activity, its queues, and its stager. A node registers its
 * handle under its `Oban` service object, so a test finds it from the service.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Cron from "../Cron.ts"
import { now } from "../ObanClock.ts"
import type * as Producer from "../Producer.ts"
import * as Stager from "../Stager.ts"
import type { ResolvedConfig } from "./runtimeConfig.ts"
import { pendingWork } from "./sql/pendingWork.ts"
import type { LocalQueueState } from "./producerTypes.ts"
import { type Activity, CurrentActivity } from "./activity.ts"
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

/**
 * A node's handle, built once its producers run. Its effects run as the
 * node's own fibers would: on the same clock, settings and activity.
 */
export const makeHandle = (options: {
  readonly sql: SqlClient
  readonly config: ResolvedConfig
  readonly producers: Iterable<Producer.Producer>
  readonly crontab: ReadonlyArray<Cron.Parsed>
}): Effect.Effect<NodeHandle> =>
  Effect.gen(function*() {
    const { config, crontab, sql } = options
    const producers = new Map(Array.from(options.producers, (producer) => [producer.queue, producer]))
    const nodeContext = yield* Effect.context<never>()
    const asNode = <A, E>(effect: Effect.Effect<A, E>) => Effect.provideContext(effect, nodeContext)
    return {
      activity: yield* CurrentActivity,
      maxStepMillis: Math.max(1, Math.min(
        Duration.toMillis(config.heartbeatInterval),
        Duration.toMillis(config.leader.renewInterval),
        Duration.toMillis(config.rescuer.interval)
      )),
      queues: Array.from(producers.values(), (producer) => ({
        name: producer.queue,
        check: producer.local,
        wake: producer.wake
      })),
      stage: asNode(Stager.runOnce({
        sql,
        prefix: config.prefix,
        onStaged: (queue) => producers.get(queue)?.wake ?? Effect.void
      }).pipe(
        // The node's prefix was checked when it was built, and the batch size is the default.
        Effect.catchTags({ InvalidConfigError: Effect.die, InvalidPrefixError: Effect.die })
      )),
      pendingWork: asNode(Effect.gen(function*() {
        const current = yield* Clock.currentTimeMillis
        const work = yield* pendingWork(sql, config.prefix, yield* now(sql))
        // The cron loop wakes on each slot: the next stop is the next slot (the node has settled,
        // so a slot the clock is on now has run).
        const slots = crontab.map((item) => Cron.nextSlot(item.cron, new Date(current)).getTime())
        const times = [...slots, ...(work.nextDue === undefined ? [] : [work.nextDue.getTime()])]
        return { ...work, nextDue: times.length === 0 ? undefined : new Date(Math.min(...times)) }
      }))
    }
  })
