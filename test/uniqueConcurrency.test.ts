/**
 * Unique inserts meeting other transactions: concurrent insertAll calls whose
 * unique rows replace different fields must lock their keys in one global
 * order (else two calls deadlock), and migration 0007 goes up and down over a
 * table that holds data.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("unique_conc")

const Keyed = Worker.make("Keyed", {
  args: Schema.Struct({ n: Schema.Int, v: Schema.Int }),
  queue: "keyed",
  unique: { period: "forever", keys: ["n"] },
  perform: () => Effect.void
})

const replacingArgs = { period: "forever", keys: ["n"], replace: ["args"] } as const

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs`
})

/** Backends of this file's schema waiting for a lock. */
const lockWaiters = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}`
  return row!.n
})

const waitForLockWaiters = (count: number) =>
  Effect.gen(function*() {
    while ((yield* lockWaiters) < count) yield* Effect.sleep("20 millis")
  }).pipe(
    Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die(new Error(`never saw ${count} lock waiters`)) })
  )

/** Holds the row of job `id` locked in a transaction of its own until `release` completes. */
const holdRow = (id: number, locked: Deferred.Deferred<void>, release: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${id} FOR UPDATE`
      yield* Deferred.succeed(locked, undefined)
      yield* Deferred.await(release)
    }))
  })

layer(testLayer(prefix, { maxConnections: 10 }), { excludeTestServices: true })("unique inserts and other transactions", (it) => {
  it.effect("two insertAll calls over the same keys with different replace sets do not deadlock", () =>
    Effect.gen(function*() {
      yield* truncate
      const [x, y] = yield* Oban.insertAll([Keyed.job({ n: 1, v: 0 }), Keyed.job({ n: 2, v: 0 })])
      // Each row is locked by a transaction of its own, so both calls queue up on their first key before either
      // goes on; released together, each call then takes its next key.
      const release = yield* Deferred.make<void>()
      const lockedX = yield* Deferred.make<void>()
      const lockedY = yield* Deferred.make<void>()
      const holders = yield* Effect.forkChild(
        Effect.all([holdRow(x!.id, lockedX, release), holdRow(y!.id, lockedY, release)], { concurrency: 2 })
      )
      yield* Deferred.await(lockedX)
      yield* Deferred.await(lockedY)
      // Call A: n=1 plain conflict, n=2 replacing args. Call B: the other way round.
      const callA = yield* Effect.forkChild(Effect.exit(Oban.insertAll([
        Keyed.job({ n: 1, v: 1 }),
        Keyed.job({ n: 2, v: 1 }, { unique: replacingArgs })
      ])))
      const callB = yield* Effect.forkChild(Effect.exit(Oban.insertAll([
        Keyed.job({ n: 2, v: 2 }),
        Keyed.job({ n: 1, v: 2 }, { unique: replacingArgs })
      ])))
      yield* waitForLockWaiters(2)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holders)
      const a = yield* Fiber.join(callA)
      const b = yield* Fiber.join(callB)
      assert.isTrue(Exit.isSuccess(a), `call A: ${Exit.isFailure(a) ? String(a.cause) : ""}`)
      assert.isTrue(Exit.isSuccess(b), `call B: ${Exit.isFailure(b) ? String(b.cause) : ""}`)
      const ids = [...(Exit.isSuccess(a) ? a.value : []), ...(Exit.isSuccess(b) ? b.value : [])].map((job) => job.id)
      assert.deepStrictEqual(ids, [x!.id, y!.id, y!.id, x!.id])
    }), 60_000)
})
