/**
 * SQL of the migrator: its lock, its bookkeeping table and the scripts.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { splitSql } from "../splitSql.ts"
import { qualified, table } from "./tables.ts"

export interface AppliedRow {
  readonly version: number
  readonly name: string
  readonly applied_at: Date
}

/** Serialises migrators of one prefix until the surrounding transaction ends. */
export const lockMigrations = (sql: SqlClient, prefix: string): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-oban:migrations:${prefix}`}))`)

export const createBookkeepingSql = (prefix: string): string =>
  `CREATE SCHEMA IF NOT EXISTS "${prefix}";\n` +
  `CREATE TABLE IF NOT EXISTS ${qualified(prefix, "oban_migrations")} (\n` +
  `  version integer PRIMARY KEY,\n` +
  `  name text NOT NULL,\n` +
  `  applied_at timestamptz NOT NULL DEFAULT now()\n` +
  `);`

export const recordSql = (prefix: string, version: number, name: string): string =>
  `INSERT INTO ${qualified(prefix, "oban_migrations")} (version, name) VALUES (${version}, '${name}') ON CONFLICT (version) DO NOTHING;`

export const forgetSql = (prefix: string, version: number): string =>
  `DELETE FROM ${qualified(prefix, "oban_migrations")} WHERE version = ${version};`

/** Runs a script of several statements, one statement per round trip. */
export const runScript = (sql: SqlClient, script: string): Effect.Effect<void, SqlError> =>
  Effect.forEach(splitSql(script), (statement) => sql.unsafe(statement).unprepared, { discard: true })

/** The applied versions, or none when the bookkeeping table does not exist yet. */
export const appliedVersions = (sql: SqlClient, prefix: string): Effect.Effect<ReadonlyArray<AppliedRow>, SqlError> =>
  Effect.gen(function*() {
    const [exists] = yield* sql<{ readonly exists: boolean }>`
      SELECT to_regclass(${qualified(prefix, "oban_migrations")}) IS NOT NULL AS exists`
    if (exists === undefined || !exists.exists) return []
    return yield* sql<AppliedRow>`
      SELECT version, name, applied_at FROM ${table(sql, prefix, "oban_migrations")} ORDER BY version`
  })
