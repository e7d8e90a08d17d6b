/**
 * A direct address for the node's own connections (LISTEN, and heartbeats
 * with the leader lease), for a pool whose connections go through a pooler in
 * transaction mode (PgBouncer, Supavisor, RDS Proxy): a pooler cannot carry
 * LISTEN, and heartbeats that wait behind its saturated pool would make a
 * live node look dead.
 */
import type * as PgConnection from "@effect/sql-pg/PgConnection"

/**
 * Where a connection goes and as whom: a `url`, or `host`, `port`, `path`,
 * `database`, with `username`, `password` and `ssl`.
 */
export type DirectConnection = Pick<
  PgConnection.Config,
  "url" | "host" | "port" | "path" | "database" | "username" | "password" | "ssl"
>

/** Whether `url` parses as a PostgreSQL connection URL (`postgres:` or `postgresql:`). */
export const isPostgresUrl = (url: string): boolean => {
  try {
    const protocol = new URL(url).protocol
    return protocol === "postgres:" || protocol === "postgresql:"
  } catch {
    return false
  }
}

/** The settings that say where a connection goes and as whom. */
const addressFields = ["url", "host", "port", "path", "database", "username", "password", "ssl", "stream"] as const

/** The option's own keys, for the layer's check of unknown options. */
export const directConnectionKeys: ReadonlyArray<string> = addressFields.filter((field) => field !== "stream")

/**
 * The client's settings with its address and credentials replaced by
 * `direct`, when given; its other settings (timeouts, types, `prepare`, ...)
 * still apply.
 */
export const connectionSettings = <C extends PgConnection.Config>(client: C, direct: DirectConnection | undefined): C => {
  if (direct === undefined) return client
  const rest: Record<string, unknown> = { ...(client as object) }
  for (const field of addressFields) delete rest[field]
  return { ...(rest as C), ...direct }
}
