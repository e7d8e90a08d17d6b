/**
 * What makes a queue name usable: the same rule for a node's configured
 * queues and for every command that names a queue, so that bad input fails
 * as `InvalidConfigError`, never as a database error.
 */
import * as Effect from "effect/Effect"
import { InvalidConfigError } from "../Errors.ts"
import { characterCount, textProblem } from "./jsonText.ts"
import { maxNameLength } from "./requestFields.ts"

/**
 * Whether `name` starts or ends with whitespace: a queue named " mail" is
 * another queue than "mail", which no one means (a stray space in an
 * environment variable or a shell argument), so no queue (or node) may have one.
 */
export const hasEdgeWhitespace = (name: string): boolean => /^\s|\s$/.test(name)

/** What a queue name with whitespace at either end is told. */
export const edgeWhitespace = "must not start or end with whitespace"

/** Why `name` cannot be a queue's name, or `undefined` when it can. */
export const queueNameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "must not be empty"
  if (hasEdgeWhitespace(name)) return edgeWhitespace
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

/** The longest node name, in UTF-16 code units, as `Oban.layer`'s `node` takes it. */
export const maxNodeLength = 255

/**
 * Succeeds with `node` when a node can have that name (as `Oban.layer`'s
 * `node` takes it: 1 to 255 characters PostgreSQL can store, no whitespace
 * at either end, as for queues: `OBAN_NODE=" "` is a slip); fails with
 * `InvalidConfigError` on `node` otherwise. A command for a node no name can
 * fit is bad input, not a node that happens not to run.
 */
export const checkNodeName = (node: string): Effect.Effect<string, InvalidConfigError> => {
  const problem = typeof node !== "string"
    ? "must be a string"
    : node.length === 0
    ? "must not be empty"
    : node.length > maxNodeLength
    ? `must be at most ${maxNodeLength} characters, got ${node.length}`
    : hasEdgeWhitespace(node)
    ? edgeWhitespace
    : textProblem(node)
  return problem === undefined
    ? Effect.succeed(node)
    : Effect.fail(new InvalidConfigError({ field: "node", message: `node name ${shown(node)} ${problem}` }))
}

/** A name as a message shows it: quoted, escaped, and cut after 60 characters; what is no string (untyped callers), with its type. */
export const shown = (name: string): string =>
  typeof name !== "string"
    ? `${String(name)} (${name === null ? "null" : typeof name})`
    : JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name)
