/**
 * A statement of effect-oban that finds no table (or no schema, or no state
 * type, or a column or function a later migration adds) in its prefix means
 * the prefix is not migrated, migrated by an older release, or the wrong one.
 * The bare `SqlError` says only `relation "public.oban_jobs" does not exist`;
 * this turns it into a `MigrationError` that names the prefix and the fix.
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { Settings } from "../Config.ts"
import { MigrationError } from "../Errors.ts"

/**
 * undefined_table, undefined_object (the state type), invalid_schema_name; and
 * undefined_column and undefined_function, what a schema migrated by an older
 * release lacks (a column or function a later migration adds).
 */
const missingObject = new Set(["42P01", "42704", "3F000", "42703", "42883"])

const serverError = (error: SqlError): { readonly code?: unknown; readonly message?: unknown } => {
  const cause: unknown = error.reason.cause
  return typeof cause === "object" && cause !== null ? cause : {}
}

const isMissingObject = (error: SqlError): boolean => missingObject.has(String(serverError(error).code))

/** What to do about a schema that is missing or behind: for the errors of statements and of a node's start. */
export const migrationAdvice = (prefix: string): string =>
  prefix === "public"
    ? `"public" is the prefix used when none is configured: if the tables live in another schema, provide ` +
      `ObanConfig.layer({ prefix: "<schema>" }) to this program; otherwise create or update the tables with Migrations.run()`
    : `create or update its effect-oban tables with Migrations.run() under ObanConfig.layer({ prefix: "${prefix}" }) ` +
      `(or apply Migrations.sql()), or check the configured prefix`

/**
 * The error for a statement that found no effect-oban tables in `prefix`, or
 * not all that this release needs (a schema an older release migrated).
 */
export const notMigrated = (prefix: string, error: SqlError): MigrationError => {
  const detail = serverError(error).message
  return new MigrationError({
    prefix,
    message: `schema "${prefix}" lacks what effect-oban needs${typeof detail === "string" ? ` (${detail})` : ""}: ` +
      `it has no effect-oban tables, or was migrated by an older release; ` + migrationAdvice(prefix),
    cause: error
  })
}

/**
 * Runs one of effect-oban's statements on `prefix`, reporting missing tables
 * as a `MigrationError`; any other database error stays as it is.
 */
export const orNotMigrated = (prefix: string) =>
<A, E, R>(statement: Effect.Effect<A, E | SqlError, R>): Effect.Effect<A, E | SqlError | MigrationError, R> =>
  Effect.mapError(statement, (error) => isSqlError(error) && isMissingObject(error) ? notMigrated(prefix, error) : error)

/**
 * Runs `f` with the context's SqlClient and the configured prefix, turning
 * "relation does not exist" into a `MigrationError` that names the prefix:
 * the shape of every job-management function that needs no running node.
 */
export const withPrefix = <A, E = never>(
  f: (sql: SqlClient, prefix: string) => Effect.Effect<A, E | SqlError>
): Effect.Effect<A, E | MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = plain(yield* SqlClient)
    const { prefix } = yield* Settings
    return yield* orNotMigrated(prefix)(f(sql, prefix))
  })
