/**
 * Cluster-wide limits where the count already used matters: a partition
 * limit above 1 with a job of the partition already running (the claim may
 * take only what is left of the limit), and a rate window filled by several
 * claims (each claim adds to the window's count, and the window holds once
 * the count reaches the limit). Real PostgreSQL, one node, live clock.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("limitsused")

/** Runs until its gate is opened (a row of `gates`), so a test holds it executing as long as it needs. */
const Gated = Worker.make("Gated", {
  args: Schema.Struct({ accountId: Schema.String, gate: Schema.String }),
  queue: "parted",
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      while ((yield* sql`SELECT 1 FROM ${sql(prefix)}.gates WHERE name = ${job.args.gate} AND open`).length === 0) {
        yield* Effect.sleep("25 millis")
      }
    })
})

const Quick = Worker.make("Quick", {
  args: Schema.Struct({ n: Schema.Int, accountId: Schema.String }),
  queue: "rated",
  perform: () => Effect.void
})

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS ${sql(prefix)}.gates (name text PRIMARY KEY, open boolean NOT NULL DEFAULT false)`
  yield* sql`TRUNCATE ${sql(prefix)}.gates, ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished,
    ${sql(prefix)}.oban_producers, ${sql(prefix)}.oban_queues, ${sql(prefix)}.oban_rate_windows`
})

const openGate = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`INSERT INTO ${sql(prefix)}.gates (name, open) VALUES (${name}, true)
      ON CONFLICT (name) DO UPDATE SET open = true`
  })

/** Jobs of `queue` per account and state: { "acct/executing": 2, ... }. */
const byAccount = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ account: string; state: string; n: number }>`
      SELECT args ->> 'accountId' AS account, state::text AS state, count(*)::int AS n
      FROM ${sql(prefix)}.oban_jobs_all WHERE queue = ${queue} GROUP BY 1, 2`
    return Object.fromEntries(rows.map((row) => [`${row.account}/${row.state}`, row.n])) as Record<string, number>
  })

const rateWindows = Effect.gen(function*() {
  const sql = yield* SqlClient
  return yield* sql<{ partition: string; count: number }>`
    SELECT "partition", count FROM ${sql(prefix)}.oban_rate_windows WHERE queue = 'rated' ORDER BY "partition", window_start`
})

/** Several polls (200 ms) and the wake-ups of inserts: time enough for a claim that should not happen. */
const settle = Effect.sleep("1500 millis")

describe("audit: limits that count what is already used", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("partition limit 2 with one job of the partition running: one more is claimed, not two", () =>
      Effect.gen(function*() {
        yield* reset
        const node = yield* startNode({
          prefix,
          node: "parted",
          queues: { parted: { limit: 10, global: 2, partition: { by: "args", key: "accountId" } } },
          workers: [Gated],
          pollInterval: "200 millis",
          pruner: false
        })
        yield* producersRegistered(prefix, 1)
        yield* Oban.insert(Gated.job({ accountId: "acct", gate: "g" }))
        yield* waitFor("the first job of acct runs", Effect.map(byAccount("parted"), (c) => c["acct/executing"] === 1))
        // Three more of the same account, and three of another: each partition may run 2 at once.
        yield* Oban.insertAll([
          ...Array.from({ length: 3 }, () => Gated.job({ accountId: "acct", gate: "g" })),
          ...Array.from({ length: 3 }, () => Gated.job({ accountId: "other", gate: "g" }))
        ])
        yield* waitFor(
          "both partitions at their limit",
          Effect.map(byAccount("parted"), (c) => (c["acct/executing"] ?? 0) >= 2 && (c["other/executing"] ?? 0) >= 2)
        )
        yield* settle
        assert.deepStrictEqual(yield* byAccount("parted"), {
          "acct/executing": 2,
          "acct/available": 2,
          "other/executing": 2,
          "other/available": 1
        })
        const check = yield* node.oban.checkQueue("parted")
        assert.strictEqual(check.cluster?.running, 4)
        // Released, every job runs, the limit still holding per partition.
        yield* openGate("g")
        yield* waitFor("all 7 completed", Effect.map(countByState(prefix), (c) => c["completed"] === 7))
        yield* node.stop
        // On a failure too, so that the node's shutdown does not wait out its grace period for them.
      }).pipe(Effect.ensuring(Effect.ignore(openGate("g")))), 60_000)

    it.effect("rate 5 per 7 days filled by two claims (3, then 2): the window's count is 5 and nothing more runs", () =>
      Effect.gen(function*() {
        yield* reset
        // A 7-day window (aligned to the epoch): a test of a few seconds stays inside one.
        const node = yield* startNode({
          prefix,
          node: "rated",
          queues: { rated: { limit: 10, rate: { limit: 5, period: "7 days" } } },
          workers: [Quick],
          pollInterval: "200 millis",
          pruner: false
        })
        yield* producersRegistered(prefix, 1)
        const completed = (n: number) =>
          waitFor(`${n} completed`, Effect.map(countByState(prefix), (c) => c["completed"] === n))
        yield* Oban.insertAll(Array.from({ length: 3 }, (_, n) => Quick.job({ n, accountId: "a" })))
        yield* completed(3)
        assert.deepStrictEqual((yield* rateWindows).map((row) => row.count), [3])
        // A second claim in the same window: it adds to the count.
        yield* Oban.insertAll(Array.from({ length: 2 }, (_, n) => Quick.job({ n: 10 + n, accountId: "a" })))
        yield* completed(5)
        assert.deepStrictEqual((yield* rateWindows).map((row) => row.count), [5])
        // The window is spent: more jobs wait for the next one.
        yield* Oban.insertAll(Array.from({ length: 4 }, (_, n) => Quick.job({ n: 20 + n, accountId: "a" })))
        yield* settle
        assert.deepStrictEqual(yield* countByState(prefix), { completed: 5, available: 4 })
        assert.deepStrictEqual((yield* rateWindows).map((row) => row.count), [5])
        const check = yield* node.oban.checkQueue("rated")
        assert.strictEqual(check.cluster?.rate?.used, 5)
        assert.strictEqual(check.cluster?.rate?.left, 0)
        yield* node.stop
      }), 60_000)

    it.effect("rate 3 per 7 days per account, filled by two claims: each account's count adds up and caps it", () =>
      Effect.gen(function*() {
        yield* reset
        const node = yield* startNode({
          prefix,
          node: "rated-parts",
          queues: { rated: { limit: 10, rate: { limit: 3, period: "7 days", partition: { by: "args", key: "accountId" } } } },
          workers: [Quick],
          pollInterval: "200 millis",
          pruner: false
        })
        yield* producersRegistered(prefix, 1)
        const counts = Effect.map(rateWindows, (rows) => Object.fromEntries(rows.map((row) => [row.partition, row.count])))
        // First claim: 2 of a, 1 of b.
        yield* Oban.insertAll([Quick.job({ n: 0, accountId: "a" }), Quick.job({ n: 1, accountId: "a" }), Quick.job({ n: 2, accountId: "b" })])
        yield* waitFor("3 completed", Effect.map(countByState(prefix), (c) => c["completed"] === 3))
        assert.deepStrictEqual(yield* counts, { a: 2, b: 1 })
        // Second claim: 1 of a (a's last), 1 of b.
        yield* Oban.insertAll([Quick.job({ n: 3, accountId: "a" }), Quick.job({ n: 4, accountId: "b" })])
        yield* waitFor("5 completed", Effect.map(countByState(prefix), (c) => c["completed"] === 5))
        assert.deepStrictEqual(yield* counts, { a: 3, b: 2 })
        // a is spent, b has 1 left: of 3 more each, only one of b runs.
        yield* Oban.insertAll([
          ...Array.from({ length: 3 }, (_, n) => Quick.job({ n: 10 + n, accountId: "a" })),
          ...Array.from({ length: 3 }, (_, n) => Quick.job({ n: 20 + n, accountId: "b" }))
        ])
        yield* waitFor("6 completed", Effect.map(countByState(prefix), (c) => (c["completed"] ?? 0) >= 6))
        yield* settle
        assert.deepStrictEqual(yield* byAccount("rated"), {
          "a/completed": 3,
          "a/available": 3,
          "b/completed": 3,
          "b/available": 2
        })
        assert.deepStrictEqual(yield* counts, { a: 3, b: 3 })
        yield* node.stop
      }), 60_000)
  })
})
