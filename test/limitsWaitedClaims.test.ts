/**
 * Limited claims that waited for the queue's row lock behind another claim,
 * against real PostgreSQL. The claim is one statement: its snapshot dates
 * from before the wait, while what the claim it waited for did is visible
 * only to the functions of migration 13 and to its "now", read after the
 * lock. These tests pin what such a claim may and must take.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { statementNow } from "../src/ObanClock.ts"
import * as QueueLimiter from "../src/internal/queueLimiter.ts"
import type { QueueLimits } from "../src/internal/queueLimits.ts"
import { fetchLimited } from "../src/internal/sql/limitedClaims.ts"
import { storeQueueLimits } from "../src/internal/sql/queues.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("limits_waited")
const queue = "limited"

const reset = (limits: QueueLimits) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_queues, ${sql(prefix)}.oban_rate_windows`
    yield* storeQueueLimits(sql, prefix, queue, limits)
  })

/** `count` available jobs of the queue for `account`. */
const insertJobs = (account: string, count: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, args)
        SELECT ${queue}, 'W', jsonb_build_object('account', ${account}::text) FROM generate_series(1, ${count})`)

/** One limited claim as a producer makes it (the producer's "now", the limits it believes in force). */
const claim = (limits: QueueLimits, demand = 10) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* fetchLimited(sql, prefix, yield* statementNow(sql), {
      queue,
      demand,
      node: "waited",
      producer: crypto.randomUUID(),
      claim: crypto.randomUUID(),
      finished: [],
      expected: limits
    })
  })

/**
 * Runs `first` in a transaction that holds the queue's row lock (as a claim
 * in progress does), starts `second` while it holds it, and lets `first`
 * commit once `second` waits for the lock (after `beforeFirst`). Returns
 * what `second` claimed.
 */
const secondWaitsForFirst = <A, E, R>(
  first: Effect.Effect<unknown, E, R>,
  second: Effect.Effect<A, E, R>,
  beforeFirst: Effect.Effect<void> = Effect.void
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const locked = yield* Deferred.make<void>()
    const go = yield* Deferred.make<void>()
    const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT 1 FROM ${sql(prefix)}.oban_queues WHERE name = ${queue} FOR UPDATE`
      yield* Deferred.succeed(locked, undefined)
      yield* Deferred.await(go)
      yield* first
    })))
    yield* Deferred.await(locked)
    const waiting = yield* Effect.forkChild(second)
    yield* waitFor(
      "the second claim waits for the queue's lock",
      Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                           WHERE wait_event_type = 'Lock' AND datname = current_database()
                             AND query LIKE ${`%"${prefix}".oban_queues%`}`,
        (rows) => rows[0]!.n === 1
      )
    )
    yield* beforeFirst
    yield* Deferred.succeed(go, undefined)
    yield* Fiber.join(holder)
    return yield* Fiber.join(waiting)
  })

const byAccount: QueueLimits["partition"] = { by: "args", key: "account" }

/**
 * A rate of 5 jobs per account per year: windows are aligned to the epoch, and an hour's could end in
 * the middle of a test (once in a few thousand runs); a year's does not.
 */
const fivePerAccountPerYear: QueueLimits = {
  global: undefined,
  partition: undefined,
  rate: { limit: 5, periodMillis: 365 * 86_400_000, partition: byAccount }
}

describe("limited claims that waited for the queue's lock", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("a claim that waited past the end of a rate window does not take that window's quota again", () =>
      Effect.gen(function*() {
        // Windows of 3 s: the first claim and the one that waits must start in the same window, which
        // a loaded machine's stall of a second or two would otherwise carry past its end.
        const period = 3_000
        const limits: QueueLimits = { global: undefined, partition: undefined, rate: { limit: 2, periodMillis: period, partition: undefined } }
        yield* reset(limits)
        yield* insertJobs("x", 10)
        const sql = yield* SqlClient
        /** Milliseconds from the server's clock to the next window. */
        const untilNextWindow = Effect.map(
          sql<{ ms: number }>`SELECT (${period}::float8 - (extract(epoch FROM clock_timestamp()) * 1000)::numeric % ${period})::float8 AS ms`,
          (rows) => rows[0]!.ms
        )
        // Start early in a window: the first claim and the one that waits both start in it.
        const left = yield* untilNextWindow
        if (left < 2_500) yield* Effect.sleep(left + 20)
        // The window's quota is used up.
        assert.strictEqual((yield* claim(limits)).jobs.length, 2)
        // The waiting claim starts in this window; the claim ahead of it runs in the next one.
        const waited = yield* secondWaitsForFirst(
          claim(limits),
          claim(limits),
          Effect.flatMap(untilNextWindow, (ms) => Effect.sleep(ms + 50)).pipe(Effect.orDie)
        )
        const perWindow = yield* sql<{ window: number; n: number }>`
          SELECT floor(extract(epoch FROM attempted_at) * 1000 / ${period})::int AS window, count(*)::int AS n
          FROM ${sql(prefix)}.oban_jobs_all WHERE attempted_at IS NOT NULL GROUP BY 1 ORDER BY 1`
        // At most 2 jobs start in any window (by the time the claims stamped on them).
        assert.deepStrictEqual(perWindow.map((row) => row.n), [2, 2], JSON.stringify({ perWindow, waited: waited.jobs.length }))
      }), 30_000)

    it.effect("a claim that waited takes what is left of a partition's rate quota", () =>
      Effect.gen(function*() {
        const limits = fivePerAccountPerYear
        yield* reset(limits)
        yield* insertJobs("a", 8)
        // The claim ahead takes 3 of account a's 5 for the window; 2 are left.
        const waited = yield* secondWaitsForFirst(claim(limits, 3), claim(limits))
        assert.strictEqual(waited.jobs.length, 2, JSON.stringify({ missed: waited.missed, next: waited.nextWindowMillis }))
      }))

    it.effect("a rate-limited producer whose claim waited gets what is left of the window soon, not at the next window", () =>
      Effect.gen(function*() {
        const limits = fivePerAccountPerYear
        yield* reset(limits)
        yield* insertJobs("a", 8)
        const sql = yield* SqlClient
        const woken = yield* Deferred.make<void>()
        const limiter = yield* QueueLimiter.make({
          sql,
          prefix,
          queue,
          configured: limits,
          wake: Effect.asVoid(Deferred.succeed(woken, undefined))
        })
        const fetch = Effect.flatMap(statementNow(sql), (now) =>
          limiter.fetch(now, { demand: 10, node: "waited", producer: "p", claim: crypto.randomUUID(), finished: [] }))
        // The claim ahead takes 3 of account a's 5 for the window; 2 are left.
        const waited = yield* secondWaitsForFirst(claim(limits, 3), fetch)
        let claimed = waited.jobs.length
        if (claimed < 2 && !QueueLimiter.claimsAgainAtOnce(waited)) {
          // Left behind: the limiter must wake the producer well before the window ends (it
          // retries at the capacity poll, 100 ms).
          yield* Deferred.await(woken).pipe(Effect.timeout("20 seconds"))
          claimed += (yield* fetch).jobs.length
        } else if (claimed < 2) claimed += (yield* fetch).jobs.length
        assert.strictEqual(claimed, 2)
      }))

    it.effect("a claim that waited counts the jobs the claim it waited for took: no more than the global limit", () =>
      Effect.gen(function*() {
        const limits: QueueLimits = { global: 2, partition: undefined, rate: undefined }
        yield* reset(limits)
        yield* insertJobs("a", 4)
        // The claim ahead takes both slots; the one that waited, with a snapshot from before, takes none.
        const waited = yield* secondWaitsForFirst(claim(limits, 2), claim(limits))
        assert.strictEqual(waited.jobs.length, 0)
        const sql = yield* SqlClient
        const [row] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing'`
        assert.strictEqual(row!.n, 2)
      }))

    it.effect("a claim that waited takes what is left of a partition's global limit", () =>
      Effect.gen(function*() {
        const limits: QueueLimits = { global: 3, partition: byAccount, rate: undefined }
        yield* reset(limits)
        yield* insertJobs("a", 8)
        // The claim ahead runs 2 of account a's 3; 1 is left.
        const waited = yield* secondWaitsForFirst(claim(limits, 2), claim(limits))
        assert.strictEqual(waited.jobs.length, 1, JSON.stringify({ missed: waited.missed }))
      }))

    for (const [kind, limits] of [
      ["a global limit", { global: 5, partition: undefined, rate: undefined }],
      ["a partitioned global limit", { global: 5, partition: byAccount, rate: undefined }]
    ] as const) {
      it.effect(`a claim that waited while its producer's row was marked dead takes nothing (${kind})`, () =>
        Effect.gen(function*() {
          yield* reset(limits)
          yield* insertJobs("a", 4)
          const sql = yield* SqlClient
          const producer = crypto.randomUUID()
          yield* sql`DELETE FROM ${sql(prefix)}.oban_producers`
          yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit") VALUES (${producer}::uuid, 'waited', ${queue}, 5)`
          // The rescue marks the row dead (a stalled node) while the claim, sent before, waits for the
          // queue's lock: its snapshot still shows the row live.
          const rescue = sql`UPDATE ${sql(prefix)}.oban_producers SET dead_at = now() WHERE id = ${producer}::uuid`
          const waited = yield* secondWaitsForFirst(
            rescue,
            Effect.flatMap(statementNow(sql), (now) =>
              fetchLimited(sql, prefix, now, {
                queue,
                demand: 4,
                node: "waited",
                producer,
                claim: crypto.randomUUID(),
                finished: [],
                expected: limits,
                liveProducer: true
              }))
          )
          assert.strictEqual(waited.jobs.length, 0)
          const [row] = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing'`
          assert.strictEqual(row!.n, 0)
        }))
    }
  })
})
