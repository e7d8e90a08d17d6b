/**
 * The schema prefix is said once (`Config.layer`) and holds everywhere: in
 * `Migrations`, in `Oban.layer`, and in the jobs a running node executes.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as ObanTest from "../src/Testing.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, pgLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const Child = Worker.make("Child", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

/** Enqueues a follow-up job from inside its own job, as a workflow step would. */
const Parent = Worker.make("Parent", {
  args: Schema.Struct({ n: Schema.Int }),
  maxAttempts: 1,
  perform: (job) => Effect.asVoid(Oban.insert(Child.job({ n: job.args.n })))
})

const childIds = (prefix: string, n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: number }>`
      SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all WHERE worker = 'Child' AND (args->>'n')::int = ${n}`
    return rows.map((row) => row.id)
  })

/** Runs a `Parent` job on `node` and checks that its follow-up landed in `prefix`. */
const parentInsertsInto = (oban: Oban.ObanShape, prefix: string, n: number) =>
  Effect.gen(function*() {
    const parent = yield* oban.insert(Parent.job({ n }))
    yield* waitFor(
      "the parent job to finish",
      Effect.map(jobRow(prefix, parent.id), (row) => row.state !== "available" && row.state !== "executing"),
      "10 seconds"
    )
    const row = yield* jobRow(prefix, parent.id)
    assert.strictEqual(row.state, "completed", JSON.stringify(row.errors))
    assert.lengthOf(yield* childIds(prefix, n), 1)
  })

describe("a node's jobs insert into the node's prefix", () => {
  const prefix = uniquePrefix("pfx_node")
  // No Config.layer: the node's prefix is given only as its option.
  const Database = Layer.effectDiscard(
    Effect.andThen(dropSchemaOnClose(prefix), Migrations.run({ prefix }))
  ).pipe(Layer.provideMerge(pgLayer()))
  layer(Database, { excludeTestServices: true })((it) => {
    it.effect("a worker's Oban.insert lands in the node's schema, not in public", () =>
      Effect.gen(function*() {
        const node = yield* startNode({ prefix, node: "pfx-a", queues: { default: 2 }, workers: [Parent, Child] })
        yield* parentInsertsInto(node.oban, prefix, 1)
        yield* node.stop
      }))
  })
})

describe("Config.layer is the one place for the prefix", () => {
  const prefix = uniquePrefix("pfx_once")
  const other = uniquePrefix("pfx_other")
  const Database = Layer.effectDiscard(Effect.andThen(dropSchemaOnClose(prefix), dropSchemaOnClose(other))).pipe(
    Layer.provideMerge(pgLayer())
  )
  layer(Database, { excludeTestServices: true })((it) => {
    it.effect("Migrations.run() and Oban.layer without a prefix use the Config.layer prefix", () =>
      Effect.gen(function*() {
        const report = yield* Migrations.run()
        assert.strictEqual(report.prefix, prefix)
        const status = yield* Migrations.status({ prefix })
        assert.strictEqual(status.current, status.latest)
        const node = yield* startNode({ node: "pfx-once", queues: { default: 2 }, workers: [Parent, Child] })
        yield* parentInsertsInto(node.oban, prefix, 2)
        // The same schema for a plain insert in the same program.
        const job = yield* Oban.insert(Child.job({ n: 3 }))
        assert.strictEqual((yield* jobRow(prefix, job.id)).id, job.id)
        yield* node.stop
      }).pipe(Effect.provide(Config.layer({ prefix }))))

    it.effect("a prefix option that contradicts Config.layer fails with InvalidConfigError, touching nothing", () =>
      Effect.gen(function*() {
        const layerError = yield* Layer.build(Oban.layer({ prefix: other, workers: [Child] })).pipe(
          Effect.scoped,
          Effect.flip
        )
        assert.strictEqual(layerError._tag, "InvalidConfigError")
        if (layerError._tag === "InvalidConfigError") {
          assert.strictEqual(layerError.field, "prefix")
          assert.include(layerError.message, other)
          assert.include(layerError.message, prefix)
        }
        const migrateError = yield* Migrations.run({ prefix: other }).pipe(Effect.flip)
        assert.strictEqual(migrateError._tag, "InvalidConfigError")
        // Nothing was created in the other schema.
        const sql = yield* SqlClient
        const schemas = yield* sql`SELECT 1 FROM pg_namespace WHERE nspname = ${other}`
        assert.lengthOf(schemas, 0)
        // Saying the same prefix twice is allowed.
        assert.strictEqual((yield* Migrations.run({ prefix })).prefix, prefix)
        // A prefix option that is no prefix at all is refused as such, not as a contradiction.
        const invalid = yield* Layer.build(Oban.layer({ prefix: "Bad-One", workers: [Child] })).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(invalid._tag, "InvalidPrefixError")
        assert.include(invalid.message, `prefix "Bad-One" must be a plain identifier`)
        // Too long: shown whole, with its length (it was shortened to "a string of 45 UTF-16 units").
        const long = `walk_${"x".repeat(40)}`
        const tooLong = yield* Effect.flip(Migrations.run({ prefix: long }))
        assert.strictEqual(tooLong.message, `prefix "${long}" must be 1 to 40 characters long (it has 45)`)
      }).pipe(Effect.provide(Config.layer({ prefix }))))

    it.effect("a node on a schema that was never migrated does not start, and says how to migrate it", () =>
      Effect.gen(function*() {
        const bare = `${prefix}_bare`
        const error = yield* Layer.build(Oban.layer({ prefix: bare, workers: [Child] })).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(error._tag, "MigrationError")
        // The same advice as a statement on that schema gives (one way to migrate, as the docs show it).
        assert.include(error.message, `schema "${bare}" is at migration 0 of`)
        assert.include(error.message, `Migrations.run() under ObanConfig.layer({ prefix: "${bare}" })`)
      }))

    it.effect("the testing kit follows Config.layer too, and refuses a contradicting prefix", () =>
      Effect.gen(function*() {
        yield* Migrations.run()
        const job = yield* Oban.insert(Child.job({ n: 4 })).pipe(Effect.provide(ObanTest.layer({ workers: [Child] })))
        assert.strictEqual((yield* jobRow(prefix, job.id)).state, "available")
        const drained = yield* ObanTest.drainQueue({ queue: "default" }).pipe(
          Effect.provide(ObanTest.layer({ workers: [Child] }))
        )
        assert.isAtLeast(drained.completed, 1)
        const error = yield* Layer.build(ObanTest.layer({ prefix: other })).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(error._tag, "InvalidConfigError")
      }).pipe(Effect.provide(Config.layer({ prefix }))))
  })
})

describe("a prefix without tables", () => {
  const missing = uniquePrefix("pfx_missing")
  layer(pgLayer(), { excludeTestServices: true })((it) => {
    it.effect("insert and the management functions fail with a MigrationError naming the prefix", () =>
      Effect.gen(function*() {
        const error = yield* Oban.insert(Child.job({ n: 1 })).pipe(Effect.flip)
        assert.strictEqual(error._tag, "MigrationError")
        if (error._tag === "MigrationError") {
          assert.strictEqual(error.prefix, missing)
          assert.include(error.message, `"${missing}"`)
          assert.include(error.message, "Migrations.run")
        }
        const getError = yield* Oban.getJob(1).pipe(Effect.flip)
        assert.strictEqual(getError._tag, "MigrationError")
      }).pipe(Effect.provide(Config.layer({ prefix: missing }))))

    it.effect("a schema an older release migrated fails with a MigrationError that says so, not a bare SqlError", () =>
      Effect.gen(function*() {
        const older = uniquePrefix("pfx_older")
        yield* dropSchemaOnClose(older)
        yield* Migrations.run({ prefix: older, to: 8 })
        const Unique = Worker.make("UniqueChild", {
          args: Schema.Struct({ n: Schema.Int }),
          unique: { period: "forever" },
          perform: () => Effect.void
        })
        const failures = yield* Effect.all([
          Oban.insert(Unique.job({ n: 1 })).pipe(Effect.flip),
          Oban.cancelJob(1).pipe(Effect.flip),
          Oban.getJob(1).pipe(Effect.flip)
        ]).pipe(Effect.provide(Config.layer({ prefix: older })))
        for (const error of failures) {
          // Before: a raw SqlError (column "..." does not exist), or "has no effect-oban tables", which is false.
          assert.strictEqual(error._tag, "MigrationError")
          assert.include(error.message, "migrated by an older release")
          assert.include(error.message, "Migrations.run")
        }
      }).pipe(Effect.scoped))

    it.effect("with no prefix configured, an insert on a database without public tables names public and the fix", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const name = uniquePrefix("pfx_db")
        yield* sql.unsafe(`CREATE DATABASE ${name}`)
        yield* Effect.addFinalizer(() => Effect.ignore(sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
        const url = new URL(databaseUrl())
        url.pathname = `/${name}`
        const fresh = PgClient.layer({ url: Redacted.make(url.toString()), maxConnections: 2 })
        const error = yield* Oban.insert(Child.job({ n: 1 })).pipe(Effect.flip, Effect.provide(fresh))
        assert.strictEqual(error._tag, "MigrationError")
        if (error._tag === "MigrationError") {
          assert.strictEqual(error.prefix, "public")
          assert.include(error.message, `"public"`)
          assert.include(error.message, "Config.layer")
          assert.include(error.message, "Migrations.run")
        }
      }))
  })
})
