/**
 * Database helpers for tests: a pooled client on the run's server, and a
 * fresh schema prefix per test file that is dropped when the layer closes.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { inject } from "vitest"
import * as Config from "../../src/Config.ts"
import * as Migrations from "../../src/Migrations.ts"

export const databaseUrl = (): string => inject("databaseUrl")

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
    Layer.provideMerge(Config.layer({ prefix })),
    Layer.provideMerge(pgLayer(options))
  )
