/**
 * Whether a failed statement says the connection or the server went away
 * rather than anything about the statement. The driver calls only SQLSTATE
 * class 08 a `ConnectionError`; the codes PostgreSQL sends as it ends a
 * session (a fast shutdown or restart, `pg_terminate_backend`, a crash of
 * another backend, an idle-session timeout) or refuses one (starting up,
 * shutting down, too many clients), and a server that takes no writes (a
 * standby, reached after a failover), arrive as `UnknownError`. Read as
 * refusals, a server restart made the acker replace good outcomes with
 * failures, and those jobs ran again.
 */

/** What is read of a failure: a `SqlError` has it; a failure without a `reason` is no lost connection. */
export interface ReasonedFailure {
  readonly reason?: { readonly _tag: string; readonly cause?: unknown } | undefined
}

/** SQLSTATEs of a session ended or refused by the server, or of one that takes no writes, whatever the statement. */
const sessionEndedCodes: ReadonlySet<string> = new Set([
  "57P01", // admin_shutdown: fast shutdown, restart, pg_terminate_backend
  "57P02", // crash_shutdown: another backend crashed and the server resets
  "57P03", // cannot_connect_now: starting up, shutting down, or in recovery
  "57P05", // idle_session_timeout
  "53300", // too_many_connections
  "25006" // read_only_sql_transaction: a standby, as the old primary is after a failover
])

const sqlState = (cause: unknown): string | undefined => {
  if (typeof cause !== "object" || cause === null || !("code" in cause)) return undefined
  return typeof cause.code === "string" ? cause.code : undefined
}

/** The connection or the server went away: the same statement may well succeed on a fresh connection. */
export const isConnectionLost = ({ reason }: ReasonedFailure): boolean =>
  reason !== undefined &&
  (reason._tag === "ConnectionError" || (reason._tag === "UnknownError" && sessionEndedCodes.has(sqlState(reason.cause) ?? "")))

