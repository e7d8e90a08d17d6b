/**
 * Whether a failed statement says the connection or the server is
 * unavailable rather than anything about the statement. The driver calls
 * only SQLSTATE class 08 a `ConnectionError`; the codes PostgreSQL sends as
 * it ends a session (a fast shutdown or restart, `pg_terminate_backend`, a
 * crash of another backend, an idle-session timeout) or refuses one
 * (starting up, shutting down, too many clients), when it runs out of a
 * resource (disk, memory, locks), or when it takes no writes (a standby,
 * reached after a failover), all arrive as `UnknownError`. Read as refusals,
 * a server restart made the acker replace good outcomes with failures, and
 * those jobs ran again.
 */

/** What is read of a failure: a `SqlError` has it; a failure without a `reason` says nothing of the server. */
export interface ReasonedFailure {
  readonly reason?: { readonly _tag: string; readonly cause?: unknown } | undefined
}

/** SQLSTATEs of a session the server ended or refused, or of one that takes no writes, whatever the statement. */
const unavailableCodes: ReadonlySet<string> = new Set([
  "57P01", // admin_shutdown: fast shutdown, restart, pg_terminate_backend
  "57P02", // crash_shutdown: another backend crashed and the server resets
  "57P03", // cannot_connect_now: starting up, shutting down, or in recovery
  "57P05", // idle_session_timeout
  "25006" // read_only_sql_transaction: a standby, as the old primary is after a failover
])

/** Class 53, insufficient resources: disk full, out of memory, too many connections, a configured limit. */
const insufficientResources = "53"

const sqlState = (cause: unknown): string | undefined => {
  if (typeof cause !== "object" || cause === null || !("code" in cause)) return undefined
  return typeof cause.code === "string" ? cause.code : undefined
}

/** The connection or the server is unavailable: the same statement may well succeed later, or on a fresh connection. */
export const isServerUnavailable = ({ reason }: ReasonedFailure): boolean => {
  if (reason === undefined) return false
  if (reason._tag === "ConnectionError") return true
  const code = reason._tag === "UnknownError" ? sqlState(reason.cause) : undefined
  return code !== undefined && (unavailableCodes.has(code) || code.startsWith(insufficientResources))
}

