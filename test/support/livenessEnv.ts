/**
 * Liveness timings for a node started as an OS process by a test: the
 * heartbeat, rescuer and leader-lease settings the test passes in
 * `HEARTBEAT_MS`, `RESCUE_AFTER_MS` / `RESCUE_INTERVAL_MS` and
 * `LEASE_TTL_MS` / `LEASE_RENEW_MS`, as `Oban.layer` options (none given:
 * the defaults).
 */
const millis = (name: string): number | undefined => {
  const value = process.env[name]
  return value === undefined ? undefined : Number(value)
}

export const livenessFromEnv = () => ({
  ...(millis("HEARTBEAT_MS") === undefined ? {} : { heartbeatInterval: millis("HEARTBEAT_MS")! }),
  ...(millis("RESCUE_AFTER_MS") === undefined ? {} : {
    rescuer: { rescueAfter: millis("RESCUE_AFTER_MS")!, interval: millis("RESCUE_INTERVAL_MS")! }
  }),
  ...(millis("LEASE_TTL_MS") === undefined ? {} : {
    leader: { ttl: millis("LEASE_TTL_MS")!, renewInterval: millis("LEASE_RENEW_MS")! }
  })
})
