/**
 * Whether the LISTEN connection hears anything: after each (re)connect the
 * notifier sends one NOTIFY through the application's pool, and it must come
 * back on the listening connection. Behind a pooler in transaction mode
 * (PgBouncer, Supavisor, RDS Proxy) it never does (the pooler drops
 * notifications that reach a server connection no client holds), while the
 * connection's own checks pass: the node then says so, once per connection,
 * instead of polling in silence.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { realSleep, withStatementTimeout } from "./statementTimeout.ts"

/** The payload key of a probe; notifications that carry it are the notifier's own, never published. */
const probeKey = "oban_listen_probe"

/** How long a probe may take to come back (real time) before the node warns. */
const probeWaitMillis = 5_000

export interface ListenProbe {
  /** Whether `payload` is a probe (of this notifier or another node's): such a payload is not published. */
  readonly seen: (payload: Readonly<Record<string, unknown>>) => boolean
  /** Sends a probe on `pgChannel` through the pool and warns when it does not come back. */
  readonly run: Effect.Effect<void>
}

export const make = (sql: SqlClient, pgChannel: string): ListenProbe => {
  const pending = new Map<string, Deferred.Deferred<void>>()
  const seen = (payload: Readonly<Record<string, unknown>>): boolean => {
    const token = payload[probeKey]
    if (typeof token !== "string") return false
    const waiting = pending.get(token)
    if (waiting !== undefined) Deferred.doneUnsafe(waiting, Effect.void)
    return true
  }
  const run = Effect.suspend(() => {
    const token = crypto.randomUUID()
    const arrived = Deferred.makeUnsafe<void>()
    pending.set(token, arrived)
    return Effect.gen(function*() {
      yield* sql`SELECT pg_notify(${pgChannel}, ${JSON.stringify({ [probeKey]: token })})`.pipe(
        withStatementTimeout({ timeout: "15 seconds", operation: "LISTEN probe" })
      )
      const came = yield* Effect.raceFirst(
        Effect.as(Deferred.await(arrived), true),
        Effect.as(realSleep(probeWaitMillis), false)
      )
      if (!came) {
        yield* Effect.logWarning(
          `the LISTEN connection heard nothing within ${probeWaitMillis} ms of a NOTIFY sent through the pool: ` +
            "a pooler in transaction mode (PgBouncer, Supavisor, RDS Proxy) cannot carry LISTEN. Give the node " +
            "directConnection (see docs/operations.md); until then jobs start at the next poll (pollInterval)"
        )
      }
    }).pipe(
      Effect.ensuring(Effect.sync(() => pending.delete(token))),
      // A probe that could not be sent says nothing about LISTEN; the statement's failure is the pool's.
      Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logDebug("LISTEN probe not sent", cause))
    )
  })
  return { seen, run }
}
