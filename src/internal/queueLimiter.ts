/**
 * A producer's side of its queue's cluster-wide limits: which limits are in
 * force (written from the node's config at start, or read from
 * `oban_queues`, then re-read at every heartbeat and on a signal), the claim
 * that honours them, and the retry after a claim the limits cut short.
 *
 * Waking a capacity-blocked producer: an ack on another node sends no
 * notification, so while a queue with a global or partition limit claimed
 * less than it wanted and jobs are left, the producer claims again
 * `capacityPollMillis` after its latest claim (besides the wake-up it gets
 * from each of its own jobs finishing). A queue with only a rate limit
 * sleeps until its next window starts, unless its claim missed jobs it had
 * chosen within the window's quota (taken by a claim it waited for, or held
 * by another transaction): then it claims again at the capacity poll.
 *
 * Each claim that the limits cut short sets when to claim again, replacing
 * what an earlier one set: it saw the queue later. So a producer whose own
 * jobs keep finishing, each followed by a claim, does not also claim at a
 * poll that only repeats what its last claim saw; and a claim that nothing
 * held back cancels the poll.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { Partition } from "./queueLimits.ts"
import { isLimited, isPartitioned, type QueueLimits, sameLimits, unlimited } from "./queueLimits.ts"
import type { ClaimBy } from "./sql/claims.ts"
import { fetchLimited, type FinishedJob, type LimitedFetch } from "./sql/limitedClaims.ts"
import { queueUsage, readQueueLimits, storeQueueLimits } from "./sql/queues.ts"

/** How often a producer held back by a global or partition limit claims again while jobs wait. */
export const capacityPollMillis = 100

/**
 * The queue across the cluster, in `checkQueue`.
 *
 * @since 0.1.0
 */
export interface ClusterState {
  /** Jobs of the queue executing on every node. */
  readonly running: number
  /**
   * Set while the queue is paused for every node: when that pause was given.
   * It holds for nodes that start the queue later, until a resume for every
   * node (a resume for one node runs the queue there and leaves this set).
   */
  readonly pausedSince?: Date | undefined
  /** At most this many jobs of the queue execute at once across nodes (per partition, with `partition`). */
  readonly global?: number | undefined
  readonly partition?: Partition | undefined
  readonly rate?: {
    readonly limit: number
    readonly periodMillis: number
    readonly partition?: Partition | undefined
    /** The current fixed window: [windowStart, windowStart + periodMillis). */
    readonly windowStart: Date
    /** Jobs claimed in the current window (over all partitions). */
    readonly used: number
    /** Jobs that may still start in the current window; for a partitioned rate, not given (it is per partition). */
    readonly left?: number | undefined
  } | undefined
}

/**
 * Whether the producer claims again at once after a limited claim:
 * - the claim found other limits in force than it was built for, and
 *   claimed nothing (`stale`);
 * - it claimed some jobs and left jobs behind while partitions past its
 *   window may have room (a partitioned claim looks at a window of the
 *   queue's jobs only; only a partitioned claim can miss jobs it chose).
 *   No capacity poll is scheduled for these.
 */
export const claimsAgainAtOnce = (fetched: LimitedFetch): boolean =>
  fetched.stale || (fetched.backlog && fetched.jobs.length > 0 && isPartitioned(fetched.limits))

export interface QueueLimiter {
  readonly current: () => QueueLimits
  readonly limited: () => boolean
  /** Takes limits read from the database; whether they differ from the ones in force. */
  readonly adopt: (limits: QueueLimits) => boolean
  /** At registration: writes the configured limits, or (none configured) reads the stored ones. */
  readonly load: (sql: SqlClient) => Effect.Effect<void, SqlError>
  /** Re-reads the stored limits (on a signal); whether they changed. */
  readonly refresh: Effect.Effect<boolean, SqlError>
  /** Claims under the limits; when they cut the claim short with jobs left, `wake` runs later. */
  readonly fetch: (
    now: Fragment,
    options: ClaimBy & {
      readonly demand: number
      readonly finished: ReadonlyArray<FinishedJob>
    }
  ) => Effect.Effect<LimitedFetch, SqlError>
  readonly usage: (now: Fragment) => Effect.Effect<ClusterState, SqlError>
}

/** A fiber that sleeps until `at`, then wakes the producer if a claim is still due. */
interface Sleeper {
  at: number
  fiber: Fiber.Fiber<void> | undefined
}

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly queue: string
  /** From the node's config; none when the config says nothing about cluster-wide limits. */
  readonly configured: QueueLimits | undefined
  readonly wake: Effect.Effect<void>
}): Effect.Effect<QueueLimiter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    let limits = options.configured ?? unlimited
    let written = false
    // When to wake the producer for another claim (clock millis), set by the latest claim cut short.
    let due: number | undefined
    // The fiber that sleeps until `due`.
    let timer: Sleeper | undefined

    const adopt = (next: QueueLimits) => {
      if (sameLimits(limits, next)) return false
      limits = next
      return true
    }

    /** Sleeps until `due`, following it while later claims move it; wakes the producer once it is reached. */
    const sleepUntilDue = (sleeper: Sleeper): Effect.Effect<void> =>
      Effect.gen(function*() {
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (sleeper.at > now) yield* Effect.sleep(sleeper.at - now)
          if (due === undefined) return
          if (due <= (yield* Clock.currentTimeMillis)) {
            due = undefined
            return yield* options.wake
          }
          sleeper.at = due
        }
      }).pipe(Effect.ensuring(Effect.sync(() => {
        if (timer === sleeper) timer = undefined
      })))

    /** Sets when to claim again (`undefined`: no need to), replacing what an earlier claim set. */
    const claimAgainAt = (at: number | undefined) =>
      Effect.suspend(() => {
        due = at
        // A timer that wakes before `at` sleeps on until it.
        if (at === undefined || (timer !== undefined && timer.at <= at)) return Effect.void
        timer?.fiber?.interruptUnsafe()
        const sleeper: Sleeper = { at, fiber: undefined }
        timer = sleeper
        return Effect.map(Effect.forkIn(sleepUntilDue(sleeper), scope), (fiber) => {
          sleeper.fiber = fiber
        })
      })

    const retryAfter = (millis: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => claimAgainAt(now + Math.max(1, Math.ceil(millis))))

    return {
      current: () => limits,
      limited: () => isLimited(limits),
      adopt,
      load: (sql) =>
        options.configured !== undefined && !written
          ? Effect.tap(storeQueueLimits(sql, options.prefix, options.queue, options.configured), () =>
            Effect.sync(() => (written = true)))
          : Effect.map(readQueueLimits(sql, options.prefix, options.queue), adopt).pipe(Effect.asVoid),
      refresh: Effect.map(readQueueLimits(options.sql, options.prefix, options.queue), adopt),
      fetch: (now, claim) =>
        fetchLimited(options.sql, options.prefix, now, { queue: options.queue, expected: limits, ...claim }).pipe(
          Effect.map((fetched) =>
            // Other limits in force, yet the node already holds them: do not claim again in a loop.
            fetched.stale && !adopt(fetched.limits) ? { ...fetched, stale: false, backlog: true } : fetched
          ),
          Effect.tap((fetched) => {
            // Nothing held back: no poll is needed (a full claim is followed by another at once).
            if (fetched.jobs.length >= claim.demand || !fetched.backlog) return claimAgainAt(undefined)
            if (claimsAgainAtOnce(fetched)) return Effect.void
            // A claim that missed jobs it chose within the window's quota left quota unused: try
            // again at the capacity poll rather than at the next window (possibly far away).
            if (fetched.limits.global === undefined && fetched.nextWindowMillis !== undefined && fetched.missed === 0) {
              return retryAfter(fetched.nextWindowMillis + 1)
            }
            return isLimited(fetched.limits) ? retryAfter(capacityPollMillis) : claimAgainAt(undefined)
          })
        ),
      usage: (now) =>
        Effect.map(queueUsage(options.sql, options.prefix, now, options.queue, limits), (usage): ClusterState => {
          const rate = limits.rate
          return {
            running: usage.running,
            ...(usage.pausedSince === undefined ? {} : { pausedSince: usage.pausedSince }),
            ...(limits.global === undefined ? {} : { global: limits.global }),
            ...(limits.partition === undefined ? {} : { partition: limits.partition }),
            ...(rate === undefined || usage.window === undefined ? {} : {
              rate: {
                limit: rate.limit,
                periodMillis: rate.periodMillis,
                ...(rate.partition === undefined ? {} : { partition: rate.partition }),
                windowStart: usage.window.start,
                used: usage.window.used,
                ...(rate.partition === undefined ? { left: Math.max(0, rate.limit - usage.window.used) } : {})
              }
            })
          }
        })
    }
  })
