/**
 * Database helpers for tests: a pooled client on the run's server, and a
 * fresh schema prefix per test file that is dropped when the layer closes.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, type LogLevel, Redacted, References } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { inject } from "vitest"
import * as Config from "../../src/Config.ts"
import * as Migrations from "../../src/Migrations.ts"

export const databaseUrl = (): string => inject("databaseUrl")

/**
 * What tests log: errors only, so a passing run prints nothing but the runner's own lines. Show
 * the library's warnings (about injected faults, rescues) with OBAN_TEST_LOG=Warn (or Debug).
 */
export const testLogLevel: LogLevel.LogLevel = (process.env["OBAN_TEST_LOG"] as LogLevel.LogLevel | undefined) ?? "Error"

/** The test log level as a layer, for suites that log outside a node. */
export const quietLogs = Layer.succeed(References.MinimumLogLevel, testLogLevel)

/** Prints a measurement a test made (for closing notes and benchmarks) when OBAN_TEST_REPORT=1. */
export const report = (line: string): void => {
  if (process.env["OBAN_TEST_REPORT"] === "1") console.log(line)
}

/** A prefix no other test file uses. */
export const uniquePrefix = (name: string): string =>
  `t_${name}_${Math.random().toString(36).slice(2, 8)}`.toLowerCase().replace(/[^a-z0-9_]/g, "_")

export const pgLayer = (options: { readonly maxConnections?: number } = {}) =>
  PgClient.layer({
    url: Redacted.make(databaseUrl()),
    maxConnections: options.maxConnections ?? 8,
    applicationName: "effect-oban-test"
  })

/** Drops the schema when the scope closes. */
export const dropSchemaOnClose = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* Effect.addFinalizer(() => Effect.ignore(sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)))
  })

/** A fresh prefix migrated to version `to` (the latest when not given), dropped when the scope closes. */
export const migratedPrefix = (name: string, to?: number) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(name)
    yield* dropSchemaOnClose(prefix)
    yield* Migrations.run({ prefix, to })
    return prefix
  })

/**
 * A client and `Config.Settings` for `prefix`, migrated to the latest version
 * when `migrate` is true; the schema is dropped at the end.
 */
export const testLayer = (prefix: string, options: { readonly migrate?: boolean; readonly maxConnections?: number } = {}) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      yield* dropSchemaOnClose(prefix)
      if (options.migrate !== false) yield* Migrations.run({ prefix })
    })
  ).pipe(
    Layer.provideMerge(quietLogs),
    Layer.provideMerge(Config.layer({ prefix })),
    Layer.provideMerge(pgLayer(options))
  )
