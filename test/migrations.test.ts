import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Queue, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import { splitSql } from "../src/internal/splitSql.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, pgLayer, uniquePrefix } from "./support/db.ts"

const Noop = Worker.make("Noop", { args: Schema.Struct({}), perform: () => Effect.void })

const tablesOf = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = ${prefix} ORDER BY table_name`
    return rows.map((row) => row.table_name)
  })

const schemaExists = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql`SELECT 1 FROM pg_namespace WHERE nspname = ${name}`
    return rows.length > 0
  })

/** A fresh prefix whose schema is dropped when the test's scope closes. */
const freshPrefix = (name: string) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(name)
    yield* dropSchemaOnClose(prefix)
    return prefix
  })

/** 1, 2, ..., n. */
const upTo = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i + 1)

/** A second, independent pool: another "process" as far as PostgreSQL can tell. */
const otherClient = Layer.fresh(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 2 }))

layer(pgLayer(), { excludeTestServices: true })("migrations", (it) => {
  it.effect("run applies every migration; running again is a no-op", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig")
      const latest = yield* Migrations.latest
      const first = yield* Migrations.run({ prefix })
      assert.deepStrictEqual(first.versions, upTo(latest))
      assert.deepStrictEqual([first.from, first.to], [0, latest])
      assert.deepStrictEqual(yield* tablesOf(prefix), ["oban_jobs", "oban_jobs_all", "oban_jobs_finished", "oban_migrations", "oban_peers", "oban_producers", "oban_queues", "oban_rate_windows", "oban_workflow_deps", "oban_workflow_waits"])
      const again = yield* Migrations.run({ prefix })
      assert.deepStrictEqual(again.versions, [])
      const status = yield* Migrations.status({ prefix })
      assert.strictEqual(status.current, latest)
      assert.strictEqual(status.latest, latest)
      assert.deepStrictEqual(
        status.applied.map((row) => row.name).slice(0, 4),
        ["create_jobs", "create_peers_and_producers", "add_unique_key", "producer_incarnations"]
      )
      assert.deepStrictEqual(status.pending, [])
    }))

  it.effect("run stops at a target version and continues from there", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_to")
      assert.deepStrictEqual((yield* Migrations.run({ prefix, to: 1 })).versions, [1])
      assert.deepStrictEqual(yield* tablesOf(prefix), ["oban_jobs", "oban_migrations"])
      const status = yield* Migrations.status({ prefix })
      const rest = upTo(yield* Migrations.latest).slice(1)
      assert.deepStrictEqual(status.pending.map((row) => row.version), rest)
      assert.deepStrictEqual((yield* Migrations.run({ prefix })).versions, rest)
    }))

  it.effect("down rolls back to a version, and up again restores it", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_down")
      yield* Migrations.run({ prefix })
      const toOne = yield* Migrations.down({ prefix, to: 1 })
      const all = upTo(yield* Migrations.latest)
      assert.deepStrictEqual(toOne.versions, all.slice(1).reverse())
      assert.deepStrictEqual(yield* tablesOf(prefix), ["oban_jobs", "oban_migrations"])
      const toZero = yield* Migrations.down({ prefix, to: 0 })
      assert.deepStrictEqual(toZero.versions, [1])
      assert.deepStrictEqual(yield* tablesOf(prefix), ["oban_migrations"])
      assert.strictEqual((yield* Migrations.status({ prefix })).current, 0)
      assert.deepStrictEqual((yield* Migrations.run({ prefix })).versions, all)
      const job = yield* Oban.insert(Noop.job({})).pipe(Effect.provide(Config.layer({ prefix })))
      assert.strictEqual(job.state, "available")
    }))

  it.effect("the jobs table is vacuumed by churn, not by size; down resets it", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_storage")
      const sql = yield* SqlClient
      const options = Effect.map(
        sql<{ options: ReadonlyArray<string> | null }>`
          SELECT c.reloptions AS options FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ${prefix} AND c.relname = 'oban_jobs'`,
        (rows) => [...(rows[0]?.options ?? [])].sort()
      )
      yield* Migrations.run({ prefix })
      assert.deepStrictEqual(yield* options, [
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=10000",
        "vacuum_index_cleanup=on"
      ])
      yield* Migrations.down({ prefix, to: 5 })
      assert.deepStrictEqual(yield* options, [])
    }))

  it.effect("two processes migrating a fresh schema at once both succeed, applying each version once", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_race")
      const [a, b] = yield* Effect.all([
        Migrations.run({ prefix }),
        Migrations.run({ prefix }).pipe(Effect.provide(otherClient))
      ], { concurrency: 2 })
      const all = upTo(yield* Migrations.latest)
      assert.deepStrictEqual([...a.versions, ...b.versions].sort((x, y) => x - y), all)
      const sql = yield* SqlClient
      const rows = yield* sql<{ version: number }>`SELECT version FROM ${sql(prefix)}.oban_migrations ORDER BY version`
      assert.deepStrictEqual(rows.map((row) => row.version), all)
    }))

  it.effect("a prefix that is not a plain identifier fails before any SQL runs", () =>
    Effect.gen(function*() {
      for (const prefix of ["Bad", "a-b", "x; DROP TABLE t", "", "1abc", "pg_x", "a".repeat(41), "b".repeat(100)]) {
        const error = yield* Migrations.run({ prefix }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidPrefixError")
        // The message names the value, wherever it came from (an option, OBAN_PREFIX): whole, with the length
        // when that is what is wrong, and only its start when it is too long to read.
        assert.include(
          error.message,
          prefix.length > 80 ? `prefix ${JSON.stringify(prefix.slice(0, 60))}... must be 1 to 40 characters long (it has 100)`
            : prefix.length > 40 ? `prefix ${JSON.stringify(prefix)} must be 1 to 40 characters long (it has 41)`
            : `prefix ${JSON.stringify(prefix)}`
        )
        assert.isFalse(yield* schemaExists(prefix))
      }
      const layerError = yield* Layer.build(Config.layer({ prefix: "No Spaces" })).pipe(Effect.scoped, Effect.flip)
      assert.strictEqual(layerError._tag, "InvalidPrefixError")
      // From untyped JavaScript: a value that is no string is refused the same way, not a defect.
      for (const careless of [5, { name: "x" }]) {
        const error = yield* Migrations.run({ prefix: careless as never }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidPrefixError")
        assert.include(error.message, "must be a string")
      }
    }))

  it.effect("an out-of-range target version is an InvalidConfigError (bad input, not the schema's state)", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_bad_to")
      for (const to of [-1, 99, 1.5]) {
        const error = yield* Migrations.run({ prefix, to }).pipe(Effect.flip)
        assert.deepStrictEqual([error._tag, (error as { field?: string }).field], ["InvalidConfigError", "to"])
        assert.include(error.message, `got ${to}`)
        const back = yield* Migrations.down({ prefix, to }).pipe(Effect.flip)
        assert.strictEqual(back._tag, "InvalidConfigError")
      }
      assert.isFalse(yield* schemaExists(prefix))
      // A range the wrong way round printed no migration at all; it is refused.
      const up = yield* Migrations.sql({ prefix, from: 5, to: 3 }).pipe(Effect.flip)
      assert.deepStrictEqual([up._tag, up.message.includes("from 5 to 3")], ["InvalidConfigError", true])
      const down = yield* Migrations.sql({ prefix, direction: "down", from: 2, to: 5 }).pipe(Effect.flip)
      assert.include(down.message, "from 2 to 5")
      const from = yield* Migrations.sql({ prefix, from: 99 }).pipe(Effect.flip)
      assert.deepStrictEqual([from._tag, (from as { field?: string }).field], ["InvalidConfigError", "from"])
      assert.include(yield* Migrations.sql({ prefix, from: 2, to: 3 }), "oban_migrations")
    }))

  it.effect("the SQL text applies and rolls back the same schema with another tool", () =>
    Effect.gen(function*() {
      const prefix = yield* freshPrefix("mig_text")
      const sql = yield* SqlClient
      const up = yield* Migrations.sql({ prefix })
      assert.include(up, `CREATE TABLE "${prefix}".oban_jobs`)
      assert.notInclude(up, "{{prefix}}")
      // "Another tool": the script as a whole, statement by statement, in one transaction.
      yield* sql.withTransaction(Effect.forEach(splitSql(up), (statement) => sql.unsafe(statement).unprepared))
      const status = yield* Migrations.status({ prefix })
      assert.strictEqual(status.current, yield* Migrations.latest)
      assert.deepStrictEqual((yield* Migrations.run({ prefix })).versions, [])
      const down = yield* Migrations.sql({ prefix, direction: "down" })
      yield* sql.withTransaction(Effect.forEach(splitSql(down), (statement) => sql.unsafe(statement).unprepared))
      assert.deepStrictEqual(yield* tablesOf(prefix), ["oban_migrations"])
      assert.strictEqual((yield* Migrations.status({ prefix })).current, 0)
    }))

  it.effect("two prefixes are isolated: rows and notifications stay in their own schema", () =>
    Effect.gen(function*() {
      const a = yield* freshPrefix("iso_a")
      const b = yield* freshPrefix("iso_b")
      yield* Migrations.run({ prefix: a })
      yield* Migrations.run({ prefix: b })
      const pg = yield* PgClient.PgClient
      const onA = yield* pg.listen(Config.channel(a, "insert"))
      const onB = yield* pg.listen(Config.channel(b, "insert"))
      yield* Oban.insert(Noop.job({}, { queue: "only_a" })).pipe(Effect.provide(Config.layer({ prefix: a })))
      yield* Oban.insert(Noop.job({}, { queue: "only_b" })).pipe(Effect.provide(Config.layer({ prefix: b })))
      const sql = yield* SqlClient
      const count = (prefix: string) =>
        Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`, (rows) => rows[0]!.n)
      assert.deepStrictEqual([yield* count(a), yield* count(b)], [1, 1])
      const [rowA] = yield* sql<{ queue: string }>`SELECT queue FROM ${sql(a)}.oban_jobs_all`
      assert.strictEqual(rowA!.queue, "only_a")
      const fromA = yield* Queue.take(onA).pipe(Effect.timeout("5 seconds"))
      const fromB = yield* Queue.take(onB).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(JSON.parse(fromA.payload).queue, "only_a")
      assert.strictEqual(JSON.parse(fromB.payload).queue, "only_b")
    }))
})
