/**
 * A cause as text for a log line or an errors entry, when the cause may hold
 * values of a user's (an error whose `message` getter throws, say).
 */
import * as Cause from "effect/Cause"

/** `Cause.pretty`, which runs the errors' own code (a `toString`, a getter) and may throw. */
export const prettyCause = (cause: Cause.Cause<unknown>): string => {
  try {
    return Cause.pretty(cause)
  } catch {
    return "(the cause could not be shown: reading it threw)"
  }
}
