/**
 * Outcomes that find their row no longer executing: a job claimed ahead of
 * its start counts its attempt only in its outcome, so when a cancel
 * finished its row while it ran, the outcome still counts that attempt; and
 * doing so never makes the node's outcomes wait for a lock. This release's
 * cancel of a running job only requests it (the row stays executing until
 * the outcome), but a node of an earlier release still finishes the row at
 * once during a rolling deploy: those rows are made here by SQL.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { answeredByLiveProducer, holdRow, jobRow } from "./support/node.ts"

const prefix = uniquePrefix("stale_acks")
const node = "stale-node"
const Noop = Worker.make("Noop", { args: Schema.Struct({}), queue: "stale", perform: () => Effect.void })

/** Two jobs executing on `node`, the first as claimed ahead (no attempt counted), then cancelled. */
const claimedAhead = Effect.gen(function*() {
  const sql = yield* SqlClient
  const inserted = yield* Oban.insertAll([Noop.job({}), Noop.job({})])
  const [ahead, other] = yield* claimJobs(sql, prefix, yield* now(sql), inserted.map((job) => job.id), node)
  yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 0, attempted_by = attempted_by || 'ahead'::text
             WHERE id = ${ahead!.id}`
  return { ahead: ahead!, other: other! }
})

/** `claimedAhead`, the first then cancelled as a node of an earlier release did: its row finished at once. */
const cancelledAhead = Effect.gen(function*() {
  const sql = yield* SqlClient
  const jobs = yield* claimedAhead
  yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${jobs.ahead.id}`
  return jobs
})

layer(testLayer(prefix), { excludeTestServices: true })("stale acks", (it) => {
  it.effect("the outcome of a job claimed ahead and cancelled while it ran counts its attempt", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { ahead, other } = yield* cancelledAhead
      const result = yield* ackJobs(sql, prefix, yield* now(sql), node, [
        ackOf(ahead, "cancelled", { attempt: 1 }),
        ackOf(other, "completed")
      ])
      assert.deepStrictEqual(result.written, [other.id])
      assert.deepStrictEqual(result.stale.map((stale) => [stale.id, stale.state]), [[ahead.id, "cancelled"]])
      const row = yield* jobRow(prefix, ahead.id)
      assert.deepStrictEqual([row.state, row.attempt], ["cancelled", 1])
    }))

  it.effect("with this release's cancel the outcome finds its row executing: it is written, and counts its attempt", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { ahead, other } = yield* claimedAhead
      yield* answeredByLiveProducer(prefix, [ahead.id])
      const cancelled = yield* Oban.cancelJob(ahead.id)
      assert.deepStrictEqual(
        [cancelled._tag, cancelled._tag === "Some" && cancelled.value.state, cancelled._tag === "Some" && cancelled.value.cancelRequestedAt !== null],
        ["Some", "executing", true]
      )
      const result = yield* ackJobs(sql, prefix, yield* now(sql), node, [
        ackOf(ahead, "cancelled", { attempt: 1 }),
        ackOf(other, "completed")
      ])
      assert.deepStrictEqual([...result.written].sort(), [ahead.id, other.id].sort())
      assert.deepStrictEqual(result.stale, [])
      const row = yield* jobRow(prefix, ahead.id)
      assert.deepStrictEqual([row.state, row.attempt], ["cancelled", 1])
    }))

  it.effect("a row another transaction holds is passed over: the outcome is written at once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { ahead } = yield* cancelledAhead
      // Another transaction holds the cancelled row for 5 s (a retryJob or deleteJob of it, say).
      const { release } = yield* holdRow(prefix, ahead.id)
      const holder = yield* Effect.forkChild(Effect.andThen(Effect.sleep("5 seconds"), release))
      const started = Date.now()
      const result = yield* ackJobs(sql, prefix, yield* now(sql), node, [ackOf(ahead, "cancelled", { attempt: 1 })])
      const took = Date.now() - started
      yield* Fiber.join(holder)
      assert.deepStrictEqual(result.written, [])
      // The node's outcomes are written one statement at a time: one that waited for this lock would hold
      // back every other.
      assert.isBelow(took, 2_500, `the ack took ${took} ms`)
      const row = yield* jobRow(prefix, ahead.id)
      assert.deepStrictEqual([row.state, row.attempt], ["cancelled", 0])
    }).pipe(Effect.scoped))

  it.effect("a give-back (shutdown) or an outcome under another claim counts nothing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { ahead } = yield* cancelledAhead
      yield* ackJobs(sql, prefix, yield* now(sql), node, [
        ackOf(ahead, "available", { attempt: 1, give_back: true, delay_ms: 0 })
      ])
      yield* ackJobs(sql, prefix, yield* now(sql), node, [ackOf(ahead, "cancelled", { attempt: 1, claim: "other" })])
      const row = yield* jobRow(prefix, ahead.id)
      assert.deepStrictEqual([row.state, row.attempt], ["cancelled", 0])
    }))
})
