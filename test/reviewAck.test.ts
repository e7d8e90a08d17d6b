/**
 * Review findings on the ack short path and the per-series metrics: each test
 * states what must hold and fails while the finding stands.
 */
import { assert, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Chain from "../src/Chain.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { claimJobs, fetchJobs } from "../src/internal/sql/claims.ts"
import { ackJobs, type AckRow } from "../src/internal/sql/acks.ts"
import { cancelWorkflow } from "../src/internal/sql/workflowOps.ts"
import { recordOutcomeUnsafe } from "../src/internal/telemetry.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("reviewack")
const node = "review-node"
const Noop = Worker.make("ReviewNoop", { args: Schema.Struct({}), queue: "review", perform: () => Effect.void })

const write = (acks: ReadonlyArray<AckRow>, deleteCompleted: boolean) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* ackJobs(sql, prefix, yield* now(sql), node, acks, { deleteCompleted })
  })

layer(testLayer(prefix, { maxConnections: 8 }), { excludeTestServices: true })("ack short path (review)", (it) => {
  it.effect("a completed job that was claimed ahead records the attempt it ran, with or without a result", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})])
      // One job starts now, two are claimed ahead: their rows still say attempt 0, they run as attempt 1.
      const fetched = yield* fetchJobs(sql, prefix, yield* now(sql), {
        queue: "review",
        demand: 3,
        startNow: 1,
        node,
        producer: "p",
        claim: "review-claim"
      })
      const ahead = fetched.jobs.filter((job) => fetched.ahead.has(job.id))
      assert.strictEqual(ahead.length, 2)
      assert.deepStrictEqual(ahead.map((job) => job.attempt), [1, 1])
      // Bare completion (short path) and a completion with a result (general path).
      yield* write([ackOf(ahead[0]!, "completed"), ackOf(ahead[1]!, "completed", { result: { ok: true } })], false)
      const bare = yield* jobRow(prefix, ahead[0]!.id)
      const full = yield* jobRow(prefix, ahead[1]!.id)
      assert.deepStrictEqual([full.state, full.attempt], ["completed", 1])
      assert.deepStrictEqual([bare.state, bare.attempt], ["completed", 1], "the short path drops the attempt of a job claimed ahead")
    }))

  it.effect("with deleteCompleted, a completion racing a cancel request ends the job cancelled, never stranded executing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const steps = yield* Chain.insert("review-race", [Noop.job({}), Noop.job({})])
      const [step] = yield* claimJobs(sql, prefix, yield* now(sql), [steps[0]!.id], node)
      assert.strictEqual(step!.state, "executing")

      // The cancel request holds the row while the ack's statement starts, then commits.
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const cancel = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* Oban.cancelJob(step!.id)
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      const ack = yield* Effect.forkChild(write([ackOf(step!, "completed")], true))
      yield* waitFor(
        "the ack waits for the cancel's row lock",
        Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}`,
          (rows) => rows[0]!.n > 0
        ),
        "5 seconds"
      )
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(cancel)
      const result = yield* Fiber.join(ack)

      const row = yield* jobRow(prefix, step!.id)
      assert.strictEqual(row.state, "cancelled", `the acked job was left ${row.state}; stale: ${JSON.stringify(result.stale)}`)
      assert.deepStrictEqual(result.written, [step!.id])
    }))

  it.effect("an ack mixing a bare completion and another outcome does not deadlock with a workflow cancel", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const inserted = yield* Oban.insertAll([Noop.job({}), Noop.job({})])
      const ids = inserted.map((job) => job.id)
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET workflow_id = 'review-deadlock' WHERE id IN ${sql.in(ids)}`
      const [low, high] = yield* claimJobs(sql, prefix, yield* now(sql), ids, node)
      const waiting = (n: number) =>
        waitFor(
          `${n} statement(s) waiting for a row lock`,
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}`,
            (rows) => rows[0]!.n >= n
          ),
          "5 seconds"
        )
      // Another transaction holds the lower job for a moment (an insert adding a dependent to it, say).
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${low!.id} FOR SHARE`
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      // The workflow cancel locks in id order: it waits at the lower job.
      const cancel = yield* Effect.forkChild(Effect.exit(
        Effect.flatMap(now(sql), (time) => cancelWorkflow(sql, prefix, time, "review-deadlock"))
      ))
      yield* waiting(1)
      // One ack statement: the failure (higher id, general path, locked first) and the bare completion
      // (lower id, short path, locked second). With a result, both take the general path, locked in id
      // order, and this test passes.
      const ack = yield* Effect.forkChild(Effect.exit(
        write([ackOf(low!, "completed"), ackOf(high!, "retryable", { delay_ms: 60_000 })], false)
      ))
      yield* waiting(2)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      const cancelled = yield* Fiber.join(cancel)
      const acked = yield* Fiber.join(ack)
      assert.isTrue(Exit.isSuccess(cancelled), `the workflow cancel failed: ${String(Exit.isFailure(cancelled) ? cancelled.cause : "")}`)
      assert.isTrue(Exit.isSuccess(acked), `the ack failed: ${String(Exit.isFailure(acked) ? acked.cause : "")}`)
    }), 20_000)

  it.effect("per-series metrics keep their queue, worker and outcome when the context carries attributes of those names", () =>
    Effect.sync(() => {
      const registry: Metric.MetricRegistry = new Map()
      const context = Context.make(Metric.MetricRegistry, registry).pipe(
        Context.add(Metric.CurrentMetricAttributes, { worker: "pod-7" })
      )
      recordOutcomeUnsafe({ queue: "q", worker: "A" }, "completed", 1, context as Context.Context<never>)
      recordOutcomeUnsafe({ queue: "q", worker: "B" }, "completed", 1, context as Context.Context<never>)
      const totals = Metric.snapshotUnsafe(context as Context.Context<never>).filter((m) => m.id === "oban_jobs_total")
      // Before the change (Metric.withAttributes) the job's own attributes won: two series, A and B.
      assert.deepStrictEqual(totals.map((m) => m.attributes?.["worker"]).sort(), ["A", "B"])
    }))
})
