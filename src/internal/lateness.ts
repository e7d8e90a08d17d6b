/**
 * How long a producer may be silent (no heartbeat): late, for the views,
 * after more than twice its node's heartbeat interval and 5 s besides; gone,
 * for a cancel, after its node's `rescueAfter`, when a rescuer would take its
 * jobs (see `cancelSet`).
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

/** How long a node waits before it rescues the jobs of a silent producer when `rescuer.rescueAfter` is not given. */
export const defaultRescueAfter = Duration.seconds(60)

/**
 * As SQL: whether the producer row aliased `p` was heard from within its node's `rescueAfter`
 * (`meta.rescueAfterMillis`, else the default) at `now` (SQL text of a timestamptz): no rescuer would
 * take its jobs yet, so it still answers for them.
 */
export const heardFromSql = (now: string): string =>
  `p.updated_at > ${now} - make_interval(secs => ${reportedRescueAfterSql} / 1000.0)`

/**
 * As SQL: the `rescueAfter` (ms) the node of the producer row aliased `p` reported, else the default, at
 * most 100 years: subtracted from now, a value of thousands of years (the option takes any finite duration,
 * plain SQL any number) put the time out of range and failed the whole statement, every rescue and cancel
 * of executing jobs with it.
 */
export const reportedRescueAfterSql = `(CASE WHEN jsonb_typeof(p.meta -> 'rescueAfterMillis') = 'number'
      AND (p.meta ->> 'rescueAfterMillis')::float8 > 0 THEN LEAST((p.meta ->> 'rescueAfterMillis')::float8, ${
  100 * 365 * 24 * 3600 * 1000
})
      ELSE ${Duration.toMillis(defaultRescueAfter)} END)`

