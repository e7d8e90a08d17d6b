/**
 * Whether a failed statement says the connection or the server is
 * unavailable rather than anything about the statement. The driver calls
 * only SQLSTATE class 08 a `ConnectionError`; a refusal while connecting
 * (a password rotated, a database not accepting connections) says nothing
 * about the statement either, and the codes PostgreSQL sends as it ends a
 * session (a fast shutdown or restart, `pg_terminate_backend`, a crash of
 * another backend, an idle-session timeout) or refuses one (starting up,
 * shutting down, too many clients), or when it takes no writes (a standby,
 * reached after a failover), all arrive as `UnknownError`. Read as
 * refusals, a server restart made the acker replace good outcomes with
 * failures, and those jobs ran again. Not here: the other codes of class 53
 * (out of memory, disk full, `temp_file_limit`), which one large statement
 * can cause by itself, so that waiting for it would hold back every other.
 */

/** What is read of a failure: a `SqlError` has it; a failure without a `reason` says nothing of the server. */
export interface ReasonedFailure {
  readonly reason?: { readonly _tag: string; readonly cause?: unknown; readonly operation?: string | undefined } | undefined
}

/** SQLSTATEs of a session the server ended or refused, or of one that takes no writes, whatever the statement. */
const unavailableCodes: ReadonlySet<string> = new Set([
  "57P01", // admin_shutdown: fast shutdown, restart, pg_terminate_backend
  "57P02", // crash_shutdown: another backend crashed and the server resets
  "57P03", // cannot_connect_now: starting up, shutting down, or in recovery
  "57P05", // idle_session_timeout
  "53300", // too_many_connections
  "25006" // read_only_sql_transaction: a standby, as the old primary is after a failover
])

/** The SQLSTATE a driver error carries as its `code`, if any. */
export const sqlState = (cause: unknown): string | undefined => {
  if (typeof cause !== "object" || cause === null || !("code" in cause)) return undefined
  return typeof cause.code === "string" ? cause.code : undefined
}

/** The connection or the server is unavailable: the same statement may well succeed later, or on a fresh connection. */
export const isServerUnavailable = ({ reason }: ReasonedFailure): boolean => {
  if (reason === undefined) return false
  if (reason._tag === "ConnectionError" || reason.operation === "connect") return true
  return reason._tag === "UnknownError" && unavailableCodes.has(sqlState(reason.cause) ?? "")
}
