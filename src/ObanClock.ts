/**
 * The one place effect-oban reads "now" for SQL that stamps or compares times.
 *
 * In `database` mode (the default, for production) statements use the
 * server's clock (`now()`, or `clock_timestamp()` where a statement's time
 * must not predate what it sees: `statementNow`), so every node agrees on
 * time whatever their own clocks say.
 * In `effect` mode "now" is Effect's `Clock`, passed as a parameter, so tests
 * can move the whole queue with `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { SqlClient } from "effect/sql/SqlClient"
import * as Statement from "effect/sql/Statement"
import type { Fragment } from "effect/sql/Statement"

/**
 * @since 0.1.0
 */
export type Mode = "database" | "effect"

/**
 * The clock mode in force. Defaults to `database`.
 *
 * @since 0.1.0
 */
export const ObanClock: Context.Reference<{ readonly mode: Mode }> = Context.Reference<{ readonly mode: Mode }>(
  "effect-oban/ObanClock",
  { defaultValue: () => ({ mode: "database" }) }
)

/**
 * Stamp and compare times with Effect's `Clock` (and so `TestClock` in tests).
 *
 * @since 0.1.0
 */
export const layerEffect: Layer.Layer<never> = Layer.succeed(ObanClock, { mode: "effect" })

/**
 * Stamp and compare times with the database server's clock (the default).
 *
 * @since 0.1.0
 */
export const layerDatabase: Layer.Layer<never> = Layer.succeed(ObanClock, { mode: "database" })

/** The database clock's "now", built once: it is read by every insert and claim. */
const succeedDatabaseNow: Effect.Effect<Fragment> = Effect.succeed(Statement.fragment([Statement.literal("now()")]))

/** The database clock's time of evaluation, built once: it is read by every claim. */
const succeedDatabaseStatementNow: Effect.Effect<Fragment> = Effect.succeed(
  Statement.fragment([Statement.literal("clock_timestamp()")])
)

/**
 * A SQL fragment that evaluates to "now" as `timestamptz`.
 *
 * @since 0.1.0
 */
export const now = (sql: SqlClient): Effect.Effect<Fragment> =>
  ObanClock.use(({ mode }) =>
    mode === "database"
      ? succeedDatabaseNow
      : Effect.map(Clock.currentTimeMillis, (millis) => sql`${new Date(millis)}::timestamptz`))

/**
 * "now" for a statement whose time must not predate what it sees: in
 * `database` mode the time at which it is evaluated (`clock_timestamp()`),
 * so the statement must evaluate it once, as it runs. The start of the
 * statement or of its transaction may predate a lock it waited for (a
 * limited claim), or an outcome that committed before its snapshot was
 * taken (a claim that sees a workflow step its dependency's outcome
 * released: stamped with `now()` it could read as claimed before that
 * dependency completed). In `effect` mode the same as `now`.
 *
 * @since 0.1.0
 */
export const statementNow = (sql: SqlClient): Effect.Effect<Fragment> =>
  ObanClock.use(({ mode }) =>
    mode === "database"
      ? succeedDatabaseStatementNow
      : Effect.map(Clock.currentTimeMillis, (millis) => sql`${new Date(millis)}::timestamptz`))
