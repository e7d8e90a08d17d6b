/**
 * Cluster-wide limits inside one test process, against real PostgreSQL: two
 * nodes sharing a global limit, partitions, rate windows on TestClock, the
 * limits a node without config reads, run-time changes, and checkQueue.
 * The same guarantees across four OS processes are in limitsCluster.test.ts.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import * as Oban from "../src/Oban.ts"
import * as ObanClock from "../src/ObanClock.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"
import { maxOverlap, overlapsWithin, type Span } from "./support/spans.ts"

const prefix = uniquePrefix("limits")

/** Each perform is a row of `spans`: started when it starts, ended when it ends (database clock). */
const Spanned = Worker.make("Spanned", {
  args: Schema.Struct({ n: Schema.Int, accountId: Schema.String, millis: Schema.Int }),
  queue: "limited",
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.spans (job_id, account) VALUES (${job.id}, ${job.args.accountId})`
      yield* Effect.sleep(job.args.millis)
      yield* sql`UPDATE ${sql(prefix)}.spans SET ended_at = clock_timestamp() WHERE job_id = ${job.id}`
    })
})

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS ${sql(prefix)}.spans (
    job_id bigint NOT NULL, account text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)`
  yield* sql`TRUNCATE ${sql(prefix)}.spans, ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers,
    ${sql(prefix)}.oban_queues, ${sql(prefix)}.oban_rate_windows`
})

const spans = Effect.gen(function*() {
  const sql = yield* SqlClient
  return yield* sql<Span>`
    SELECT account, extract(epoch FROM started_at) * 1000 AS start, extract(epoch FROM ended_at) * 1000 AS "end"
    FROM ${sql(prefix)}.spans WHERE ended_at IS NOT NULL`.pipe(
    Effect.map((rows) => rows.map((row) => ({ account: row.account, start: Number(row.start), end: Number(row.end) })))
  )
})

/** The database's clock now, in milliseconds (the clock the spans are stamped with). */
const databaseMillis = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ ms: number }>`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms`
  return Number(row!.ms)
})

const completed = (n: number) => waitFor(`${n} jobs completed`, Effect.map(countByState(prefix), (c) => c["completed"] === n), "60 seconds")

const node = (name: string, queues: Oban.LayerOptions<typeof Spanned>["queues"]) =>
  startNode({ prefix, node: name, queues, workers: [Spanned], pollInterval: "200 millis", pruner: false })

describe("cluster-wide limits", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("a node without limits in its config follows the stored ones: global 3 on a node of local limit 10", () =>
      Effect.gen(function*() {
        yield* reset
        // b has no limits in its config: it follows the row a writes when it starts after it.
        // a only writes them (paused): every job runs on b.
        const b = yield* node("b", { limited: 10 })
        const a = yield* node("a", { limited: { limit: 10, global: 3, paused: true } })
        // The limits hold from the moment a's producer has written them and b has read them.
        yield* producersRegistered(prefix, 2)
        yield* waitFor("b follows", Effect.map(b.oban.checkQueue("limited"), (s) => s.cluster?.global === 3))
        yield* Oban.insertAll(Array.from({ length: 30 }, (_, n) => Spanned.job({ n, accountId: "x", millis: 60 })))
        yield* completed(30)
        const all = yield* spans
        assert.strictEqual(all.length, 30)
        assert.strictEqual(maxOverlap(all), 3)
        const sql = yield* SqlClient
        const nodes = yield* sql<{ node: string }>`
          SELECT DISTINCT attempted_by[1] AS node FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`
        assert.deepStrictEqual(nodes.map((row) => row.node), ["b"])
        const check = yield* b.oban.checkQueue("limited")
        assert.strictEqual(check.cluster?.global, 3)
        assert.strictEqual(check.cluster?.running, 0)
        yield* a.stop
        yield* b.stop
      }), 60_000)

    it.effect("partitioned by accountId, 1 each: one account never overlaps itself; accounts run in parallel", () =>
      Effect.gen(function*() {
        yield* reset
        yield* node("a", { limited: { limit: 10, global: 1, partition: { by: "args", key: "accountId" } } })
        const b = yield* node("b", { limited: 10 })
        yield* producersRegistered(prefix, 2)
        yield* waitFor("b follows", Effect.map(b.oban.checkQueue("limited"), (s) => s.cluster?.partition !== undefined))
        // Account "busy" first in queue order: the others must not wait behind its backlog.
        const busy = Array.from({ length: 8 }, (_, n) => Spanned.job({ n, accountId: "busy", millis: 40 }))
        const others = Array.from({ length: 12 }, (_, n) => Spanned.job({ n, accountId: `acct-${n % 4}`, millis: 40 }))
        yield* Oban.insertAll([...busy, ...others])
        yield* completed(20)
        const all = yield* spans
        for (const account of ["busy", "acct-0", "acct-1", "acct-2", "acct-3"]) {
          assert.strictEqual(maxOverlap(all.filter((span) => span.account === account)), 1, account)
        }
        assert.isTrue(overlapsWithin(all, (a, b) => a.account !== b.account), "different accounts ran at once")
      }), 60_000)

    it.effect("a run-time change reaches every node: global 1, then 4", () =>
      Effect.gen(function*() {
        yield* reset
        const a = yield* node("a", { limited: { limit: 10, global: 1 } })
        const b = yield* node("b", { limited: 10 })
        yield* producersRegistered(prefix, 2)
        yield* waitFor("b follows", Effect.map(b.oban.checkQueue("limited"), (s) => s.cluster?.global === 1))
        yield* Oban.insertAll(Array.from({ length: 40 }, (_, n) => Spanned.job({ n, accountId: "x", millis: 100 })))
        // A few jobs under global 1 first, so that its phase can be checked on its own.
        yield* waitFor("3 jobs done under global 1", Effect.map(countByState(prefix), (c) => (c["completed"] ?? 0) >= 3))
        const changedAt = yield* databaseMillis
        yield* a.oban.setQueueLimits("limited", { global: 4 })
        yield* waitFor("b follows", Effect.map(b.oban.checkQueue("limited"), (s) => s.cluster?.global === 4))
        yield* waitFor("4 running", Effect.map(b.oban.checkQueue("limited"), (s) => s.cluster?.running === 4))
        yield* completed(40)
        const all = yield* spans
        assert.strictEqual(maxOverlap(all.filter((span) => span.start < changedAt)), 1)
        assert.strictEqual(maxOverlap(all), 4)
        // Removing the limits makes the queue unlimited for both: more than 4 run at once.
        yield* b.oban.setQueueLimits("limited", {})
        yield* waitFor("a follows", Effect.map(a.oban.checkQueue("limited"), (s) => s.cluster?.global === undefined))
        const removedAt = yield* databaseMillis
        yield* Oban.insertAll(Array.from({ length: 12 }, (_, n) => Spanned.job({ n: 100 + n, accountId: "y", millis: 300 })))
        yield* completed(52)
        assert.isAbove(maxOverlap((yield* spans).filter((span) => span.start >= removedAt)), 4)
      }), 60_000)

    it.effect("invalid limits are refused before anything is written", () =>
      Effect.gen(function*() {
        yield* reset
        const a = yield* node("a", { limited: 2 })
        const error = yield* a.oban.setQueueLimits("limited", { partition: { by: "worker" } }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidConfigError")
        const bad = yield* a.oban.setQueueLimits("limited", { rate: { limit: 0, period: "1 second" } }).pipe(Effect.flip)
        assert.strictEqual(bad._tag, "InvalidConfigError")
        const sql = yield* SqlClient
        assert.strictEqual((yield* sql`SELECT 1 FROM ${sql(prefix)}.oban_queues`).length, 0)
        const refused = yield* node("c", { limited: { limit: 2, rate: { limit: 5, period: Duration.infinity } } }).pipe(Effect.flip)
        assert.include(String(refused), "rate.period")
      }))

    it.effect("TestClock: rate 2 per minute claims 2, then nothing until the next window", () =>
      Effect.gen(function*() {
        yield* reset
        // A whole minute from the epoch: the window starts exactly here.
        yield* TestClock.setTime(Date.UTC(2100, 0, 1))
        const a = yield* startNode({
          prefix,
          node: "virtual",
          queues: { limited: { limit: 10, rate: { limit: 2, period: "1 minute" } } },
          workers: [Spanned],
          pollInterval: "1 second",
          pruner: false
        })
        yield* Oban.insertAll(Array.from({ length: 5 }, (_, n) => Spanned.job({ n, accountId: "x", millis: 0 })))
        const done = (n: number) =>
          Effect.gen(function*() {
            for (let i = 0; i < 1_000; i++) {
              if ((yield* countByState(prefix))["completed"] === n) return
              yield* TestClock.withLive(Effect.sleep("10 millis"))
            }
            return yield* Effect.die(new Error(`never ${n} completed`))
          })
        yield* done(2)
        const early = yield* a.oban.checkQueue("limited")
        assert.deepStrictEqual(early.cluster?.rate, {
          limit: 2,
          periodMillis: 60_000,
          windowStart: new Date(Date.UTC(2100, 0, 1)),
          used: 2,
          left: 0
        })
        // 59 virtual seconds in steps of 1 s (polls included): still 2.
        for (let second = 0; second < 59; second++) {
          yield* TestClock.adjust("1 second")
          yield* TestClock.withLive(Effect.sleep("5 millis"))
        }
        assert.strictEqual((yield* countByState(prefix))["completed"], 2)
        yield* TestClock.adjust("1 second")
        yield* done(4)
        yield* TestClock.adjust("1 minute")
        yield* done(5)
        const sql = yield* SqlClient
        const windows = yield* sql<{ minute: number; n: number }>`
          SELECT (extract(epoch FROM attempted_at)::bigint / 60)::int AS minute, count(*)::int AS n
          FROM ${sql(prefix)}.oban_jobs_all GROUP BY 1 ORDER BY 1`
        assert.deepStrictEqual(windows.map((row) => row.n), [2, 2, 1])
        yield* a.stop
      }).pipe(Effect.provide(Layer.merge(TestClock.layer(), ObanClock.layerEffect))), 60_000)
  })
})
