/**
 * A start-up check of the thread workers' modules: a `threads.module` that
 * names no file would otherwise fail every attempt of its worker, one by
 * one, in the threads.
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
      if (module === undefined || module.protocol !== "file:" || existsSync(fileURLToPath(module))) continue
      return Effect.fail(
        new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}" runs on threads from ${module.href}, which is no file`
        })
      )
    }
    return Effect.void
  })
