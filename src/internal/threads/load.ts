/**
 * The thread pool, loaded when a node or test runner first needs one: the
 * pool, its RPC protocol and `node:child_process` are imported only by
 * programs that define workers with `threads`, so the rest start without them.
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

/** The modules of the thread workers among `workers`, each once: what each thread imports as it starts. */
const threadModules = (workers: ReadonlyArray<{ readonly threads?: { readonly module: URL } | undefined }>) =>
  [...new Set(workers.flatMap((worker) => worker.threads === undefined ? [] : [worker.threads.module.href]))]

/**
 * Imports the pool's modules and starts a pool for the scope's life, whose
 * threads import the modules of the thread workers among `workers` as they
 * start. An import that fails (a broken install, an `effect` without the RPC
 * modules) is a defect that says it was the thread pool's.
 */
export const load = (
  settings: Omit<ThreadPoolOptions, "modules">,
  workers: ReadonlyArray<{ readonly threads?: { readonly module: URL } | undefined }>
): Effect.Effect<Threads, never, Scope.Scope> =>
  Effect.tryPromise({
    try: () => Promise.all([import("./pool.ts"), import("./perform.ts")]),
    catch: (cause) => new Error("effect-oban: could not load the thread pool for the workers defined with `threads`", { cause })
  }).pipe(
    Effect.orDie,
    Effect.flatMap(([Pool, Perform]) =>
      Effect.map(Pool.make({ ...settings, modules: threadModules(workers) }), (pool): Threads => ({
        perform: (worker, job, around) => Perform.performOnThread(pool, worker, job, around),
        stopWaiting: pool.stopWaiting
      }))
    )
  )
