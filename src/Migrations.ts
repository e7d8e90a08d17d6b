/**
 * Versioned schema migrations for effect-oban's tables.
 *
 * Migrations are SQL files in `migrations/` (append-only), applied in one
 * transaction under a lock so that nodes starting together each see them
 * applied exactly once. Applied versions are recorded in `oban_migrations`
 * inside the prefix schema. `sql` prints the same scripts for teams that
 * apply migrations with their own tool.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { resolve } from "./Config.ts"
import { InvalidConfigError, type InvalidPrefixError, MigrationError } from "./Errors.ts"
import { isTarget, type MigrationFile, migrationFiles, withPrefix } from "./internal/migrationFiles.ts"
import { serverMessage } from "./internal/serverMessage.ts"
import {
  appliedVersions,
  createBookkeepingSql,
  forgetSql,
  lockMigrations,
  recordSql,
  runScript
} from "./internal/sql/migrations.ts"
import { transaction } from "./internal/sql/transaction.ts"

/**
 * Which schema to migrate, and to which version. Leave out the prefix and
 * provide `ObanConfig.layer({ prefix })` instead, so that the application says
 * its prefix once; without either, the schema is `public`. A `prefix` option
 * that differs from the one `ObanConfig.layer` provides fails with
 * `InvalidConfigError`.
 *
 * @since 0.1.0
 */
export interface Options {
  readonly prefix?: string | undefined
  readonly to?: number | undefined
}

/**
 * What a run or rollback did.
 *
 * @since 0.1.0
 */
export interface Report {
  readonly prefix: string
  readonly from: number
  readonly to: number
  /** The versions applied (up) or rolled back (down), in the order they ran. */
  readonly versions: ReadonlyArray<number>
}

/**
 * @since 0.1.0
 */
export interface Status {
  readonly prefix: string
  readonly current: number
  readonly latest: number
  readonly applied: ReadonlyArray<{ readonly version: number; readonly name: string; readonly appliedAt: Date }>
  readonly pending: ReadonlyArray<{ readonly version: number; readonly name: string }>
}

/**
 * @since 0.1.0
 */
export type MigrateError = MigrationError | InvalidPrefixError | InvalidConfigError | SqlError

const resolvePrefix = (prefix: string | undefined) => Effect.map(resolve({ prefix }), (settings) => settings.prefix)

/** A version to stop at (`field`: `to`, or `sql`'s `from`) outside `0..latest` is bad input, not a schema's state. */
const checkTarget = (to: number, latest: number, field: "to" | "from" = "to") =>
  isTarget(to, latest)
    ? Effect.void
    : Effect.fail(
      new InvalidConfigError({ field, message: `target version must be an integer from 0 to ${latest}, got ${to}` })
    )

/** A range whose ends are the wrong way round would print no migration at all: refused instead. */
const checkOrder = (lower: number, upper: number, direction: "up" | "down") =>
  lower <= upper ? Effect.void : Effect.fail(
    new InvalidConfigError({
      field: "from",
      message: direction === "up"
        ? `an up migration goes from a lower version to a higher one, got from ${lower} to ${upper}`
        : `a down migration goes from a higher version to a lower one, got from ${upper} to ${lower}`
    })
  )

const failing = (migration: MigrationFile, direction: "up" | "down") => (error: SqlError) =>
  new MigrationError({
    message: `migration ${migration.version} (${migration.name}) ${direction} failed: ${describe(error)}`,
    version: migration.version,
    cause: error
  })

/** The server's message, with its detail and hint (the detail often names the object in the way, such as a view). */
const describe = (error: SqlError): string => serverMessage(error) ?? error.message

/**
 * The highest version shipped with this release.
 *
 * @since 0.1.0
 */
export const latest: Effect.Effect<number, MigrationError> = Effect.map(migrationFiles, (files) => files.length)

/**
 * Applies every migration not yet applied, up to `to` (default: latest).
 * Running it again is a no-op. A `to` outside `0..latest` fails with
 * `InvalidConfigError` before anything is touched.
 *
 * @since 0.1.0
 */
export const run = (options: Options = {}): Effect.Effect<Report, MigrateError, SqlClient> =>
  Effect.gen(function*() {
    const prefix = yield* resolvePrefix(options.prefix)
    const files = yield* migrationFiles
    const to = options.to ?? files.length
    yield* checkTarget(to, files.length)
    const sql = plain(yield* SqlClient)
    return yield* transaction(sql, Effect.gen(function*() {
      yield* lockMigrations(sql, prefix)
      yield* runScript(sql, createBookkeepingSql(prefix))
      const applied = new Set((yield* appliedVersions(sql, prefix)).map((row) => row.version))
      const from = Math.max(0, ...applied)
      const pending = files.filter((file) => file.version <= to && !applied.has(file.version))
      for (const migration of pending) {
        yield* runScript(sql, withPrefix(migration.up, prefix)).pipe(Effect.mapError(failing(migration, "up")))
        yield* runScript(sql, recordSql(prefix, migration.version, migration.name))
      }
      return { prefix, from, to: Math.max(from, to), versions: pending.map((file) => file.version) }
    }))
  })

/**
 * Rolls back applied migrations above `to`, newest first. `to: 0` removes
 * every table (the schema and the bookkeeping table stay). A `to` outside
 * `0..latest` fails with `InvalidConfigError` before anything is touched.
 *
 * @since 0.1.0
 */
export const down = (options: Options & { readonly to: number }): Effect.Effect<Report, MigrateError, SqlClient> =>
  Effect.gen(function*() {
    const prefix = yield* resolvePrefix(options.prefix)
    const files = yield* migrationFiles
    yield* checkTarget(options.to, files.length)
    const sql = plain(yield* SqlClient)
    return yield* transaction(sql, Effect.gen(function*() {
      yield* lockMigrations(sql, prefix)
      const applied = new Set((yield* appliedVersions(sql, prefix)).map((row) => row.version))
      const from = Math.max(0, ...applied)
      const rollback = files.filter((file) => file.version > options.to && applied.has(file.version)).reverse()
      for (const migration of rollback) {
        yield* runScript(sql, withPrefix(migration.down, prefix)).pipe(Effect.mapError(failing(migration, "down")))
        yield* runScript(sql, forgetSql(prefix, migration.version))
      }
      return { prefix, from, to: Math.min(from, options.to), versions: rollback.map((file) => file.version) }
    }))
  })

/**
 * Which versions are applied and which are pending.
 *
 * @since 0.1.0
 */
export const status = (
  options: { readonly prefix?: string | undefined } = {}
): Effect.Effect<Status, MigrateError, SqlClient> =>
  Effect.gen(function*() {
    const prefix = yield* resolvePrefix(options.prefix)
    const files = yield* migrationFiles
    const sql = plain(yield* SqlClient)
    const applied = yield* appliedVersions(sql, prefix)
    const done = new Set(applied.map((row) => row.version))
    return {
      prefix,
      current: Math.max(0, ...done),
      latest: files.length,
      applied: applied.map((row) => ({ version: row.version, name: row.name, appliedAt: row.applied_at })),
      pending: files.filter((file) => !done.has(file.version)).map(({ name, version }) => ({ version, name }))
    }
  })

/**
 * The SQL of migrations as text, for teams that apply migrations with their
 * own tool. `up` covers versions `from + 1 .. to` (default: all) and records
 * them in `oban_migrations`, so `run` and `status` agree with it afterwards;
 * `down` covers versions `from .. to + 1`, newest first. Wrap it in a
 * transaction.
 *
 * @since 0.1.0
 */
export const sql = (
  options: {
    readonly prefix?: string | undefined
    readonly direction?: "up" | "down" | undefined
    readonly from?: number | undefined
    readonly to?: number | undefined
  } = {}
): Effect.Effect<string, MigrationError | InvalidPrefixError | InvalidConfigError> =>
  Effect.gen(function*() {
    const prefix = yield* resolvePrefix(options.prefix)
    const files = yield* migrationFiles
    if (options.direction === "down") {
      const from = options.from ?? files.length
      const to = options.to ?? 0
      yield* checkTarget(from, files.length, "from")
      yield* checkTarget(to, files.length)
      yield* checkOrder(to, from, "down")
      const parts = files.filter((file) => file.version > to && file.version <= from).reverse().map((file) =>
        `-- effect-oban migration ${file.version} (${file.name}): down\n${withPrefix(file.down, prefix)}\n${
          forgetSql(prefix, file.version)
        }`
      )
      return parts.join("\n\n") + "\n"
    }
    const from = options.from ?? 0
    const to = options.to ?? files.length
    yield* checkTarget(from, files.length, "from")
    yield* checkTarget(to, files.length)
    yield* checkOrder(from, to, "up")
    const parts = files.filter((file) => file.version > from && file.version <= to).map((file) =>
      `-- effect-oban migration ${file.version} (${file.name}): up\n${withPrefix(file.up, prefix)}\n${
        recordSql(prefix, file.version, file.name)
      }`
    )
    return [`-- effect-oban migrations for schema "${prefix}"\n${createBookkeepingSql(prefix)}`, ...parts].join("\n\n") +
      "\n"
  })
