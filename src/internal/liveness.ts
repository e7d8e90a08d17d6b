/**
 * A node's proof of life, kept off the shared pool. Heartbeats and the leader
 * lease run on a client of the node's own (one connection, with a server-side
 * statement timeout), so workers that hold every pooled connection cannot
 * starve them. The node also records since when it has reached the database
 * without a failure: the rescuer acts only after it has been connected for
 * `rescueAfter`, so time the database itself was unreachable never makes live
 * nodes look dead.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { withStatementTimeout } from "./statementTimeout.ts"

export interface Liveness {
  /** The node's own client for heartbeats and the lease. */
  readonly sql: SqlClient
  /** Opens the connection ahead of the first heartbeat (never fails). */
  readonly warmUp: Effect.Effect<void>
  /** Records the end of a statement on `sql`: it reached the database, or not. */
  readonly reached: (ok: boolean) => Effect.Effect<void>
  /** How long the node has reached the database without a failure; 0 while it does not. */
  readonly connectedForMillis: Effect.Effect<number>
  /** Runs a statement on the node's client with a client-side deadline and records whether it got through. */
  readonly run: <A, E>(statement: Effect.Effect<A, E>) => Effect.Effect<A, E | SqlError>
}

/** The application name of the node's own connection, for `pg_stat_activity`. */
export const applicationName = (node: string): string => `oban_liveness ${node}`.slice(0, 63)

export const make = (options: {
  readonly node: string
  /** The longest a heartbeat or lease statement may take. */
  readonly statementTimeout: Duration.Duration
}): Effect.Effect<Liveness, never, PgClient.PgClient | SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const timeoutMillis = Math.max(1, Math.round(Duration.toMillis(options.statementTimeout)))
    const sql = yield* PgClient.make({
      ...pg.config,
      maxConnections: 1,
      minConnections: 0,
      applicationName: applicationName(options.node),
      startupParameters: { ...pg.config.startupParameters, statement_timeout: String(timeoutMillis) }
    }).pipe(
      Effect.provideServiceEffect(Reactivity.Reactivity, Reactivity.make),
      Effect.map((client): SqlClient => client),
      Effect.catch((error) =>
        Effect.andThen(
          Effect.logWarning("could not make the node's own connection; heartbeats use the shared pool", error.message),
          SqlClient
        )
      )
    )

    let connectedSince: number | undefined = undefined
    const reached = (ok: boolean) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (!ok) connectedSince = undefined
          else if (connectedSince === undefined) connectedSince = now
        }))

    return {
      sql,
      // Opens the connection ahead of the first heartbeat; a failure here is only a slower first beat.
      warmUp: Effect.ignore(withStatementTimeout(sql`SELECT 1`, { timeout: options.statementTimeout, operation: "connect" })),
      reached,
      connectedForMillis: Effect.map(
        Clock.currentTimeMillis,
        (now) => connectedSince === undefined ? 0 : now - connectedSince
      ),
      run: (statement) =>
        statement.pipe(
          // The server's statement_timeout cannot fire when the network itself is gone.
          withStatementTimeout({ timeout: timeoutMillis + 1_000, operation: "heartbeat" }),
          Effect.onExit((exit) => reached(exit._tag === "Success"))
        )
    }
  })
