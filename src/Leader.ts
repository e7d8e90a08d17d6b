/**
 * Leader election with a lease row in `oban_peers`. Each node tries to take
 * or renew the lease every `renewInterval`; the statement succeeds only when
 * the lease is ours or has expired, so at most one node leads at a time. A
 * follower also tries again right when the current lease is due to expire,
 * so a crashed leader is replaced within one TTL; a leader that stops
 * cleanly deletes its lease and notifies, and another node takes over at once.
 *
 * Leader-only work (staging, rescue, pruning, cron) asks `isLeader`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { now } from "./ObanClock.ts"
import { tracked } from "./internal/activity.ts"
import { claimLease, resignLease } from "./internal/sql/peers.ts"
import { withStatementTimeout } from "./internal/statementTimeout.ts"
import * as FailureStreak from "./internal/failureStreak.ts"
import { causeUnlessUnreached, failureLine } from "./internal/serverMessage.ts"
import { plain } from "./internal/sql/plain.ts"

/**
 * @since 0.1.0
 */
export const defaults = {
  ttl: Duration.seconds(30),
  renewInterval: Duration.seconds(15)
} as const

/**
 * @since 0.1.0
 */
export interface Config {
  readonly ttl: Duration.Duration
  readonly renewInterval: Duration.Duration
}

/**
 * @since 0.1.0
 */
export interface Options extends Config {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
  /**
   * This incarnation of the node, unique per process (a node passes a random
   * id). The lease is held by an instance, so a process restarted under the
   * same node name waits for its predecessor's lease to expire, and two
   * processes given the same name never both lead. Default: the node name.
   */
  readonly instance?: string | undefined
  /** Told of every round: whether it reached the database. */
  readonly onRound?: ((reached: boolean) => Effect.Effect<void>) | undefined
  /**
   * Which lease to hold: `"oban"` (the default), the cluster's leader; a
   * node with a crontab also holds `"cron"` (see `Cron.loop`).
   */
  readonly lease?: string | undefined
  /** What the lease row tells operators' tools while this node holds it (the cron lease: the crontab). */
  readonly meta?: Record<string, unknown> | undefined
}

/**
 * What one election round found.
 *
 * @since 0.1.0
 */
export interface Result {
  readonly isLeader: boolean
  /** The node holding a valid lease, if any. */
  readonly leader: string | undefined
  readonly expiresInMillis: number
}

/**
 * @since 0.1.0
 */
export interface Leader {
  readonly isLeader: Effect.Effect<boolean>
  /** Whether some node (this one or another) held a valid lease at the last round. */
  readonly leaderKnown: Effect.Effect<boolean>
  /** This node's leadership: the current value, then every change. */
  readonly changes: Stream.Stream<boolean>
  /** Try to take the lease now (e.g. the leader resigned). */
  readonly wake: Effect.Effect<void>
}

/**
 * One round: take or renew the lease if possible.
 *
 * @since 0.1.0
 */
export const runOnce = (
  options: Pick<Options, "sql" | "prefix" | "node" | "ttl" | "instance" | "lease" | "meta">
): Effect.Effect<Result, SqlError> =>
  Effect.gen(function*() {
    const sql = plain(options.sql)
    const lease = yield* claimLease(
      sql,
      options.prefix,
      yield* now(sql),
      options.node,
      options.instance ?? options.node,
      Duration.toMillis(options.ttl),
      options.lease,
      options.meta
    )
    return { isLeader: lease.held, leader: lease.holder, expiresInMillis: lease.expiresInMillis }
  })

/**
 * Runs elections for the scope's life. On close, a leader resigns.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Leader, never, Scope.Scope> =>
  Effect.gen(function*() {
    const leading = yield* SubscriptionRef.make(false)
    const known = yield* Ref.make(false)
    const wakeUp = yield* Queue.dropping<void>(1)
    const renewMillis = Duration.toMillis(options.renewInterval)

    const onRound = options.onRound ?? (() => Effect.void)
    const streak = FailureStreak.make("leader elections get through again")
    const round = runOnce(options).pipe(
      // A connection that hangs (a black-holed network) must not freeze the election.
      withStatementTimeout({ timeout: Duration.min(Duration.divideUnsafe(options.ttl, 2), Duration.seconds(5)), operation: "lease", connection: "own" }),
      Effect.tap(() => onRound(true)),
      Effect.tapError(() => onRound(false)),
      Effect.tap((result) =>
        Effect.andThen(SubscriptionRef.set(leading, result.isLeader), Ref.set(known, result.leader !== undefined))
      ),
      Effect.tap(() => streak.succeeded),
      Effect.map((result) =>
        // A follower comes back when the lease it saw expires, so a dead leader is replaced within one TTL.
        result.isLeader || result.leader === undefined
          ? renewMillis
          : Math.max(10, Math.min(renewMillis, result.expiresInMillis + 10))
      ),
      Effect.catchCause((cause) =>
        Effect.gen(function*() {
          // Without the database we cannot know; stop acting as leader.
          yield* SubscriptionRef.set(leading, false)
          yield* Ref.set(known, false)
          streak.failed()
          yield* streak.warn("leader election failed; will try again", cause)
          return Math.min(renewMillis, 1_000)
        })
      ),
      tracked
    )

    // Resign after the loop below has stopped (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // Resigns even when this node does not think it leads: a round interrupted before it noted its
        // win, or a renewal that committed after it timed out here, left the lease ours. The statement
        // only ends this instance's lease.
        yield* SubscriptionRef.set(leading, false)
        yield* resignLease(plain(options.sql), options.prefix, options.instance ?? options.node, options.lease).pipe(
          withStatementTimeout({ timeout: "3 seconds", operation: "resign", connection: "own" }),
          Effect.catchCause((cause) => Effect.logWarning(`could not resign the lease: ${failureLine(cause)}`, ...causeUnlessUnreached(cause)))
        )
      })
    )

    yield* Effect.forkScoped(
      Effect.forever(Effect.gen(function*() {
        const waitMillis = yield* round
        yield* Queue.take(wakeUp).pipe(Effect.timeoutOption(waitMillis))
      })).pipe(Effect.annotateLogs({ component: "Leader", node: options.node }))
    )

    return {
      isLeader: SubscriptionRef.get(leading),
      leaderKnown: Ref.get(known),
      changes: SubscriptionRef.changes(leading).pipe(Stream.changes),
      wake: Effect.asVoid(Queue.offer(wakeUp, undefined))
    }
  })
