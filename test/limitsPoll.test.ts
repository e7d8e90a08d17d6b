/**
 * When a producer held back by its queue's limits claims again on its own
 * (the capacity poll), against real PostgreSQL on TestClock: the latest
 * claim the limits cut short sets the time, so a node whose own jobs keep
 * finishing, each followed by a claim, adds no polls in between; a claim
 * that nothing held back cancels the poll.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { statementNow } from "../src/ObanClock.ts"
import * as QueueLimiter from "../src/internal/queueLimiter.ts"
import type { QueueLimits } from "../src/internal/queueLimits.ts"
import { storeQueueLimits } from "../src/internal/sql/queues.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("limits_poll")
const queue = "limited"
const globalOne: QueueLimits = { global: 1, partition: undefined, rate: undefined }

const setUp = (jobs: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_queues, ${sql(prefix)}.oban_rate_windows`
    yield* storeQueueLimits(sql, prefix, queue, globalOne)
    yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, args)
               SELECT ${queue}, 'W', '{}'::jsonb FROM generate_series(1, ${jobs})`
  })

/** A limiter for the queue that counts the times it wakes its producer, and one claim through it. */
const limiterWithWakes = Effect.gen(function*() {
  const sql = yield* SqlClient
  let wakes = 0
  const limiter = yield* QueueLimiter.make({
    sql,
    prefix,
    queue,
    configured: globalOne,
    wake: Effect.sync(() => {
      wakes++
    })
  })
  const claim = Effect.flatMap(statementNow(sql), (now) =>
    limiter.fetch(now, { demand: 10, node: "poll", producer: "p", claim: crypto.randomUUID(), finished: [] }))
  return { claim, wakes: () => wakes }
})

const poll = QueueLimiter.capacityPollMillis

describe("the capacity poll of a limited queue", () => {
  layer(testLayer(prefix))((it) => {
    it.effect("a later claim cut short moves the poll to a full interval after it", () =>
      Effect.gen(function*() {
        yield* setUp(3)
        const { claim, wakes } = yield* limiterWithWakes
        const first = yield* claim
        assert.strictEqual(first.jobs.length, 1)
        assert.isTrue(first.backlog)
        yield* TestClock.adjust(poll * 0.6)
        // The slot is still taken: nothing, and jobs are left.
        assert.strictEqual((yield* claim).jobs.length, 0)
        // One interval after the first claim: the second one saw the queue since.
        yield* TestClock.adjust(poll * 0.4)
        assert.strictEqual(wakes(), 0)
        // One interval after the second claim.
        yield* TestClock.adjust(poll * 0.6)
        assert.strictEqual(wakes(), 1)
        // Nothing is due any more.
        yield* TestClock.adjust(poll * 3)
        assert.strictEqual(wakes(), 1)
      }))

    it.effect("a claim that nothing held back cancels the poll", () =>
      Effect.gen(function*() {
        yield* setUp(2)
        const { claim, wakes } = yield* limiterWithWakes
        assert.strictEqual((yield* claim).jobs.length, 1)
        yield* TestClock.adjust(poll * 0.5)
        // The waiting job went elsewhere: no jobs are left to claim.
        const sql = yield* SqlClient
        yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE state = 'available'`
        assert.isFalse((yield* claim).backlog)
        yield* TestClock.adjust(poll * 3)
        assert.strictEqual(wakes(), 0)
      }))

    it.effect("a blocked producer still claims again every interval while nothing else makes it claim", () =>
      Effect.gen(function*() {
        yield* setUp(3)
        const { claim, wakes } = yield* limiterWithWakes
        yield* claim
        for (let n = 1; n <= 3; n++) {
          yield* TestClock.adjust(poll)
          assert.strictEqual(wakes(), n)
          // The woken producer claims, is cut short again, and the poll is set anew.
          assert.strictEqual((yield* claim).jobs.length, 0)
        }
      }))
  })
})
