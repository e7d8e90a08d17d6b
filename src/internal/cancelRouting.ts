/**
 * How a cancel reaches a job on this node, for the signal router and the
 * reconciler: a running job is interrupted, one waiting in a producer's buffer
 * is dropped, and one not here yet (its claim's reply still on the way) is
 * looked for again shortly.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { ExecutorShape } from "../Executor.ts"
import type { Producer } from "../Producer.ts"
import { jobsToStop } from "./sql/claims.ts"

/** When a cancel that found its job neither running nor waiting here is checked again (ms after the last look). */
const recheckMillis = [250, 1_000, 3_000]

export interface CancelRouting {
  /** Stops a cancelled job if it runs or waits here; whether it was found. */
  readonly cancelHere: (jobId: number) => Effect.Effect<boolean>
  /**
   * Starts stopping a cancelled job here: forked in `scope` (a job's finalizers may take long),
   * and looked for again if it is not here yet.
   */
  readonly stopHere: (jobId: number) => Effect.Effect<void>
}

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly executor: Pick<ExecutorShape, "cancel">
  readonly producers: ReadonlyMap<string, Pick<Producer, "id" | "forget">>
  /** The scope that outlives the jobs (the node's own closes, and runs nothing new, as shutdown begins). */
  readonly scope: Scope.Scope
}): CancelRouting => {
  const { executor, producers, sql } = options
  const cancelHere = (jobId: number): Effect.Effect<boolean> =>
    Effect.gen(function*() {
      if (yield* executor.cancel(jobId)) return true
      for (const producer of producers.values()) {
        if (yield* producer.forget(jobId)) return true
      }
      return false
    })
  /**
   * A cancel for a job this node claimed that is neither running nor waiting here: the signal can
   * come before the claim's reply has been read (they arrive on different connections). The
   * database is asked again shortly, and the job stopped if it is here by then and still to stop:
   * its cancel requested under one of this node's producers, or its row cancelled (a node of an earlier
   * build; a job retried and claimed again meanwhile is neither). The reconciler is the last resort.
   */
  const cancelLater = (jobId: number): Effect.Effect<void> =>
    Effect.gen(function*() {
      for (const millis of recheckMillis) {
        yield* Effect.sleep(millis)
        const own = Array.from(producers.values(), (producer) => producer.id)
        const toStop = yield* jobsToStop(sql, options.prefix, own, [jobId])
        if (!toStop.includes(jobId) || (yield* cancelHere(jobId))) return
      }
    }).pipe(Effect.catchCause((cause) => Effect.logDebug(`could not check job ${jobId}'s cancel again`, cause)))
  const stopHere = (jobId: number): Effect.Effect<void> =>
    Effect.asVoid(Effect.forkIn(
      Effect.flatMap(cancelHere(jobId), (found) => found ? Effect.void : cancelLater(jobId)),
      options.scope,
      { startImmediately: true }
    ))
  return { cancelHere, stopHere }
}
