/**
 * What PostgreSQL said about a failed statement, for a message people read:
 * the server's message with its detail and hint (the detail often names the
 * object in the way, such as a view), read from the driver's error under a
 * `SqlError`.
 */
import * as Cause from "effect/Cause"

/** The server's message with its detail and hint; undefined when the error carries none (no driver error under it). */
export const serverMessage = (error: { readonly reason?: { readonly cause?: unknown } }): string | undefined => {
  const cause = error.reason?.cause
  if (!(cause instanceof Error)) return undefined
  const { detail, hint } = cause as { readonly detail?: unknown; readonly hint?: unknown }
  return [
    cause.message,
    ...(typeof detail === "string" && detail !== "" ? [`detail: ${detail}`] : []),
    ...(typeof hint === "string" && hint !== "" ? [`hint: ${hint}`] : [])
  ].join("; ")
}

/**
 * `message` (an error's own), followed by what the server said when the error carries a driver's
 * error that says more (`SqlError: PgConnection: Query failed (terminating connection due to
 * administrator command)`): a worker's failed statement is recorded, and logged, with its reason.
 */
export const withServerMessage = (error: unknown, message: string): string => {
  const server = typeof error === "object" && error !== null
    ? serverMessage(error as { readonly reason?: { readonly cause?: unknown } })
    : undefined
  return server === undefined || message.includes(server) ? message : `${message} (${server})`
}

/**
 * One line for a failure that a retrying loop logs: the error's message, and
 * what the server said when the driver's error carries it (`PgConnection:
 * Failed to connect (database "shop" does not exist)`), which the pretty cause
 * shows only deep in its text. A wrong database name, role or password is then
 * visible in the warning itself.
 */
export const failureLine = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const line = withServerMessage(error, error instanceof Error ? error.message : String(error))
  return missingObject(error) ? `${line}: the schema may be behind this release (run effect-oban migrate up, or Migrations.run)` : line
}

// SQLSTATEs of a column, table or function the statement names that the schema does not have.
const undefinedObject = new Set(["42703", "42P01", "42883"])

/** Whether the driver's error under `error` says the schema lacks what a statement names (a migration behind, or rolled back). */
const missingObject = (error: unknown): boolean => {
  const driver = typeof error === "object" && error !== null ? (error as { readonly reason?: { readonly cause?: unknown } }).reason?.cause : undefined
  const code = typeof driver === "object" && driver !== null ? (driver as { readonly code?: unknown }).code : undefined
  return typeof code === "string" && undefinedObject.has(code)
}

/**
 * The whole cause of a retrying loop's failure, for its warning, only the first time in a row: the
 * repeats say their line alone (a schema rolled back under running nodes wrote 1,700 lines of stacks
 * in 30 s from one node).
 */
export const causeIfFirst = (failuresInARow: number, cause: Cause.Cause<unknown>): ReadonlyArray<string> =>
  failuresInARow <= 1 ? causeUnlessUnreached(cause) : []

/** The whole cause of a failure for its warning, but for a failure to connect (see `notConnected`). */
export const causeUnlessUnreached = (cause: Cause.Cause<unknown>): ReadonlyArray<string> =>
  notConnected(Cause.squash(cause)) ? [] : [Cause.pretty(cause)]

/** Reasons of a connection the server refused, or never reached: what the failure's line says is all there is. */
const connectionReasons = new Set(["ConnectionError", "AuthenticationError", "AuthorizationError"])

/**
 * Whether `error` is the driver failing to connect (no server, no such database, a refused login): its
 * stack is the driver's socket handling, three times over (the error and its causes), and says nothing the
 * failure's line does not. Each retrying loop of a node pointed at a wrong database printed 35 such lines.
 */
const notConnected = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  const reason = (error as { readonly reason?: { readonly _tag?: unknown } }).reason
  if (typeof reason?._tag === "string" && connectionReasons.has(reason._tag)) return true
  const message = (error as { readonly message?: unknown }).message
  return typeof message === "string" && message.startsWith("PgConnection: Failed to connect")
}
