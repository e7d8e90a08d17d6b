/**
 * An application's `PgClient` with name transforms (`transformResultNames`,
 * `transformQueryNames`, as Effect services often configure for camelCase
 * rows): the library's statements run without them, so its own rows keep the
 * database's names, while the application's queries, also inside the same
 * transaction as an insert, keep theirs.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Redacted, Schema, Stream, String as Str } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Events from "../src/Events.ts"
import * as Jobs from "../src/Jobs.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as ObanTest from "../src/Testing.ts"
import * as Rescuer from "../src/Rescuer.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

/** Each perform's job as the worker saw it. */
const performed: Array<{ readonly id: number; readonly scheduledAt: unknown; readonly maxAttempts: unknown }> = []

const Camel = Worker.make("CamelWork", {
  args: Schema.Struct({ userId: Schema.String }),
  queue: "camel",
  unique: { keys: ["userId"], period: "forever" },
  perform: (job) =>
    Effect.sync(() => {
      performed.push({ id: job.id, scheduledAt: job.scheduledAt, maxAttempts: job.maxAttempts })
    })
})

const prefix = uniquePrefix("transforms")

/** The application's client, with both transforms. */
const camelClient = PgClient.layer({
  url: Redacted.make(databaseUrl()),
  maxConnections: 6,
  transformQueryNames: Str.camelToSnake,
  transformResultNames: Str.snakeToCamel
})

const Database = Layer.effectDiscard(Effect.andThen(dropSchemaOnClose(prefix), Migrations.run({ prefix }))).pipe(
  Layer.provideMerge(Config.layer({ prefix })),
  Layer.provideMerge(camelClient)
)

const isDate = (value: unknown) => value instanceof Date && !Number.isNaN(value.getTime())

describe("an application client that renames result columns", () => {
  layer(Database, { excludeTestServices: true })((it) => {
    it.effect("inserts, reads and runs jobs with every field, and the application's own rows stay camelCase", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        // The application's table and query, inside the transaction that inserts the job.
        yield* sql.unsafe(`CREATE TABLE "${prefix}".app_users (user_id text PRIMARY KEY, display_name text)`)
        const { inserted, appRows } = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO ${sql(prefix)}.app_users ${sql.insert({ userId: "u1", displayName: "Ada" })}`
          const inserted = yield* Oban.insert(Camel.job({ userId: "u1" }))
          const appRows = yield* sql<{ readonly userId: string; readonly displayName: string }>`
            SELECT user_id, display_name FROM ${sql(prefix)}.app_users`
          return { inserted, appRows }
        }))
        assert.deepStrictEqual(appRows, [{ userId: "u1", displayName: "Ada" }])
        assert.isTrue(isDate(inserted.insertedAt) && isDate(inserted.scheduledAt), JSON.stringify(inserted))
        assert.strictEqual(inserted.maxAttempts, 20)
        assert.strictEqual(inserted.state, "available")

        // A rollback of the application's transaction takes the job inserted in it.
        const rolledBack = yield* sql.withTransaction(Effect.gen(function*() {
          const job = yield* Oban.insert(Camel.job({ userId: "rolled-back" }))
          return yield* Effect.fail({ _tag: "Abort" as const, id: job.id })
        })).pipe(Effect.flip)
        assert.strictEqual(rolledBack._tag, "Abort")
        if (rolledBack._tag === "Abort") assert.isTrue(Option.isNone(yield* Oban.getJob(rolledBack.id)))

        // A unique conflict is answered with the job already there, not a defect.
        const again = yield* Oban.insert(Camel.job({ userId: "u1" }))
        assert.strictEqual(again.id, inserted.id)
        assert.isTrue(again.conflict)

        const read = yield* Oban.getJob(inserted.id)
        assert.isTrue(Option.isSome(read) && isDate(read.value.insertedAt) && read.value.maxAttempts === 20)
        const page = yield* Jobs.list({ filter: { queues: ["camel"] } })
        assert.deepStrictEqual(page.jobs.map((job) => [job.id, job.maxAttempts, isDate(job.scheduledAt)]), [
          [inserted.id, 20, true]
        ])
        const counts = yield* Jobs.counts({ exact: true })
        assert.strictEqual(counts.queues.find((entry) => entry.queue === "camel")?.states.available, 1)

        // A node on the same client runs it once, with every field.
        performed.length = 0
        const node = yield* startNode({ prefix, node: "camel-node", queues: { camel: 2 }, workers: [Camel] })
        yield* waitFor("the job completed", Effect.map(jobRow(prefix, inserted.id), (row) => row.state === "completed"), "10 seconds")
        yield* node.stop
        assert.deepStrictEqual(performed.map((run) => [run.id, isDate(run.scheduledAt), run.maxAttempts]), [
          [inserted.id, true, 20]
        ])
        const row = yield* jobRow(prefix, inserted.id)
        assert.strictEqual(row.attempt, 1)
        assert.deepStrictEqual(row.errors, [])
      }))

    it.effect("maintenance run on it (Rescuer.runOnce, as the testing guide calls it) reads its rows by their names", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const job = yield* Oban.insert(Camel.job({ userId: "u3" }))
        const dead = crypto.randomUUID()
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                   attempted_by = ARRAY['lost-node', ${dead}] WHERE id = ${job.id}`
        yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at) VALUES
                   (${dead}, 'lost-node', 'camel', 5, now() - interval '2 minutes')`
        const hub = yield* Events.makeHub
        const collector = yield* Effect.forkChild(Events.stream(hub).pipe(Stream.take(1), Stream.runCollect))
        yield* Effect.sleep("20 millis")
        assert.deepStrictEqual(
          yield* Rescuer.runOnce({ sql, prefix }).pipe(Effect.provideService(Events.EventHub, hub)),
          { rescued: 1, discarded: 0, cancelled: 0 }
        )
        const [event] = Array.from(yield* Fiber.join(collector).pipe(Effect.timeout("5 seconds")))
        assert.strictEqual(event!.message, "node lost-node stopped heart-beating; job made available")
        yield* Oban.cancelJob(job.id)
      }).pipe(Effect.scoped))

    it.effect("the testing kit drains a queue on it", () =>
      Effect.gen(function*() {
        performed.length = 0
        const result = yield* Effect.gen(function*() {
          const job = yield* Oban.insert(Camel.job({ userId: "u2" }))
          const drained = yield* ObanTest.drainQueue({ queue: "camel" })
          return { job, drained }
        }).pipe(Effect.provide(ObanTest.layer({ prefix, workers: [Camel] })))
        assert.strictEqual(result.drained.completed, 1)
        assert.deepStrictEqual(performed.map((run) => [run.id, isDate(run.scheduledAt)]), [[result.job.id, true]])
      }))
  })
})
