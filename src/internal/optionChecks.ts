/**
 * Checks of option values shared by the node's configuration and the
 * maintenance services' `runOnce`: a bad value is an `InvalidConfigError`
 * naming its field, never a loop without end or a database error.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { InvalidConfigError } from "../Errors.ts"

/** `input` as a finite duration of at least `minimum`; `fallback` when not given. */
export const duration = (
  field: string,
  input: Duration.Input | undefined,
  fallback: Duration.Duration,
  minimum: Duration.Duration
): Effect.Effect<Duration.Duration, InvalidConfigError> => {
  if (input === undefined) return Effect.succeed(fallback)
  const parsed = parseDuration(input)
  if (Option.isNone(parsed) || !Duration.isFinite(parsed.value) || Duration.isLessThan(parsed.value, minimum)) {
    return Effect.fail(
      new InvalidConfigError({
        field,
        message: `${field} must be a finite duration of at least ${Duration.format(minimum)}, got ${String(input)}`
      })
    )
  }
  return Effect.succeed(parsed.value)
}

/** Some malformed text makes `Duration.fromInput` throw rather than give none. */
const parseDuration = (input: Duration.Input): Option.Option<Duration.Duration> => {
  try {
    return typeof input === "number" && Number.isNaN(input) ? Option.none() : Duration.fromInput(input)
  } catch {
    return Option.none()
  }
}

/** `input` as a positive safe integer; `fallback` when not given. */
export const positiveInt = (
  field: string,
  input: number | undefined,
  fallback: number
): Effect.Effect<number, InvalidConfigError> =>
  input === undefined
    ? Effect.succeed(fallback)
    : Number.isSafeInteger(input) && input >= 1
    ? Effect.succeed(input)
    : Effect.fail(new InvalidConfigError({ field, message: `${field} must be a positive integer, got ${input}` }))

/** Fails unless `value`, when given, is one of `allowed`. */
export const oneOf = (field: string, value: unknown, allowed: ReadonlyArray<string>): Effect.Effect<void, InvalidConfigError> =>
  value === undefined || allowed.includes(value as string) ? Effect.void : Effect.fail(
    new InvalidConfigError({
      field,
      message: `${field} must be ${allowed.map((a) => JSON.stringify(a)).join(" or ")}, got ${JSON.stringify(value)}`
    })
  )
