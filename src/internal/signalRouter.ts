/**
 * Where a node's notifications go: an insert wakes its queue's producer, a
 * lease's change the leader or cron election, and a signal for this node
 * (or every node) becomes a cancel or a queue command. Read in the scope
 * that outlives the node's jobs (see `runtime.ts`): once shutdown begins only
 * cancels are passed on, so a job cancelled during its grace period stops then.
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Scope from "effect/Scope"
import type * as Notifier from "../Notifier.ts"
import type * as Producer from "../Producer.ts"
import type { QueueCommand } from "./runtime.ts"
import { cronLease } from "./sql/peers.ts"

export interface RouterOptions {
  readonly node: string
  readonly notifier: Notifier.Notifier["Service"]
  readonly producers: ReadonlyMap<string, Producer.Producer>
  readonly leaderWake: Effect.Effect<void>
  readonly cronWake: Effect.Effect<void> | undefined
  /** Applies a pause, resume or scale here; a pause or resume for every node carries the queue's count of them. */
  readonly apply: (command: QueueCommand, counted?: string) => Effect.Effect<void>
  /** Starts stopping a cancelled job here, without waiting for it (a job's finalizers may take long). */
  readonly cancel: (jobId: number) => Effect.Effect<void>
  /** The scope the router reads in: one that closes after the node's jobs have ended. */
  readonly scope: Scope.Scope
}

const isCancel = (notification: Notifier.Notification): boolean =>
  notification.channel === "signal" && notification.payload["action"] === "cancel"

/**
 * Starts the router in `options.scope`; returns the effect that tells it
 * shutdown has begun (add it as a finalizer where the node's loops stop).
 */
export const startRouter = (options: RouterOptions): Effect.Effect<Effect.Effect<void>> =>
  Effect.gen(function*() {
    const { producers } = options
    const route = (notification: Notifier.Notification): Effect.Effect<void> => {
      const payload = notification.payload
      if (notification.channel === "insert") {
        return typeof payload["queue"] === "string" ? producers.get(payload["queue"])?.wake ?? Effect.void : Effect.void
      }
      if (notification.channel === "leader") {
        if (payload["node"] === options.node) return Effect.void
        return payload["lease"] === cronLease ? options.cronWake ?? Effect.void : options.leaderWake
      }
      if (payload["node"] !== undefined && payload["node"] !== options.node) return Effect.void
      const action = payload["action"]
      if (action === "cancel" && typeof payload["job_id"] === "number") {
        return options.cancel(payload["job_id"])
      }
      if ((action === "pause" || action === "resume") && typeof payload["queue"] === "string") {
        // A command for every node carries the queue's count of them (see `registerProducer` and `apply`).
        const count = payload["pause_commands"]
        const counted = typeof count === "string" && /^\d{1,18}$/.test(count) && payload["node"] === undefined
          ? count
          : undefined
        return options.apply({ action, queue: payload["queue"] }, counted)
      }
      if (action === "scale" && typeof payload["queue"] === "string" && typeof payload["limit"] === "number") {
        return options.apply({ action, queue: payload["queue"], limit: payload["limit"] })
      }
      if (action === "limits" && typeof payload["queue"] === "string") {
        return producers.get(payload["queue"])?.refreshLimits ?? Effect.void
      }
      return Effect.void
    }
    const subscription = yield* options.notifier.subscribe.pipe(Scope.provide(options.scope))
    let stopping = false
    yield* Effect.forkIn(
      Effect.forever(Effect.flatMap(PubSub.take(subscription), (n) => stopping && !isCancel(n) ? Effect.void : route(n))),
      options.scope
    )
    return Effect.sync(() => void (stopping = true))
  })
