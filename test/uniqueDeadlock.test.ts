/**
 * A unique insertAll and a transaction that holds the rows of its keys in the
 * other order (as a node's outcome write does: it locks the rows it finishes
 * in its own order) form a lock cycle; PostgreSQL breaks it by failing the
 * insert with a deadlock (the stress helper saw 5-14 in 10,000s of calls).
 * Outside the caller's transaction the insert wrote nothing, and it is sent
 * again; inside one, the caller gets the error, as with any deadlock.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("unique_deadlock")

const Keyed = Worker.make("DeadlockKeyed", {
  args: Schema.Struct({ k: Schema.Int }),
  unique: { keys: ["k"], period: "forever" },
  perform: () => Effect.void
})

/**
 * Inserts keys 1 and 2, then holds the row the insert locks second and, once
 * the insert waits for it, asks for the one it locks first: a cycle.
 */
const cycle = (insert: Effect.Effect<unknown, unknown, SqlClient>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
    yield* Oban.insertAll([Keyed.job({ k: 1 }), Keyed.job({ k: 2 })])
    // The insert locks the rows of its keys in key order.
    const [first, second] = yield* sql<{ id: number }>`
      SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs ORDER BY unique_key COLLATE "C"`
    const holding = yield* Deferred.make<void>()
    const go = yield* Deferred.make<void>()
    const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${second!.id} FOR UPDATE`
      yield* Deferred.succeed(holding, undefined)
      yield* Deferred.await(go)
      yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${first!.id} FOR UPDATE`
    })))
    yield* Deferred.await(holding)
    const inserting = yield* Effect.forkChild(Effect.exit(insert))
    // The insert holds the first row and waits for the second.
    yield* Effect.sleep("300 millis")
    yield* Deferred.succeed(go, undefined)
    const holderExit = yield* Effect.exit(Fiber.join(holder))
    return { insert: yield* Fiber.join(inserting), holder: holderExit }
  })

// Both keys again, replacing args: the insert locks both rows.
const again = Oban.insertAll([
  Keyed.job({ k: 1 }, { unique: { keys: ["k"], period: "forever", replace: ["args"] } }),
  Keyed.job({ k: 2 }, { unique: { keys: ["k"], period: "forever", replace: ["args"] } })
])

layer(testLayer(prefix), { excludeTestServices: true })("a unique insert in a lock cycle", (it) => {
  it.effect("outside a transaction: the deadlock's victim insert is sent again and lands", () =>
    Effect.gen(function*() {
      const { holder, insert } = yield* cycle(again)
      assert.strictEqual(holder._tag, "Success", JSON.stringify(holder))
      assert.strictEqual(insert._tag, "Success", JSON.stringify(insert))
      if (insert._tag === "Success") assert.deepStrictEqual((insert.value as ReadonlyArray<Oban.Inserted>).map((job) => job.conflict), [true, true])
    }), 30_000)

  it.effect("inside the caller's transaction: the caller gets the deadlock", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { insert } = yield* cycle(sql.withTransaction(again))
      assert.strictEqual(insert._tag, "Failure")
      if (insert._tag === "Failure") assert.include(JSON.stringify(insert.cause), "DeadlockError")
    }), 30_000)
})
