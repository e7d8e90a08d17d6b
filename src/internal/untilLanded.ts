/**
 * Sending a statement again until it lands: what the give-backs and releases
 * of claimed jobs need, since a job they miss loses an attempt it never ran.
 * The caller says how long to pause between tries (on the node's clock, or in
 * real time at shutdown), which failures are worth another try, and what to
 * say meanwhile; a deadline, if any, goes around the whole loop.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { isServerUnavailable, type ReasonedFailure } from "./serverUnavailable.ts"

export interface Retrying<E> {
  /** The pause before the next try, after `failures` tries have failed. */
  readonly pause: (failures: number) => Effect.Effect<void>
  /** Whether a failure is worth another try; others end the loop with it. Default: every failure. */
  readonly retryIf?: ((cause: Cause.Cause<E>) => boolean) | undefined
  /** Runs after each failure that will be tried again (to say so). */
  readonly onRetry?: ((failures: number, cause: Cause.Cause<E>) => Effect.Effect<void>) | undefined
}

/**
 * Runs `statement` until it succeeds, or fails in a way `retryIf` does not
 * retry. Without `retryIf` it never fails: it ends by succeeding, or when its
 * fiber is interrupted.
 */
export function untilLanded<A, E, R>(
  statement: Effect.Effect<A, E, R>,
  retrying: Retrying<E> & { readonly retryIf?: undefined }
): Effect.Effect<A, never, R>
export function untilLanded<A, E, R>(statement: Effect.Effect<A, E, R>, retrying: Retrying<E>): Effect.Effect<A, E, R>
export function untilLanded<A, E, R>(statement: Effect.Effect<A, E, R>, retrying: Retrying<E>): Effect.Effect<A, E, R> {
  return Effect.gen(function*() {
    let failures = 0
    while (true) {
      const result = yield* Effect.exit(statement)
      if (Exit.isSuccess(result)) return result.value
      if (retrying.retryIf !== undefined && !retrying.retryIf(result.cause)) return yield* result
      failures++
      if (retrying.onRetry !== undefined) yield* retrying.onRetry(failures, result.cause)
      yield* retrying.pause(failures)
    }
  })
}

/**
 * Whether `cause` is a failure (no defect) worth another try: a `SqlError` that says so (`isRetryable`),
 * or one that says the connection or the server is unavailable (a session ended by a restart, say).
 */
export const isRetryableFailure = <E extends { readonly isRetryable: boolean } & ReasonedFailure>(
  cause: Cause.Cause<E>
): boolean => {
  const error = Cause.findErrorOption(cause)
  return error._tag === "Some" && (error.value.isRetryable || isServerUnavailable(error.value)) && !Cause.hasDies(cause)
}
