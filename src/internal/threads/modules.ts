/**
 * Start-up checks of thread workers: a `threads.module` that names no file
 * would otherwise fail every attempt of its worker, one by one, in the
 * threads; a node started inside a thread of the pool comes from a worker
 * module that starts the application when imported.
 */
import * as Effect from "effect/Effect"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { InvalidConfigError } from "../../Errors.ts"

export const checkThreadModules = (
  workers: ReadonlyArray<{ readonly name: string; readonly threads?: { readonly module: URL } | undefined }>
): Effect.Effect<void, InvalidConfigError> =>
  Effect.suspend(() => {
    for (const worker of workers) {
      const module = worker.threads?.module
      if (module === undefined) continue
      // Threads and child processes import workers from files only: an https: URL does not load,
      // and a data: URL could not import the library relatively.
      const problem = module.protocol !== "file:"
        ? "is no file: URL; give threads.module as import.meta.url of the module that exports the worker"
        : existsSync(fileURLToPath(module))
        ? undefined
        : "is no file"
      if (problem !== undefined) {
        return Effect.fail(
          new InvalidConfigError({
            field: "workers",
            message: `worker "${worker.name}" runs on threads from ${module.href}, which ${problem}`
          })
        )
      }
    }
    return Effect.void
  })

/** Set in each thread and child process of a pool, before it imports any worker module. */
const runnerMark = Symbol.for("effect-oban/threads/runner")

/** Marks this thread (or child process) as one of a pool's runners. */
export const markRunner = (): void => {
  ;(globalThis as { [runnerMark]?: boolean })[runnerMark] = true
}

/**
 * Refuses a node inside a pool's thread or child process: its worker module
 * starts the application when a thread imports it, and each thread would
 * run a node of its own, claiming jobs with a pool of its own.
 */
export const checkNotInRunner: Effect.Effect<void, InvalidConfigError> = Effect.suspend(() =>
  (globalThis as { [runnerMark]?: boolean })[runnerMark] === true
    ? Effect.fail(
      new InvalidConfigError({
        field: "workers",
        message: "Oban.layer was started inside a thread (or process) of a node's thread pool: a module given as " +
          "threads.module must export its workers without starting the application when imported; move them " +
          "to a module of their own"
      })
    )
    : Effect.void
)
