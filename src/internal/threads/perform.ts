/**
 * The node's side of an attempt of a thread worker: hands the job, with its
 * args as stored, to the pool, and turns what comes back into what the
 * worker's `perform` would have given on the main thread: its typed failure
 * decoded by its `errors` schema (else `{ _tag, message }`), its result decoded by its `result` schema
 * (the executor encodes it again to store it, as for any worker).
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type { Job } from "../../Job.ts"
import type { Worker } from "../../Worker.ts"
import type { ThreadPool } from "./pool.ts"
import { ThreadFailure } from "./protocol.ts"

/** Wraps the call once a thread is leased: the job's timeout. */
export type Around = <A, E>(call: Effect.Effect<A, E>) => Effect.Effect<A, unknown>

export const performOnThread = (
  pool: ThreadPool,
  worker: Worker<string, any, any, any, any> & { readonly threads: { readonly module: URL } },
  job: Job<unknown>,
  around: Around
): Effect.Effect<unknown, unknown> => {
  const call = pool.perform(
    { name: worker.name, module: worker.threads.module },
    job as Job<Schema.Json>,
    around
  )
  const errors = worker.errorsJson === undefined ? undefined : Schema.decodeUnknownExit(worker.errorsJson)
  const result = worker.resultJson === undefined ? undefined : Schema.decodeUnknownEffect(worker.resultJson)
  return call.pipe(
    Effect.catch((error): Effect.Effect<never, unknown> => {
      if (!(error instanceof ThreadFailure)) return Effect.fail(error)
      if (errors !== undefined && error.encoded !== undefined) {
        const decoded = errors(error.encoded)
        if (Exit.isSuccess(decoded)) return Effect.fail(decoded.value)
      }
      // As close to the worker's error as crosses without a schema: its tag and message, which
      // is what `retryable` usually looks at and what the errors entry shows.
      return Effect.fail(error.tag === undefined ? error : { _tag: error.tag, message: error.message })
    }),
    Effect.flatMap((value) => result === undefined ? Effect.void : Effect.orDie(result(value)))
  )
}
