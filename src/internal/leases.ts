/**
 * A node's leases: the cluster leader's, and cron's when the node has a
 * crontab. At shutdown they are given up while the executor lets its jobs
 * finish, not before it starts: another node takes over at once, and a
 * network that swallows the resign statements (each waits up to its 3 s
 * deadline) does not add their wait to the grace period and the flush.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Leader from "../Leader.ts"
import { cronLease } from "./sql/peers.ts"

export interface Leases {
  readonly leader: Leader.Leader
  /** Present when the node has a crontab: only such nodes take the cron lease. */
  readonly cron: Leader.Leader | undefined
  /**
   * Stops both elections and resigns both leases in the background. Run it
   * as the node's shutdown begins; `awaitResigned` waits for it.
   */
  readonly resignInBackground: Effect.Effect<void>
  /** Waits for `resignInBackground` to finish; returns at once if it never ran. */
  readonly awaitResigned: Effect.Effect<void>
}

/**
 * Starts the elections. `options.meta` goes into the cron lease's row (the
 * crontab, for operators' tools).
 */
export const make = (
  options: Omit<Leader.Options, "lease" | "meta"> & { readonly crontab: Record<string, unknown> | undefined }
): Effect.Effect<Leases, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { crontab, ...leaderOptions } = options
    // Each lease in a scope of its own (its election stops before it resigns), the two side by side.
    const leases = yield* Scope.fork(yield* Effect.scope, "parallel")
    const inOwnScope = (make: Effect.Effect<Leader.Leader, never, Scope.Scope>) =>
      Effect.flatMap(Scope.fork(leases), (scope) => Scope.provide(make, scope))
    const leader = yield* inOwnScope(Leader.make(leaderOptions))
    const cron = crontab === undefined
      ? undefined
      : yield* inOwnScope(Leader.make({ ...leaderOptions, lease: cronLease, meta: crontab }))
    let resigning: Fiber.Fiber<void> | undefined
    return {
      leader,
      cron,
      // Started at once, so that the scope is closed (and detached from the node's) before the node's
      // own closing reaches it: the node then passes it by instead of waiting for the resign.
      resignInBackground: Effect.suspend(() => {
        if (resigning !== undefined) return Effect.void
        return Effect.map(Effect.forkDetach(Scope.close(leases, Exit.void), { startImmediately: true }), (fiber) => {
          resigning = fiber
        })
      }),
      awaitResigned: Effect.suspend(() => resigning === undefined ? Effect.void : Fiber.await(resigning)).pipe(Effect.asVoid)
    }
  })
