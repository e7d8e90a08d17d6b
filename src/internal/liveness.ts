/**
 * A node's proof of life, kept off the shared pool. Heartbeats and the leader
 * lease run on a client of the node's own (one connection, each statement
 * under a deadline), so workers that hold every pooled connection cannot
 * starve them. The node also records since when it has reached the database
 * without a failure: the rescuer acts only after it has been connected for
 * `rescueAfter`, so time the database itself was unreachable never makes live
 * nodes look dead. Time the process itself did not run (its event loop
 * blocked, its machine or container paused) counts as not connected too: the
 * other nodes paused with it wake with rows as stale as after an outage.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { connectionSettings, type DirectConnection } from "./directConnection.ts"
import { withStatementTimeout } from "./statementTimeout.ts"

export { defaultHeartbeatInterval } from "./lateness.ts"

export interface Liveness {
  /** The node's own client for heartbeats and the lease. */
  readonly sql: SqlClient
  /** Opens the connection ahead of the first heartbeat (never fails). */
  readonly warmUp: Effect.Effect<void>
  /** Records the end of a statement on `sql`: it reached the database, or not. */
  readonly reached: (ok: boolean) => Effect.Effect<void>
  /**
   * How long the node has reached the database without a failure, and without the process stopping
   * for longer than the lapse it was made with; 0 while it does not.
   */
  readonly connectedForMillis: Effect.Effect<number>
  /** Runs a statement on the node's client with a client-side deadline and records whether it got through. */
  readonly run: <A, E>(statement: Effect.Effect<A, E>) => Effect.Effect<A, E | SqlError>
}

/** The application name of the node's own connection, for `pg_stat_activity`. */
export const applicationName = (node: string): string => `oban_liveness ${node}`.slice(0, 63)

/**
 * The longest the process may stop running and still count as connected
 * throughout: half of `rescueAfter`, or less when heartbeats are sparse
 * (`rescueAfter - heartbeatInterval - max(1 s, heartbeatInterval / 2)`), so
 * that a node paused along with this one, with the same heartbeats, still has
 * time to beat after it wakes before its rows have been silent for
 * `rescueAfter`; at least a second, so that a busy event loop is no lapse.
 */
export const lapseMillis = (rescueAfter: Duration.Duration, heartbeatInterval: Duration.Duration): number => {
  const rescueAfterMillis = Duration.toMillis(rescueAfter)
  const heartbeatMillis = Duration.toMillis(heartbeatInterval)
  const margin = Math.max(1_000, heartbeatMillis / 2)
  return Math.max(1_000, Math.min(rescueAfterMillis / 2, rescueAfterMillis - heartbeatMillis - margin))
}

/**
 * Watches the process's own running in real time (a timer four times within
 * `lapseMillis`, and at least once a second): `onLapse` runs when a tick finds
 * the previous one more than `lapseMillis` ago, and `lapsing` tells a lapse
 * that no tick has seen end yet (a timer due at the same moment may run
 * first). A gap is the larger of the monotonic clock's and the wall clock's:
 * a machine asleep stops the first, a VM whose clock is frozen while it is
 * paused the second (a forward step of the wall clock then counts too, which
 * only delays rescues; a backward one is ignored). Not the Effect clock:
 * `TestClock` moving on is no lapse.
 */
const watchLapses = (lapse: number, onLapse: (millis: number) => void): Effect.Effect<() => boolean, never, Scope.Scope> => {
  let lastTick = performance.now()
  let lastWall = Date.now()
  const gap = () => Math.max(performance.now() - lastTick, Date.now() - lastWall)
  const tick = () => {
    const millis = gap()
    if (millis > lapse) onLapse(Math.round(millis))
    lastTick = performance.now()
    lastWall = Date.now()
  }
  return Effect.acquireRelease(
    Effect.sync(() => setInterval(tick, Math.min(1_000, lapse / 4)).unref()),
    (timer) => Effect.sync(() => clearInterval(timer))
  ).pipe(Effect.as(() => gap() > lapse))
}

export const make = (options: {
  readonly node: string
  /** A direct address for the connection, past a pooler (see `directConnection`). Default: the client's. */
  readonly direct?: DirectConnection | undefined
  /** The longest a heartbeat or lease statement may take. */
  readonly statementTimeout: Duration.Duration
  /** The longest the process may stop running and still count as connected (see `lapseMillis`). */
  readonly lapseMillis: number
}): Effect.Effect<Liveness, never, PgClient.PgClient | SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const timeoutMillis = Math.max(1, Math.round(Duration.toMillis(options.statementTimeout)))
    const sql = yield* PgClient.make({
      ...connectionSettings(pg.config, options.direct),
      maxConnections: 1,
      minConnections: 0,
      // No startup parameter of its own (a statement_timeout): PgBouncer refuses connections that
      // send one it does not know, and its transaction mode would leak a session setting. The
      // deadline of `run` cancels a statement on the server when it passes.
      applicationName: applicationName(options.node),
      // One connection, one statement at a time; and a multiplexed connection abandons an
      // interrupted statement instead of cancelling it: the deadline's cancel must reach the server.
      multiplex: false
    }).pipe(
      Effect.provideServiceEffect(Reactivity.Reactivity, Reactivity.make),
      Effect.map((client): SqlClient => plain(client)),
      Effect.catch((error) =>
        Effect.andThen(
          Effect.logWarning("could not make the node's own connection; heartbeats use the shared pool", error.message),
          Effect.map(Effect.service(SqlClient), plain)
        )
      )
    )

    let connectedSince: number | undefined = undefined
    /** A lapse not yet logged: it is, with the next statement's end. */
    let lapsedFor: number | undefined = undefined
    const reached = (ok: boolean) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (!ok) connectedSince = undefined
        else if (connectedSince === undefined) connectedSince = now
        if (lapsedFor === undefined) return Effect.void
        const millis = lapsedFor
        lapsedFor = undefined
        return Effect.logWarning(
          `this process did not run for ${millis} ms (its event loop blocked, or its machine paused); ` +
            `the rescuer, if this node leads, waits rescueAfter again before judging other nodes`
        )
      })
    // After a lapse the node counts as connected again from its next statement that gets through.
    const lapsing = yield* watchLapses(options.lapseMillis, (millis) => {
      connectedSince = undefined
      lapsedFor = millis
    })

    return {
      sql,
      // Opens the connection ahead of the first heartbeat; a failure here is only a slower first beat.
      warmUp: Effect.ignore(withStatementTimeout(sql`SELECT 1`, { timeout: options.statementTimeout, operation: "connect", connection: "own" })),
      reached,
      connectedForMillis: Effect.map(
        Clock.currentTimeMillis,
        (now) => connectedSince === undefined || lapsing() ? 0 : now - connectedSince
      ),
      run: (statement) =>
        statement.pipe(
          withStatementTimeout({ timeout: timeoutMillis, operation: "heartbeat", connection: "own" }),
          Effect.onExit((exit) => reached(exit._tag === "Success"))
        )
    }
  })
