/**
 * SQL on `oban_peers`: leases. Each row names the node that holds a lease
 * until `expires_at`, and the incarnation of that node (`instance`, unique
 * per process), so that a process restarted under the same name, or a second
 * process given the same name, never renews a lease it does not hold. The
 * leader's lease is `name = 'oban'`; the cron lease, held only by nodes with
 * a crontab, is `name = 'cron'`.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { table } from "./tables.ts"

/** The lease of the cluster's leader. */
export const leaderLease = "oban"
/** The lease of the node that runs the crontab: only nodes with a crontab try to take it. */
export const cronLease = "cron"

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
  instance: string,
  ttlMillis: number,
  leaseName: string = leaderLease,
  meta: Record<string, unknown> | undefined = undefined
): Effect.Effect<
  { readonly holder: string | undefined; readonly held: boolean; readonly expiresInMillis: number },
  SqlError
> =>
  sql<{ readonly node: string; readonly instance: string | null; readonly valid: boolean; readonly expires_in: number }>`
    WITH clock AS (SELECT ${now} AS now),
    claimed AS (
      INSERT INTO ${table(sql, prefix, "oban_peers")} AS p (name, node, instance, started_at, expires_at, meta)
      SELECT ${leaseName}, ${node}, ${instance}, clock.now, clock.now + ${ttlMillis} * interval '1 millisecond',
             ${meta === undefined ? null : JSON.stringify({ ...meta, instance })}::jsonb
      FROM clock
      ON CONFLICT (name) DO UPDATE
        SET node = excluded.node,
            instance = excluded.instance,
            meta = excluded.meta,
            started_at = CASE WHEN p.instance = excluded.instance THEN p.started_at ELSE excluded.started_at END,
            expires_at = excluded.expires_at
        WHERE p.instance = excluded.instance OR p.expires_at <= excluded.started_at
      RETURNING p.node, p.instance, p.expires_at
    )
    SELECT node, instance, true AS valid, (EXTRACT(EPOCH FROM (claimed.expires_at - clock.now)) * 1000)::float8 AS expires_in
    FROM claimed, clock
    UNION ALL
    SELECT p.node, p.instance, p.expires_at > clock.now AS valid,
           (EXTRACT(EPOCH FROM (p.expires_at - clock.now)) * 1000)::float8 AS expires_in
    FROM ${table(sql, prefix, "oban_peers")} AS p, clock
    WHERE p.name = ${leaseName} AND NOT EXISTS (SELECT 1 FROM claimed)
  `.pipe(Effect.map((rows) => {
    const valid = rows.find((row) => row.valid)
    return {
      holder: valid?.node,
      held: valid !== undefined && valid.instance === instance,
      expiresInMillis: valid === undefined ? 0 : Number(valid.expires_in)
    }
  }))

/** Gives the lease up and tells the other nodes to try at once. */
export const resignLease = (
  sql: SqlClient,
  prefix: string,
  instance: string,
  leaseName: string = leaderLease
): Effect.Effect<void, SqlError> =>
  sql`
    WITH resigned AS (
      DELETE FROM ${table(sql, prefix, "oban_peers")} WHERE name = ${leaseName} AND instance = ${instance} RETURNING node
    )
    SELECT pg_notify(${channel(prefix, "leader")}, json_build_object('action', 'resign', 'node', node, 'lease', ${leaseName}::text)::text)
    FROM resigned
  `.pipe(Effect.asVoid)
