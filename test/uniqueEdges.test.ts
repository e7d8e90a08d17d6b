/**
 * Unique inserts at their edges: concurrent insertAll calls whose unique rows
 * replace different fields must lock their keys in one global order (else two
 * calls deadlock); a unique batch too big for one jsonb value is split like a
 * plain one and stays all or nothing; an insert waiting on a job that leaves
 * its states inserts (or conflicts when that change rolls back); migration
 * 0007 goes up and down over a table that holds data.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { dropSchemaOnClose, testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("unique_edges")

const Keyed = Worker.make("Keyed", {
  args: Schema.Struct({ n: Schema.Int, v: Schema.Int }),
  queue: "keyed",
  unique: { period: "forever", keys: ["n"] },
  perform: () => Effect.void
})

const Big = Worker.make("Big", {
  args: Schema.Struct({ n: Schema.Int, body: Schema.String }),
  unique: { period: "forever", keys: ["n"] },
  perform: () => Effect.void
})

const Tally = Worker.make("Tally", {
  args: Schema.Record(Schema.String, Schema.Int),
  unique: { period: "forever", keys: ["__proto__"] },
  perform: () => Effect.void
})

/** Args whose schema stores `userId` as `user_id`: unique keys name the stored field. */
const Renamed = Worker.make("Renamed", {
  args: Schema.Struct({ userId: Schema.String, note: Schema.String }).pipe(Schema.encodeKeys({ userId: "user_id" })),
  unique: { period: "forever", keys: ["user_id"] },
  perform: () => Effect.void
})

const replacingArgs = { period: "forever", keys: ["n"], replace: ["args"] } as const

/** Options shared by workers whatever their args (docs/unique-jobs.md, "States"): they name no key. */
const uniqueWhileUnfinished: Worker.UniqueOptions<unknown> = {
  period: "forever",
  states: ["available", "scheduled", "executing", "retryable"]
}

// The types of unique keys (compiled, never run): the names of the args as stored, in a worker's own
// option and in its jobs' options; any name where the stored args have no known shape.
void (() => {
  Worker.make("Misspelt", {
    args: Schema.Struct({ n: Schema.Int }),
    // @ts-expect-error `m` is no field of the args as stored
    unique: { keys: ["m"] },
    perform: () => Effect.void
  })
  // @ts-expect-error `m` is no field of Keyed's args
  Keyed.job({ n: 1, v: 1 }, { unique: { keys: ["m"] } })
  // Options typed for the args (or for any args), as before workers carried their stored names.
  const forArgs: Worker.JobOptions<typeof Renamed.argsSchema.Type> = { priority: 1, unique: { period: 60 } }
  const forAny: Worker.JobOptions<any> = { priority: 1 }
  Renamed.job({ userId: "u", note: "n" }, forArgs)
  Keyed.job({ n: 1, v: 1 }, forAny)
  Worker.make("Opaque", { args: Schema.Unknown, unique: { keys: ["id"] }, perform: () => Effect.void })
  Worker.make("Reused", { args: Keyed.argsSchema, unique: { keys: ["n"] }, perform: () => Effect.void })
  // A helper over any worker (docs/unique-jobs.md): the keys' names come from the worker, not from the options.
  const uniqueFor = <A, E, R, O, K extends string>(
    worker: Worker.Worker<string, A, E, R, O, K>,
    args: A,
    options?: Worker.JobOptions<A, NoInfer<K>>
  ) => worker.job(args, { priority: 1, ...options })
  uniqueFor(Renamed, { userId: "u", note: "n" }, { unique: { keys: ["user_id"] } })
  // @ts-expect-error `userId` is not the stored name
  uniqueFor(Renamed, { userId: "u", note: "n" }, { unique: { keys: ["userId"] } })
  // @ts-expect-error `m` is no field of Keyed's args
  uniqueFor(Keyed, { n: 1, v: 1 }, { unique: { keys: ["m"] } })
})

const Shared = Worker.make("Shared", {
  args: Schema.Struct({ id: Schema.String }),
  unique: uniqueWhileUnfinished,
  perform: () => Effect.void
})

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
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

layer(testLayer(prefix, { maxConnections: 10 }), { excludeTestServices: true })("unique inserts at their edges", (it) => {
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

  it.effect("a unique batch over 32 MiB is split into statements: jobs in request order, all or nothing", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const body = "x".repeat(1024 * 1024 - 100)
      // Not in key order, with a duplicate of the first request at the end.
      const order = Array.from({ length: 34 }, (_, i) => (i * 7) % 34)
      const requests = [...order.map((n) => Big.job({ n, body })), Big.job({ n: order[0]!, body })]
      const count = Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`, (rows) => rows[0]!.n)
      // The database refuses one job, in one of the statements: the jobs of the others go too.
      yield* sql.unsafe(`CREATE FUNCTION "${prefix}".refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.worker = 'Poison' THEN RAISE EXCEPTION 'poison'; END IF; RETURN NEW; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER refuse_poison BEFORE INSERT ON "${prefix}".oban_jobs
        FOR EACH ROW EXECUTE FUNCTION "${prefix}".refuse_poison()`)
      const poisoned = yield* Oban.insertAll([...requests, { ...Big.job({ n: 99, body: "" }), worker: "Poison" }]).pipe(
        Effect.flip,
        Effect.ensuring(sql.unsafe(`DROP TRIGGER refuse_poison ON "${prefix}".oban_jobs`).pipe(Effect.orDie))
      )
      assert.strictEqual(poisoned._tag, "SqlError")
      assert.strictEqual(yield* count, 0)
      const jobs = yield* Oban.insertAll(requests)
      assert.deepStrictEqual(jobs.map((job) => (job.args as { n: number }).n), [...order, order[0]!])
      assert.deepStrictEqual(jobs.map((job) => job.conflict), [...order.map(() => false), true])
      assert.strictEqual(jobs[34]!.id, jobs[0]!.id)
      assert.strictEqual(yield* count, 34)
      const again = yield* Oban.insertAll(requests.slice(0, 34))
      assert.deepStrictEqual(again.map((job) => [job.id, job.conflict]), jobs.slice(0, 34).map((job) => [job.id, true]))
    }), 120_000)

  it.effect("migration 0007 goes down and up again over jobs that left their states, newer jobs and cron keys", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const other = uniquePrefix("unique_mig")
      yield* dropSchemaOnClose(other)
      const inOther = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, Config.layer({ prefix: other }))
      yield* inOther(Migrations.run())
      const jobs = sql<{ id: number; state: string; unique_key: string | null }>`
        SELECT id::int AS id, state::text AS state, unique_key FROM ${sql(other)}.oban_jobs ORDER BY id`
      const unfinished = ["available", "scheduled", "executing", "retryable"] as const
      // n=1: a completed job outside its states and the newer job that took its key; n=2 the same by cancelling.
      const done = yield* inOther(Oban.insert(Keyed.job({ n: 1, v: 0 }, { unique: { keys: ["n"], states: unfinished, period: "forever" } })))
      yield* sql`UPDATE ${sql(other)}.oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${done.id}`
      const newer = yield* inOther(Oban.insert(Keyed.job({ n: 1, v: 1 }, { unique: { keys: ["n"], states: unfinished, period: "forever" } })))
      const cancelled = yield* inOther(Oban.insert(Keyed.job({ n: 2, v: 0 })))
      yield* sql`UPDATE ${sql(other)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${cancelled.id}`
      const again = yield* inOther(Oban.insert(Keyed.job({ n: 2, v: 1 })))
      // A cron slot: no mask, its key held in every state.
      yield* sql`INSERT INTO ${sql(other)}.oban_jobs (state, queue, worker, args, unique_key, completed_at)
        VALUES ('completed', 'cron', 'Cron', '{}', 'cron:nightly:1', now())`
      assert.deepStrictEqual([newer.conflict, again.conflict], [false, false])
      assert.strictEqual(newer.id === done.id, false)

      yield* inOther(Migrations.down({ to: 6 }))
      const down = yield* jobs
      // The jobs outside their states gave their keys up; the others kept theirs.
      assert.deepStrictEqual(down.map((row) => row.unique_key === null), [true, false, true, false, false])
      const duplicate = yield* sql`INSERT INTO ${sql(other)}.oban_jobs (state, queue, worker, args, unique_key)
        VALUES ('cancelled', 'cron', 'Cron', '{}', 'cron:nightly:1')`.pipe(Effect.flip)
      assert.strictEqual(duplicate.reason._tag, "UniqueViolation")

      yield* inOther(Migrations.run())
      assert.deepStrictEqual(yield* jobs, down)
      // The kept keys hold in every state now (no mask): the newer job still blocks its key.
      const conflict = yield* inOther(Oban.insert(Keyed.job({ n: 1, v: 2 }, { unique: { keys: ["n"], states: unfinished, period: "forever" } })))
      assert.deepStrictEqual([conflict.id, conflict.conflict], [newer.id, true])
      const cron = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(other)}.oban_jobs_all
        WHERE unique_key = 'cron:nightly:1' AND unique_states IS NULL`
      assert.strictEqual(cron[0]!.n, 1)
    }), 60_000)

  it.effect("an insert that waits on a job leaving its states inserts once it left, and conflicts when it did not", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const unfinished = { period: "forever", keys: ["n"], states: ["available", "scheduled", "executing", "retryable"] } as const
      const attempt = (commit: boolean) =>
        Effect.gen(function*() {
          const existing = yield* Oban.insert(Keyed.job({ n: 7, v: 0 }, { unique: unfinished }))
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing' WHERE id = ${existing.id}`
          const moved = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          // Another transaction completes the job (out of its states) and holds on to the change.
          const mover = yield* Effect.forkChild(Effect.exit(sql.withTransaction(Effect.gen(function*() {
            yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${existing.id}`
            yield* Deferred.succeed(moved, undefined)
            yield* Deferred.await(release)
            if (!commit) return yield* Effect.fail("rollback" as const)
          }))))
          yield* Deferred.await(moved)
          const insert = yield* Effect.forkChild(Oban.insert(Keyed.job({ n: 7, v: 1 }, { unique: unfinished })))
          yield* waitForLockWaiters(1)
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(mover)
          return { existing, inserted: yield* Fiber.join(insert) }
        })
      const committed = yield* attempt(true)
      assert.isFalse(committed.inserted.conflict)
      assert.notStrictEqual(committed.inserted.id, committed.existing.id)
      yield* truncate
      const rolledBack = yield* attempt(false)
      assert.isTrue(rolledBack.inserted.conflict)
      assert.strictEqual(rolledBack.inserted.id, rolledBack.existing.id)
      assert.strictEqual(rolledBack.inserted.state, "executing")
    }), 60_000)

  it.effect("keys names an args key called __proto__ like any other", () =>
    Effect.gen(function*() {
      yield* truncate
      const first = yield* Oban.insert(Tally.job(JSON.parse(`{"__proto__": 1, "other": 1}`)))
      const second = yield* Oban.insert(Tally.job(JSON.parse(`{"__proto__": 2, "other": 1}`)))
      const same = yield* Oban.insert(Tally.job(JSON.parse(`{"__proto__": 1, "other": 2}`)))
      assert.deepStrictEqual([first.conflict, second.conflict, same.conflict], [false, false, true])
      assert.strictEqual(same.id, first.id)
    }))

  it.effect("a job's own unique option: the worker's spread with one field changed, a stored name, options shared by workers", () =>
    Effect.gen(function*() {
      yield* truncate
      // The worker's option, spread, with another period: its keys (a stored name) still decide.
      const hourly = { ...Renamed.unique, period: "1 hour" } as const
      const first = yield* Oban.insert(Renamed.job({ userId: "dana", note: "1" }, { unique: hourly }))
      const again = yield* Oban.insert(Renamed.job({ userId: "dana", note: "2" }, { unique: hourly }))
      assert.deepStrictEqual([first.conflict, again.conflict], [false, true])
      assert.strictEqual(again.id, first.id)
      // A renamed field by its stored name, given for one insert.
      const byStoredName = yield* Oban.insert(Renamed.job({ userId: "dana", note: "3" }, {
        unique: { period: "1 hour", keys: ["user_id"] }
      }))
      assert.deepStrictEqual([byStoredName.conflict, byStoredName.id], [true, first.id])
      // Options shared by workers, as a worker's option and as a job's.
      const shared = yield* Oban.insert(Shared.job({ id: "s" }))
      const sharedAgain = yield* Oban.insert(Shared.job({ id: "s" }, { unique: uniqueWhileUnfinished }))
      const otherArgs = yield* Oban.insert(Keyed.job({ n: 9, v: 9 }, { unique: uniqueWhileUnfinished }))
      const otherArgsAgain = yield* Oban.insert(Keyed.job({ n: 9, v: 9 }, { unique: uniqueWhileUnfinished }))
      assert.deepStrictEqual(
        [shared.conflict, sharedAgain.conflict, otherArgs.conflict, otherArgsAgain.conflict],
        [false, true, false, true]
      )
    }))

  it.effect("keys name the args' fields as stored: a renamed field by its stored name; a name no stored args have is refused", () =>
    Effect.gen(function*() {
      yield* truncate
      const alice = yield* Oban.insert(Renamed.job({ userId: "alice", note: "1" }))
      const bob = yield* Oban.insert(Renamed.job({ userId: "bob", note: "2" }))
      const aliceAgain = yield* Oban.insert(Renamed.job({ userId: "alice", note: "3" }))
      assert.deepStrictEqual([alice.conflict, bob.conflict, aliceAgain.conflict], [false, false, true])
      assert.notStrictEqual(bob.id, alice.id)
      assert.strictEqual(aliceAgain.id, alice.id)
      // The decoded name is no field of the stored args: every job would share one key.
      const byDecodedName = { period: "forever", keys: ["userId"] } as const
      const refused = yield* Oban.insert(Renamed.job({ userId: "carol", note: "4" }, { unique: byDecodedName })).pipe(
        Effect.flip
      )
      if (refused._tag !== "InvalidJobError") return assert.fail(`expected InvalidJobError, got ${refused._tag}`)
      assert.strictEqual(refused.field, "unique")
      assert.include(refused.message, `names "userId", which is no field of the args as stored (their fields: user_id, note)`)
      const misspelt = yield* Oban.insert(Keyed.job({ n: 1, v: 1 }, { unique: { keys: ["m" as "n"] } })).pipe(Effect.flip)
      assert.include(misspelt.message, `names "m", which is no field of the args as stored (their fields: n, v)`)
      const sql = yield* SqlClient
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
      assert.strictEqual(row!.n, 2)
    }))

  it.effect("on the database clock the bucket is floor(epoch ms of the insert's now() / period), as inserted_at says", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const periods = [60_000, 7_000, 1]
      const jobs = yield* Oban.insertAll(periods.map((ms, n) => Keyed.job({ n, v: 0 }, { unique: { keys: ["n"], period: `${ms} millis` } })))
      const stored = yield* sql<{ id: number; unique_key: string; at_ms: string }>`
        SELECT id::int AS id, unique_key, floor(extract(epoch FROM inserted_at) * 1000)::bigint::text AS at_ms
        FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      for (const [index, ms] of periods.entries()) {
        const row = stored.find((candidate) => candidate.id === jobs[index]!.id)!
        assert.strictEqual(row.unique_key.split(":")[1], String(BigInt(row.at_ms) / BigInt(ms)))
      }
    }))
})
