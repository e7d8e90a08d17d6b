/**
 * SQL on `oban_peers`: the leader lease. One row per prefix (`name = 'oban'`)
 * names the node that leads until `expires_at`.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { table } from "./tables.ts"

const leaseName = "oban"

/**
 * Takes the lease, or renews it, when it is ours or has expired. Returns the
 * node that holds a valid lease afterwards (us, someone else, or nobody) and
 * how long that lease has left.
 */
export const claimLease = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  node: string,
  ttlMillis: number
): Effect.Effect<{ readonly holder: string | undefined; readonly expiresInMillis: number }, SqlError> =>
  sql<{ readonly node: string; readonly valid: boolean; readonly expires_in: number }>`
    WITH clock AS (SELECT ${now} AS now),
    claimed AS (
      INSERT INTO ${table(sql, prefix, "oban_peers")} AS p (name, node, started_at, expires_at)
      SELECT ${leaseName}, ${node}, clock.now, clock.now + ${ttlMillis} * interval '1 millisecond' FROM clock
      ON CONFLICT (name) DO UPDATE
        SET node = excluded.node,
            started_at = CASE WHEN p.node = excluded.node THEN p.started_at ELSE excluded.started_at END,
            expires_at = excluded.expires_at
        WHERE p.node = excluded.node OR p.expires_at <= excluded.started_at
      RETURNING p.node, p.expires_at
    )
    SELECT node, true AS valid, (EXTRACT(EPOCH FROM (claimed.expires_at - clock.now)) * 1000)::float8 AS expires_in
    FROM claimed, clock
    UNION ALL
    SELECT p.node, p.expires_at > clock.now AS valid,
           (EXTRACT(EPOCH FROM (p.expires_at - clock.now)) * 1000)::float8 AS expires_in
    FROM ${table(sql, prefix, "oban_peers")} AS p, clock
    WHERE p.name = ${leaseName} AND NOT EXISTS (SELECT 1 FROM claimed)
  `.pipe(Effect.map((rows) => {
    const valid = rows.find((row) => row.valid)
    return { holder: valid?.node, expiresInMillis: valid === undefined ? 0 : Number(valid.expires_in) }
  }))

/** Gives the lease up and tells the other nodes to try at once. */
export const resignLease = (sql: SqlClient, prefix: string, node: string): Effect.Effect<void, SqlError> =>
  sql`
    WITH resigned AS (
      DELETE FROM ${table(sql, prefix, "oban_peers")} WHERE name = ${leaseName} AND node = ${node} RETURNING node
    )
    SELECT pg_notify(${channel(prefix, "leader")}, json_build_object('action', 'resign', 'node', node)::text)
    FROM resigned
  `.pipe(Effect.asVoid)
