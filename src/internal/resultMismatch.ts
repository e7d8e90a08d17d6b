/**
 * The message of a failed attempt whose worker succeeded with a value its
 * `result` schema does not encode: the same on the main thread and in a
 * thread of the pool.
 */
import * as Cause from "effect/Cause"

export const resultMismatchMessage = (cause: Cause.Cause<unknown>): string =>
  `the result does not match the worker's result schema: ${Cause.pretty(cause)}`
