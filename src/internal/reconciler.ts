/**
 * The reconciler: every node, every `rescuer.interval`, puts back the jobs
 * that its own producers claimed and that it no longer answers for, because
 * their claim or their outcome was lost on the way to the database (a reply
 * lost with its connection, or commits a database crash forgot). No rescuer
 * would take them, since their producers are alive. It also stops the jobs
 * it runs or holds that were cancelled (their rows `cancelled`) or whose
 * cancel was requested (running workflow steps), in case the cancel signal
 * was lost: they would otherwise run to their end (a step's dependents
 * waiting for that). `runOnce` does one pass and returns the ids it
 * released; the node runs it in a `periodic` loop.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { ExecutorShape } from "../Executor.ts"
import { now } from "../ObanClock.ts"
import type { Producer } from "../Producer.ts"
import { jobsToStop, releaseStranded } from "./sql/claims.ts"

export interface Options {
  readonly sql: SqlClient
  readonly prefix: string
  readonly producers: ReadonlyArray<Pick<Producer, "id" | "unreturned">>
  readonly executor: Pick<ExecutorShape, "owned">
  /** Only claims older than this are judged: younger ones may still be on their way. */
  readonly rescueAfter: Duration.Duration
  /** Stops a job this node runs or holds that was cancelled or whose cancel was requested (as the cancel signal does). */
  readonly stop?: ((jobId: number) => Effect.Effect<void>) | undefined
}

export const runOnce = (options: Options): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  Effect.gen(function*() {
    // Waiting jobs first: one started in between is then running, and owned either way. Jobs and
    // claims a producer is still putting back are its own to put back (with their attempts).
    const unreturned = yield* Effect.forEach(options.producers, (producer) => producer.unreturned)
    const owned = new Set([...unreturned.flatMap((each) => each.jobs), ...(yield* options.executor.owned)])
    const released = yield* releaseStranded(options.sql, options.prefix, yield* now(options.sql), {
      producers: options.producers.map((producer) => producer.id),
      owned,
      releasing: unreturned.flatMap((each) => each.claims),
      afterMillis: Duration.toMillis(options.rescueAfter)
    })
    if (released.length > 0) {
      yield* Effect.logWarning(
        `released ${released.length} job(s) claimed here whose claim or outcome was lost: ${released.join(", ")}`
      )
    }
    if (options.stop !== undefined) {
      const producers = options.producers.map((producer) => producer.id)
      yield* Effect.forEach(yield* jobsToStop(options.sql, options.prefix, producers, [...owned]), options.stop, {
        discard: true
      })
    }
    return released
  })
