/**
 * What makes a queue name usable: the same rule for a node's configured
 * queues and for every command that names a queue, so that bad input fails
 * as `InvalidConfigError`, never as a database error.
 */
import * as Effect from "effect/Effect"
import { InvalidConfigError } from "../Errors.ts"
import { characterCount, textProblem } from "./jsonText.ts"
import { maxNameLength } from "./requestFields.ts"

/** Why `name` cannot be a queue's name, or `undefined` when it can. */
export const queueNameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "must not be empty"
  const problem = textProblem(name)
  if (problem !== undefined) return problem
  const length = name.length > maxNameLength * 2 ? name.length : characterCount(name)
  return length > maxNameLength ? `must be at most ${maxNameLength} characters, got ${length}` : undefined
}

/** Succeeds with `queue` when it can be a queue's name; fails with `InvalidConfigError` for `field` otherwise. */
export const checkQueueName = (field: string, queue: string): Effect.Effect<string, InvalidConfigError> => {
  const problem = typeof queue === "string" ? queueNameProblem(queue) : "must be a string"
  return problem === undefined
    ? Effect.succeed(queue)
    : Effect.fail(new InvalidConfigError({ field, message: `queue name ${shown(queue)} ${problem}` }))
}

/** A name as a message shows it: quoted, escaped, and cut after 60 characters; what is no string (untyped callers), with its type. */
export const shown = (name: string): string =>
  typeof name !== "string"
    ? `${String(name)} (${name === null ? "null" : typeof name})`
    : JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name)
