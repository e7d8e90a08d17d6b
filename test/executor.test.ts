/**
 * The executor on its own, with jobs claimed in the database: a job whose
 * start was deferred to a later turn of the event loop still ends, is acked
 * and reported done when it is cancelled before it starts; and a job started
 * again while an earlier run of it is still here (claimed again after a
 * rescue) keeps the later run tracked.
 */
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Executor from "../src/Executor.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import type { Job } from "../src/Job.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { busyFor, jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("executor")
const node = "executor-node"

/** Holds the CPU for `spin` ms, then sleeps `sleep` ms. */
const Work = Worker.make("Work", {
  args: Schema.Struct({ spin: Schema.Number, sleep: Schema.Number }),
  queue: "executor",
  perform: (job) =>
    Effect.andThen(Effect.sync(() => busyFor(job.args.spin)), Effect.sleep(job.args.sleep))
})

const claim = (jobs: ReadonlyArray<Job>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* claimJobs(sql, prefix, yield* now(sql), jobs.map((job) => job.id), node)
  })

const startExecutor = Effect.flatMap(SqlClient, (sql) =>
  Executor.make({
    sql,
    prefix,
    node,
    workers: [Work as unknown as Executor.RunnableWorker<never>],
    shutdownGracePeriod: Duration.seconds(10)
  }))

layer(testLayer(prefix), { excludeTestServices: true })("executor", (it) => {
  it.effect("a job cancelled while its start waits for the next turn ends cancelled, acked, and done", () =>
    Effect.gen(function*() {
      const inserted = yield* Oban.insertAll([
        Work.job({ spin: 20, sleep: 0 }),
        Work.job({ spin: 0, sleep: 0 }),
        Work.job({ spin: 0, sleep: 0 })
      ])
      const jobs = yield* claim(inserted)
      const executor = yield* startExecutor
      let done = 0
      // The first job holds the CPU past the synchronous budget: the next two start on a later turn.
      yield* Effect.sync(() => executor.startUnsafe(jobs, () => done++))
      assert.isTrue(yield* executor.cancel(jobs[1]!.id))
      yield* waitFor("every attempt done", Effect.sync(() => done === 3), "10 seconds")
      assert.strictEqual(yield* executor.running, 0)
      yield* waitFor(
        "the cancelled job's outcome written",
        Effect.map(jobRow(prefix, jobs[1]!.id), (row) => row.state === "cancelled"),
        "10 seconds"
      )
      // The two outcomes may go out in separate writes of the acker: wait for the third's too.
      yield* waitFor(
        "the third job's outcome written",
        Effect.map(jobRow(prefix, jobs[2]!.id), (row) => row.state !== "executing"),
        "10 seconds"
      )
      assert.strictEqual((yield* jobRow(prefix, jobs[2]!.id)).state, "completed")
    }).pipe(Effect.scoped))

  it.effect("a job started again while its earlier run is still here: the later run stays tracked", () =>
    Effect.gen(function*() {
      // The later run is cancelled below; it must still run when the test looks, however late that is.
      const [job] = yield* Oban.insertAll([Work.job({ spin: 0, sleep: 10_000 })])
      const [first] = yield* claim([job!])
      const executor = yield* startExecutor
      let done = 0
      yield* Effect.sync(() => executor.startUnsafe([first!], () => done++))
      // The same job again, as if claimed anew after a rescue (another claim).
      const again = { ...first!, attemptedBy: [node, "p", "another-claim"] }
      yield* Effect.sync(() => executor.startUnsafe([again], () => done++))
      // The earlier run was interrupted; the later one still runs, and is the one tracked.
      yield* waitFor("the earlier run done", Effect.sync(() => done === 1), "5 seconds")
      assert.strictEqual(yield* executor.running, 1)
      assert.isTrue((yield* executor.owned).has(first!.id))
      assert.isTrue(yield* executor.cancel(first!.id))
      yield* waitFor("the later run done", Effect.sync(() => done === 2), "5 seconds")
      assert.strictEqual(yield* executor.running, 0)
    }).pipe(Effect.scoped))
})
