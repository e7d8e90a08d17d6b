/**
 * When a producer counts as late: silent (no heartbeat) for more than twice
 * its node's heartbeat interval and 5 s besides. `Cluster.view` marks such
 * producers, and a cancel does not wait for a late producer's job to stop
 * (see `cancelSet`).
 */
import * as Duration from "effect/Duration"

/** How often a node's producers beat when `heartbeatInterval` is not given. */
export const defaultHeartbeatInterval = Duration.seconds(10)

const defaultHeartbeatMillis = Duration.toMillis(defaultHeartbeatInterval)

/** The heartbeat interval a node reports in its producers' rows (`meta.heartbeatMillis`), else the default. */
export const heartbeatMillisOf = (meta: Record<string, unknown> | null): number => {
  const reported = meta?.["heartbeatMillis"]
  return typeof reported === "number" && Number.isFinite(reported) && reported > 0 ? reported : defaultHeartbeatMillis
}

/** Whether a producer silent for `silentForMillis` is late. */
export const isLate = (silentForMillis: number, meta: Record<string, unknown> | null): boolean =>
  silentForMillis > 2 * heartbeatMillisOf(meta) + 5_000

/**
 * `isLate`'s opposite as SQL: whether the producer row aliased `p` was heard from recently enough at
 * `now` (SQL text of a timestamptz).
 */
export const heardFromSql = (now: string): string =>
  `p.updated_at > ${now} - make_interval(secs => (2 * (CASE WHEN jsonb_typeof(p.meta -> 'heartbeatMillis') = 'number'
      AND (p.meta ->> 'heartbeatMillis')::float8 > 0 THEN (p.meta ->> 'heartbeatMillis')::float8
      ELSE ${defaultHeartbeatMillis} END) + 5000) / 1000.0)`
