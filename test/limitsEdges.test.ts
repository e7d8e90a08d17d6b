/**
 * Edges of cluster-wide limits found in review, against real PostgreSQL: a
 * job row locked by another transaction (a unique insert's conflict), many
 * partitions whose jobs come in clumps, and a claim built for limits no
 * longer in force (claims that waited for the lock: limitsWaitedClaims).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import * as Oban from "../src/Oban.ts"
import * as ObanClock from "../src/ObanClock.ts"
import { fetchLimited, type FinishedJob } from "../src/internal/sql/limitedClaims.ts"
import type { QueueLimits } from "../src/internal/queueLimits.ts"
import { readQueueLimits, storeQueueLimits } from "../src/internal/sql/queues.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"

/**
 * The rate windows of these tests: fixed windows are aligned to the epoch, and an hour's could end
 * in the middle of a test (once in a few thousand runs), splitting its counts; a year's does not.
 */
const aYear = 365 * 86_400_000

const prefix = uniquePrefix("limits_edges")

/** Sleeps `millis` of Effect time (TestClock in the TestClock tests). */
const Sleeper = Worker.make("Sleeper", {
  args: Schema.Struct({ account: Schema.String, millis: Schema.Int }),
  queue: "limited",
  perform: (job) => Effect.sleep(job.args.millis)
})

/** Holds its slot until the test opens `gate`. */
let gate = Deferred.makeUnsafe<void>()
const Gated = Worker.make("Gated", {
  args: Schema.Struct({ account: Schema.String }),
  queue: "limited",
  perform: () => Deferred.await(gate)
})

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers,
    ${sql(prefix)}.oban_queues, ${sql(prefix)}.oban_rate_windows`
})

const executing = Effect.map(countByState(prefix), (c) => c["executing"] ?? 0)

/** One limited claim of the queue "limited" asking for up to 10 jobs; `finished` as a producer passes it. */
const claimLimited = (sql: SqlClient, finished: ReadonlyArray<FinishedJob> = [], expected?: QueueLimits) =>
  Effect.flatMap(
    expected === undefined ? readQueueLimits(sql, prefix, "limited") : Effect.succeed(expected),
    (limits) =>
      Effect.flatMap(ObanClock.statementNow(sql), (now) => fetchLimited(sql, prefix, now, {
        queue: "limited",
        demand: 10,
        node: "edge",
        producer: crypto.randomUUID(),
        claim: crypto.randomUUID(),
        finished,
        expected: limits
      }))
  )

/** The jobs of `claimLimited`. */
const claimAll = (sql: SqlClient, finished: ReadonlyArray<FinishedJob> = []) =>
  Effect.map(claimLimited(sql, finished), (fetched) => fetched.jobs)

describe("cluster-wide limits: edges", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("one claim with a partition limit and a rate: jobs the partition turns away do not use the rate's quota", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", {
          global: 2,
          partition: { by: "args", key: "account" },
          rate: { limit: 5, periodMillis: aYear, partition: undefined }
        })
        // Five jobs of account a come first, then one each of b and c.
        yield* Oban.insertAll(["a", "a", "a", "a", "a", "b", "c"].map((account) => Sleeper.job({ account, millis: 0 })))
        const fetched = yield* claimLimited(sql)
        // Two of a (its partition's limit), and b and c: 4 of the rate's 5.
        assert.deepStrictEqual(fetched.jobs.map((job) => (job.args as { account: string }).account).sort(), ["a", "a", "b", "c"])
      }))

    it.effect("a claim counts a finished job whose outcome is unwritten as free, only under the claim it ran with", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", { global: 1, partition: undefined, rate: undefined })
        yield* Oban.insertAll(["a", "b"].map((account) => Sleeper.job({ account, millis: 0 })))
        const claim = (finished: ReadonlyArray<FinishedJob>) => claimAll(sql, finished)
        const [first] = yield* claim([])
        assert.isDefined(first)
        const ranUnder = first!.attemptedBy![2]!
        // Its row says executing: the one slot is taken.
        assert.strictEqual((yield* claim([])).length, 0)
        // The same job under another claim (a later run of it, claimed again after a rescue) still counts.
        assert.strictEqual((yield* claim([{ id: first!.id, claim: crypto.randomUUID() }])).length, 0)
        // Finished here under the claim it ran with, outcome not yet written: its slot is free.
        const next = yield* claim([{ id: first!.id, claim: ranUnder }])
        assert.deepStrictEqual(next.map((job) => (job.args as { account: string }).account), ["b"])
        assert.strictEqual(yield* executing, 2)
      }))

    it.effect("partition by worker: the global limit applies to each worker of the queue", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", { global: 1, partition: { by: "worker" }, rate: undefined })
        yield* Oban.insertAll([
          ...Array.from({ length: 3 }, () => Sleeper.job({ account: "x", millis: 0 })),
          ...Array.from({ length: 3 }, () => Gated.job({ account: "x" }))
        ])
        const first = yield* claimAll(sql)
        assert.deepStrictEqual(first.map((job) => job.worker).sort(), ["Gated", "Sleeper"])
        assert.strictEqual((yield* claimAll(sql)).length, 0)
      }))

    it.effect("a rate partitioned by an args key: each account has its own quota in the window", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", {
          global: undefined,
          partition: undefined,
          rate: { limit: 2, periodMillis: aYear, partition: { by: "args", key: "account" } }
        })
        yield* Oban.insertAll(["a", "a", "a", "b", "b", "b"].map((account) => Sleeper.job({ account, millis: 0 })))
        const first = yield* claimAll(sql)
        assert.deepStrictEqual(first.map((job) => (job.args as { account: string }).account).sort(), ["a", "a", "b", "b"])
        // Both quotas are spent for this window; a new account still has its own.
        assert.strictEqual((yield* claimAll(sql)).length, 0)
        yield* Oban.insert(Sleeper.job({ account: "c", millis: 0 }))
        assert.deepStrictEqual((yield* claimAll(sql)).map((job) => (job.args as { account: string }).account), ["c"])
        const windows = yield* sql<{ partition: string; count: number }>`
          SELECT "partition", count FROM ${sql(prefix)}.oban_rate_windows WHERE queue = 'limited' ORDER BY 1`
        assert.deepStrictEqual(windows.map((w) => [w.partition, w.count]), [["a", 2], ["b", 2], ["c", 1]])
      }))

    it.effect("a partitioned claim locks only the jobs it claims, not its whole scan window", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", {
          global: 1,
          partition: { by: "args", key: "account" },
          rate: undefined
        })
        yield* Oban.insertAll(Array.from({ length: 50 }, (_, n) => Sleeper.job({ account: n % 5 === 0 ? "b" : "a", millis: 0 })))
        const claimed = yield* Deferred.make<number>()
        const release = yield* Deferred.make<void>()
        const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          const fetched = yield* claimLimited(sql)
          yield* Deferred.succeed(claimed, fetched.jobs.length)
          yield* Deferred.await(release)
        })))
        // One job of each account, within a scan of all 50.
        assert.strictEqual(yield* Deferred.await(claimed), 2)
        // While the claim's transaction is open, the 48 jobs it looked at and left are not locked.
        const [free] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM (
            SELECT id FROM ${sql(prefix)}.oban_jobs WHERE queue = 'limited' AND state = 'available'
            FOR UPDATE SKIP LOCKED
          ) AS lockable`
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
        assert.strictEqual(free!.n, 48)
      }))

    it.effect("a job row locked by another transaction (a unique insert's conflict) does not stall the queue", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        // First in queue order, and locked by a transaction that stays open: an insert of the
        // same unique job conflicts with it and holds its row lock until that transaction ends.
        const first = yield* Oban.insert(Sleeper.job({ account: "u", millis: 0 }, { priority: 0, unique: { period: "forever" } }))
        yield* Oban.insertAll(Array.from({ length: 5 }, () => Sleeper.job({ account: "x", millis: 0 }, { priority: 1 })))
        const holding = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
          const again = yield* Oban.insert(Sleeper.job({ account: "u", millis: 0 }, { priority: 0, unique: { period: "forever" } }))
          assert.isTrue(again.conflict)
          assert.strictEqual(again.id, first.id)
          yield* Deferred.succeed(holding, undefined)
          yield* Deferred.await(release)
        })))
        yield* Deferred.await(holding)
        const a = yield* startNode({
          prefix,
          node: "a",
          queues: { limited: { limit: 10, global: 2 } },
          workers: [Sleeper],
          pollInterval: "200 millis",
          pruner: false
        })
        // The other jobs of the queue run while the first one is locked, as they do in an
        // unlimited queue (fetching skips locked jobs).
        yield* waitFor("the unlocked jobs completed", Effect.map(countByState(prefix), (c) => c["completed"] === 5), "10 seconds")
          .pipe(Effect.ensuring(Deferred.succeed(release, undefined)))
        yield* Fiber.join(holder)
        yield* waitFor("every job completed", Effect.map(countByState(prefix), (c) => c["completed"] === 6))
        yield* a.stop
      }), 60_000)

    it.effect("a claim built for other limits than the stored ones claims nothing and returns them", () =>
      Effect.gen(function*() {
        yield* reset
        const sql = yield* SqlClient
        yield* storeQueueLimits(sql, prefix, "limited", { global: 1, partition: undefined, rate: undefined })
        yield* Oban.insertAll(Array.from({ length: 3 }, () => Sleeper.job({ account: "x", millis: 0 })))
        const believed: QueueLimits = { global: 3, partition: undefined, rate: undefined }
        const fetched = yield* claimLimited(sql, [], believed)
        assert.strictEqual(fetched.jobs.length, 0)
        assert.isTrue(fetched.stale)
        assert.strictEqual(fetched.limits.global, 1)
        assert.strictEqual(yield* executing, 0)
        // Under the limits in force it claims.
        const again = yield* claimLimited(sql, [], fetched.limits)
        assert.isFalse(again.stale)
        assert.strictEqual(again.jobs.length, 1)
        // A queue whose row is gone: nothing claimed under limits, the queue is unlimited now.
        yield* sql`DELETE FROM ${sql(prefix)}.oban_queues`
        const gone = yield* claimLimited(sql, [], fetched.limits)
        assert.isTrue(gone.stale)
        assert.strictEqual(gone.jobs.length, 0)
        assert.isUndefined(gone.limits.global)
      }))

    it.effect("TestClock: partitions whose jobs come in clumps all fill at once, without waiting for polls", () =>
      Effect.gen(function*() {
        yield* reset
        yield* TestClock.setTime(Date.UTC(2100, 0, 1))
        gate = Deferred.makeUnsafe<void>()
        // 8 accounts of 120 jobs each, in account order: a claim's scan window (100 jobs at this
        // demand) sees one account only. Each job holds its slot until the gate opens. TestClock
        // stands still, and so do the producer's polls: only claims made at once count.
        const accounts = 8
        yield* Oban.insertAll(Array.from({ length: accounts * 120 }, (_, n) =>
          Gated.job({ account: `acct-${Math.floor(n / 120)}` })))
        const a = yield* startNode({
          prefix,
          node: "a",
          queues: { limited: { limit: 20, global: 1, partition: { by: "args", key: "account" } } },
          workers: [Gated],
          pollInterval: "1 minute",
          pruner: false
        })
        yield* TestClock.withLive(producersRegistered(prefix, 1))
        yield* TestClock.withLive(
          waitFor(`${accounts} accounts running`, Effect.map(executing, (n) => n === accounts), "10 seconds")
        ).pipe(Effect.onError(() => Deferred.succeed(gate, undefined)))
        const sql = yield* SqlClient
        const perAccount = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing' GROUP BY args ->> 'account'`
        assert.deepStrictEqual(perAccount.map((row) => row.n), Array.from({ length: accounts }, () => 1))
        yield* Deferred.succeed(gate, undefined)
        yield* a.stop
      }).pipe(Effect.provide(Layer.merge(TestClock.layer(), ObanClock.layerEffect))), 60_000)
  })
})
