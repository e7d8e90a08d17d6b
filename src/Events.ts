/**
 * Job lifecycle events, as this node sees them: jobs it inserted (once the
 * transaction commits), started, finished, and (on the leader) rescued.
 * Subscribe with `oban.events`, e.g. for a progress display or a dashboard.
 * Events of one job arrive in the order they happened; each is delivered once
 * to each subscriber.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type EventOrder, makeEventOrder, publishInOrder, stopEventOrder } from "./internal/eventOrder.ts"
import { workflowStep } from "./internal/jobEvent.ts"

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
  /** For a workflow step (see `Workflow`): its workflow and step name, to follow one workflow's events. */
  readonly workflow?: WorkflowStep | undefined
}

/**
 * The workflow step a job event is about.
 *
 * @since 0.1.0
 */
export interface WorkflowStep {
  readonly id: string
  readonly step: string
}

/**
 * The workflow and step of a job, from its `meta.workflow`; none outside
 * workflows.
 *
 * @since 0.1.0
 */
export const workflowStepOf = (meta: Readonly<Record<string, unknown>>): WorkflowStep | undefined =>
  workflowStep(meta["workflow"])

/**
 * A node's events: a PubSub and how many streams are reading it. Nothing is
 * published while nobody listens, which keeps the hot path of a busy node free
 * of work nobody asked for.
 *
 * @since 0.1.0
 */
export interface Hub {
  readonly pubsub: PubSub.PubSub<JobEvent>
  subscribers: number
  /** The node's inserts in flight that events wait behind (see `internal/eventOrder.ts`). */
  readonly order: EventOrder
}

/**
 * Where events are published: the running node's hub, when there is one.
 *
 * @since 0.1.0
 */
export const EventHub: Context.Reference<Hub | undefined> = Context.Reference<Hub | undefined>(
  "effect-oban/EventHub",
  { defaultValue: () => undefined }
)

/**
 * A hub for the scope's life.
 *
 * @since 0.1.0
 */
export const makeHub: Effect.Effect<Hub, never, Scope.Scope> = Effect.acquireRelease(
  Effect.map(PubSub.unbounded<JobEvent>(), (pubsub): Hub => ({
    pubsub,
    subscribers: 0,
    order: makeEventOrder((event) => void PubSub.publishUnsafe(pubsub, event))
  })),
  (hub) => Effect.andThen(Effect.sync(() => stopEventOrder(hub.order)), PubSub.shutdown(hub.pubsub))
)

/**
 * The events published to `hub` from the moment the stream starts.
 *
 * @since 0.1.0
 */
export const stream = (hub: Hub): Stream.Stream<JobEvent> =>
  Stream.suspend(() => {
    hub.subscribers++
    return Stream.fromPubSub(hub.pubsub).pipe(Stream.ensuring(Effect.sync(() => hub.subscribers--)))
  })

/**
 * Whether an event published now would reach anyone.
 *
 * @since 0.1.0
 */
export const listening: Effect.Effect<boolean> = EventHub.use((hub) =>
  Effect.succeed(hub !== undefined && hub.subscribers > 0)
)

/**
 * Publishes events to the hub in context, if anyone listens: behind any
 * insert of this node that may have committed without having published its
 * `inserted` events yet, so the events of one job arrive in order.
 *
 * @since 0.1.0
 */
export const publish = (events: ReadonlyArray<JobEvent>): Effect.Effect<void> =>
  EventHub.use((hub) =>
    hub === undefined || hub.subscribers === 0 || events.length === 0
      ? Effect.void
      : Effect.sync(() => publishInOrder(hub.order, events))
  )
