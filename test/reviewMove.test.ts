/**
 * Review of migration 0016 (completed jobs move to `oban_jobs_finished`):
 * races between the move, its way back (`restoreFinished`) and the other
 * statements on a job, and the reads that must see both tables.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { whereIs as whereIsIn } from "./support/finished.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("review_move")
const node = "review-move-node"

const Work = Worker.make("ReviewMoveWork", {
  args: Schema.Struct({ n: Schema.Number }),
  queue: "work",
  perform: () => Effect.void
})

const whereIs = (id: number) => whereIsIn(prefix, id)

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_workflow_deps,
    ${sql(prefix)}.oban_workflow_waits`
})

/** Claims the jobs and acks them completed, as a node does: they move to the finished table. */
const complete = (ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const claimed = yield* claimJobs(sql, prefix, yield* now(sql), ids, node)
    const result = yield* ackJobs(sql, prefix, yield* now(sql), node, claimed.map((job) => ackOf(job, "completed")))
    assert.strictEqual(result.written.length, ids.length)
    return claimed
  })

/** Waits until some statement on this schema waits for a row lock. */
const someoneWaits = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* waitFor(
    "a statement waits for a row lock",
    Effect.map(
      sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`} AND pid <> pg_backend_pid()`,
      (rows) => rows[0]!.n > 0
    ),
    "5 seconds"
  )
})

layer(testLayer(prefix, { maxConnections: 8 }), { excludeTestServices: true })("review of the finished jobs table", (it) => {
  it.effect("deleteJob of a finished job that a concurrent retry moves back deletes it (the retry commits first)", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const job = yield* Oban.insert(Work.job({ n: 1 }))
      yield* complete([job.id])
      assert.strictEqual(yield* whereIs(job.id), "finished")

      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const retry = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        const retried = yield* Oban.retryJob(job.id)
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
        return retried
      })))
      yield* Deferred.await(holding)
      const deleting = yield* Effect.forkChild(Oban.deleteJob(job.id))
      yield* someoneWaits
      yield* Deferred.succeed(release, undefined)
      const retried = yield* Fiber.join(retry)
      assert.strictEqual(Option.getOrThrow(retried).state, "available")
      // The delete ran after the retry committed: the job was available, not executing, so it goes.
      assert.isTrue(yield* Fiber.join(deleting), "the delete reports the job deleted")
      assert.strictEqual(yield* whereIs(job.id), "none", "the job is gone, not left available")
    }))

  it.effect("an ack that matches no row reports a moved job as completed, not as gone", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const job = yield* Oban.insert(Work.job({ n: 2 }))
      const [claimed] = yield* complete([job.id])
      assert.strictEqual(yield* whereIs(job.id), "finished")
      // The same outcome again (a re-sent batch after a lost reply): it changes nothing.
      const again = yield* ackJobs(sql, prefix, yield* now(sql), node, [ackOf(claimed!, "completed")])
      assert.deepStrictEqual(again.written, [])
      assert.deepStrictEqual(
        again.stale.map((stale) => [stale.id, stale.state, stale.currentClaim]),
        [[job.id, "completed", claimed!.attemptedBy?.[2] ?? null]]
      )
    }))

  it.effect("estimated counts keep the completions of a queue that is no common value of the finished table", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      // 200 queues of 20 completed jobs each: too many, and too even, for the planner's list of common queues.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, completed_at)
        SELECT 'completed', 'q' || (n % 200), 'ReviewMoveWork', now() FROM generate_series(0, 3999) AS n`
      yield* sql`WITH moved AS (DELETE FROM ${sql(prefix)}.oban_jobs RETURNING *)
        INSERT INTO ${sql(prefix)}.oban_jobs_finished SELECT * FROM moved`
      // One queue has a live job too.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker) VALUES ('q7', 'ReviewMoveWork')`
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs_finished`

      const exact = yield* Jobs.counts({ exact: true })
      const q7 = (counts: Jobs.Counts) => counts.queues.find((queue) => queue.queue === "q7")?.states
      assert.deepStrictEqual([q7(exact)?.completed, q7(exact)?.available], [20, 1])
      const estimated = yield* Jobs.counts({ exactBelow: 0 })
      assert.includeMembers([...estimated.estimated], ["completed"])
      assert.strictEqual(q7(estimated)?.available, 1)
      // As when the completions were in oban_jobs: the queue's share of the table, 20 rows.
      assert.approximately(q7(estimated)?.completed ?? 0, 20, 2)
    }))
})
