/**
 * The thread pool, loaded when a node or test runner first needs one: the
 * pool, its RPC protocol, `node:worker_threads` and `node:child_process` are
 * imported only by programs that define workers with `threads`, so the rest
 * start without them.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Job } from "../../Job.ts"
import type { Worker } from "../../Worker.ts"
import type { Around } from "./perform.ts"
import type { ThreadPoolOptions } from "./pool.ts"

/** What the executor and the testing kit use of the pool. */
export interface Threads {
  /** Runs one attempt of a thread worker; see `performOnThread`. */
  readonly perform: (
    worker: Worker<string, any, any, any, any> & { readonly threads: { readonly module: URL } },
    job: Job<unknown>,
    around: Around
  ) => Effect.Effect<unknown, unknown>
  /** Ends the attempts still waiting for a thread, as not started; see the pool's `stopWaiting`. */
  readonly stopWaiting: Effect.Effect<void>
}

/** Imports the pool's modules and starts a pool for the scope's life. */
export const load = (options: ThreadPoolOptions): Effect.Effect<Threads, never, Scope.Scope> =>
  Effect.promise(() => Promise.all([import("./pool.ts"), import("./perform.ts")])).pipe(
    Effect.flatMap(([Pool, Perform]) =>
      Effect.map(Pool.make(options), (pool): Threads => ({
        perform: (worker, job, around) => Perform.performOnThread(pool, worker, job, around),
        stopWaiting: pool.stopWaiting
      }))
    )
  )
