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
import { InvalidResultError } from "../../Errors.ts"
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
      if (error.invalidResult === true) {
        return Effect.fail(new InvalidResultError({ worker: worker.name, jobId: job.id, reason: "encode", message: error.message }))
      }
      if (errors !== undefined && error.encoded !== undefined) {
        const decoded = errors(error.encoded)
        if (Exit.isSuccess(decoded)) return Effect.fail(withThreadStack(decoded.value, error))
      }
      // As close to the worker's error as crosses without a schema: its tag and message, which
      // is what `retryable` usually looks at and what the errors entry shows.
      return Effect.fail(
        error.tag === undefined ? error : withThreadStack({ _tag: error.tag, message: error.message }, error)
      )
    }),
    Effect.flatMap((value) => result === undefined ? Effect.void : Effect.orDie(result(value)))
  )
}

/**
 * Gives the node's copy of a thread's failure the thread's stack trace (and,
 * for the `{ _tag, message }` of a failure without a schema, its tag as its
 * name), as hidden properties, so that the errors entry's `cause` shows where
 * the worker failed rather than where the node decoded it. Anything but an
 * object is left as it is.
 */
const withThreadStack = <A>(value: A, failure: ThreadFailure): A => {
  if (typeof value !== "object" || value === null || failure.threadStack === undefined) return value
  // Reflect.defineProperty: a frozen error keeps the node's stack rather than failing the outcome.
  const hidden = (property: string, content: string) =>
    Reflect.defineProperty(value, property, { value: content, configurable: true, writable: true, enumerable: false })
  if (!(value instanceof Error) && failure.tag !== undefined) hidden("name", failure.tag)
  hidden("stack", failure.threadStack)
  return value
}
