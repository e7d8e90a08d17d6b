/**
 * Job lifecycle events, as this node sees them: jobs it inserted (once the
 * transaction commits), started, finished, and (on the leader) rescued.
 * Subscribe with `oban.events`, e.g. for a progress display or a dashboard.
 * Events of one job arrive in the order they happened; each is delivered once
 * to each subscriber.
 *
 * @since 0.1.0
 */
import { Context, Effect, PubSub } from "effect"

/**
 * @since 0.1.0
 */
export type EventKind =
  | "inserted"
  | "started"
  | "completed"
  | "failed"
  | "snoozed"
  | "cancelled"
  | "discarded"
  | "rescued"

/**
 * @since 0.1.0
 */
export interface JobEvent {
  readonly kind: EventKind
  readonly jobId: number
  readonly worker: string
  readonly queue: string
  readonly attempt: number
  readonly at: Date
  /** For `failed`, `cancelled`, `discarded`, `rescued`: what happened. */
  readonly message?: string | undefined
  /** For `failed`: whether the job will be retried (else it was discarded). */
  readonly willRetry?: boolean | undefined
  /** For `completed`, `failed`, ...: how long the attempt ran, in milliseconds. */
  readonly durationMillis?: number | undefined
}

/**
 * Where events are published: the running node's hub, when there is one.
 *
 * @since 0.1.0
 */
export const EventHub: Context.Reference<PubSub.PubSub<JobEvent> | undefined> = Context.Reference<
  PubSub.PubSub<JobEvent> | undefined
>("effect-oban/EventHub", { defaultValue: () => undefined })

/**
 * Publishes events to the hub in context, if any.
 *
 * @since 0.1.0
 */
export const publish = (events: ReadonlyArray<JobEvent>): Effect.Effect<void> =>
  EventHub.use((hub) =>
    hub === undefined || events.length === 0 ? Effect.void : Effect.asVoid(PubSub.publishAll(hub, events))
  )
