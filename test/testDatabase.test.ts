/**
 * The testing kit's database layer: a migrated schema of its own on the
 * run's server (or an embedded one), usable by Oban.insert, dropped after.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted, Schema, Scope } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { Config, Oban, Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { databaseUrl } from "./support/db.ts"

const Ping = Worker.make("Ping", { args: Schema.Struct({ n: Schema.Number }), perform: () => Effect.void })

/** Whether the schema exists, asked over a client of its own. */
const schemaExists = (url: string, prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${prefix}`
    return rows[0]!.n === 1
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))

/** Builds the layer in a scope of its own, runs `use` with its services, then closes it. */
const withDatabase = <A, E>(
  options: ObanTest.DatabaseOptions,
  use: (prefix: string) => Effect.Effect<A, E, SqlClient>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(ObanTest.database(options), scope)
    const { prefix } = Context.get(context, Config.Settings)
    const result = yield* use(prefix).pipe(Effect.provide(context), Effect.provideService(Config.Settings, Context.get(context, Config.Settings)))
    yield* Scope.close(scope, Exit.void)
    return { prefix, result }
  })

describe("ObanTest.database", () => {
  it.live("gives each layer a fresh migrated schema, which Oban.insert uses, and drops it afterwards", () =>
    Effect.gen(function*() {
      const url = databaseUrl()
      const first = yield* withDatabase({ url }, (prefix) =>
        Effect.gen(function*() {
          const job = yield* Oban.insert(Ping.job({ n: 1 }))
          const sql = yield* SqlClient
          const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
          return rows[0]!.n
        }))
      assert.strictEqual(first.result, 1)
      assert.match(first.prefix, /^oban_test_[0-9a-f]{12}$/)
      assert.isFalse(yield* schemaExists(url, first.prefix))
      const second = yield* withDatabase({ url }, () => Effect.void)
      assert.notStrictEqual(second.prefix, first.prefix)
    }))

  it.live("keeps the schema when asked, and can leave it unmigrated", () =>
    Effect.gen(function*() {
      const url = databaseUrl()
      const prefix = `oban_test_keep_${Math.random().toString(36).slice(2, 8)}`
      const tables = yield* withDatabase({ url, prefix, migrate: false, keepSchema: true }, (prefix) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient
          const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = ${prefix}`
          return rows[0]!.n
        }))
      assert.strictEqual(tables.result, 0)
      assert.isTrue(yield* schemaExists(url, prefix))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* sql.unsafe(`DROP SCHEMA "${prefix}" CASCADE`)
      }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
    }))

  it.live("starts an embedded server when there is no DATABASE_URL, and stops it with the layer", () =>
    Effect.gen(function*() {
      const saved = process.env["DATABASE_URL"]
      delete process.env["DATABASE_URL"]
      try {
        const { result } = yield* withDatabase({}, () =>
          Effect.gen(function*() {
            const job = yield* Oban.insert(Ping.job({ n: 2 }))
            const sql = yield* SqlClient
            const [row] = yield* sql<{ port: string }>`SELECT current_setting('port') AS port`
            return { id: job.id, port: Number(row!.port) }
          }))
        assert.isAbove(result.id, 0)
        // The server is gone: a new connection to its port is refused.
        const reachable = yield* schemaExists(`postgres://postgres:postgres@127.0.0.1:${result.port}/postgres`, "public").pipe(
          Effect.timeout("5 seconds"),
          Effect.as(true),
          Effect.catchCause(() => Effect.succeed(false))
        )
        assert.isFalse(reachable)
      } finally {
        if (saved !== undefined) process.env["DATABASE_URL"] = saved
      }
    }), 120_000)
})
