/**
 * Migration 0016: the ack moves a completed job to `oban_jobs_finished`, the
 * jobs that must stay in `oban_jobs` stay, and everything that reads or
 * changes finished jobs (getJob, list, counts, retry, delete, the bulk
 * actions, the pruner, a cancel racing the ack) finds them in either table.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Chain from "../src/Chain.ts"
import * as Config from "../src/Config.ts"
import * as Jobs from "../src/Jobs.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import * as Pruner from "../src/Pruner.ts"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { whereIs as whereIsIn } from "./support/finished.ts"
import { dropSchemaOnClose, testLayer, uniquePrefix } from "./support/db.ts"
import { answeredByLiveProducer, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("finished_jobs")
const unfinished = ["available", "scheduled", "executing", "retryable"] as const
// Keys that hold for good: under the default period (60 s) a key is of its minute, so a test that
// crossed a minute boundary between two inserts would see two keys and no conflict.
const keptFor = { keys: ["n"], period: "forever" } as const
const freedFor = { ...keptFor, states: unfinished }

const runs = new Map<number, number>()
const Work = Worker.make("FinishedWork", {
  args: Schema.Struct({ n: Schema.Number }),
  queue: "work",
  perform: (job) => Effect.sync(() => void runs.set(job.id, (runs.get(job.id) ?? 0) + 1))
})

const Ends = Worker.make("FinishedEnds", {
  args: Schema.Struct({ end: Schema.Literals(["discard", "cancel", "fail", "result"]) }),
  result: Schema.Struct({ ok: Schema.Boolean }),
  queue: "ends",
  maxAttempts: 2,
  perform: (job): Effect.Effect<{ readonly ok: boolean }, Worker.Discard | Worker.Cancel | string> =>
    job.args.end === "discard"
      ? Worker.discard("no use")
      : job.args.end === "cancel"
      ? Worker.cancel("not wanted")
      : job.args.end === "fail"
      ? Effect.fail("try again")
      : Effect.succeed({ ok: true })
})

const whereIs = (id: number) => whereIsIn(prefix, id)

const stateOf = (id: number) => Effect.map(Oban.getJob(id), (job) => Option.getOrUndefined(job)?.state)

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_workflow_deps,
    ${sql(prefix)}.oban_workflow_waits`
  runs.clear()
})

const completedAll = (ids: ReadonlyArray<number>) =>
  waitFor(
    `jobs ${ids.join(", ")} completed`,
    Effect.map(Effect.forEach(ids, stateOf), (states) => states.every((state) => state === "completed")),
    "15 seconds"
  )

layer(testLayer(prefix, { maxConnections: 8 }), { excludeTestServices: true })("finished jobs table", (it) => {
  it.effect("a completed job moves to oban_jobs_finished; getJob, list and counts still see it", () =>
    Effect.gen(function*() {
      yield* truncate
      const jobs = yield* Oban.insertAll([Work.job({ n: 1 }), Work.job({ n: 2 }), Work.job({ n: 3 })])
      const ids = jobs.map((job) => job.id)
      yield* startNode({ prefix, queues: { work: 5 }, workers: [Work] })
      yield* completedAll(ids)
      for (const id of ids) {
        assert.strictEqual(yield* whereIs(id), "finished")
        const job = Option.getOrThrow(yield* Oban.getJob(id))
        assert.deepStrictEqual([job.state, job.attempt, job.queue, job.worker], ["completed", 1, "work", "FinishedWork"])
        assert.isDefined(job.completedAt)
        assert.isDefined(job.attemptedBy)
      }
      const page = yield* Jobs.list({ filter: { states: ["completed"], queues: ["work"] } })
      assert.deepStrictEqual(page.jobs.map((job) => job.id).toSorted((a, b) => a - b), ids)
      const counts = yield* Jobs.counts({ exact: true })
      assert.strictEqual(counts.queues.find((queue) => queue.queue === "work")?.states.completed, 3)
      const estimated = yield* Jobs.counts({ exactBelow: 0 })
      assert.isAtLeast(estimated.queues.find((queue) => queue.queue === "work")?.states.available ?? -1, 0)
    }).pipe(Effect.scoped))

  it.effect("discarded, cancelled and result-carrying outcomes move too, with what they wrote; a retryable one stays", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [discarded, cancelled, failed, withResult] = yield* Oban.insertAll([
        Ends.job({ end: "discard" }),
        Ends.job({ end: "cancel" }),
        Ends.job({ end: "fail" }),
        Ends.job({ end: "result" })
      ])
      // Discarded, unique under the default states (which leave out discarded): it gives its key up, so it moves.
      const keyed = yield* Oban.insert(Ends.job({ end: "discard" }, { unique: { keys: ["end"] } }))
      yield* startNode({ prefix, queues: { ends: 5 }, workers: [Ends] })
      yield* waitFor(
        "every outcome written",
        Effect.map(
          Effect.forEach([discarded!.id, cancelled!.id, failed!.id, withResult!.id, keyed.id], stateOf),
          (states) => states.join() === "discarded,cancelled,retryable,completed,discarded"
        ),
        "15 seconds"
      )
      assert.deepStrictEqual(
        yield* Effect.forEach([discarded!.id, cancelled!.id, failed!.id, withResult!.id, keyed.id], whereIs),
        ["finished", "finished", "hot", "finished", "finished"]
      )
      const rows = yield* sql<{ id: number; errors: ReadonlyArray<{ kind: string; attempt: number }>; result: unknown; at: Date | null }>`
        SELECT id::int AS id, errors, result, coalesce(discarded_at, cancelled_at, completed_at) AS at
        FROM ${sql(prefix)}.oban_jobs_finished ORDER BY id`
      const byId = new Map(rows.map((row) => [row.id, row]))
      assert.deepStrictEqual(byId.get(discarded!.id)!.errors.map((entry) => [entry.kind, entry.attempt]), [["discarded", 1]])
      assert.deepStrictEqual(byId.get(cancelled!.id)!.errors.map((entry) => [entry.kind, entry.attempt]), [["cancelled", 1]])
      assert.deepStrictEqual(byId.get(withResult!.id)!.result, { ok: true })
      for (const row of rows) assert.isNotNull(row.at, `job ${row.id} has its finish time`)
      const job = Option.getOrThrow(yield* Oban.getJob(discarded!.id))
      assert.deepStrictEqual([job.state, job.attempt, job.errors.length], ["discarded", 1, 1])
    }).pipe(Effect.scoped))

  it.effect("workflow steps and jobs that keep their unique key when completed stay in oban_jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      const chain = yield* Chain.insert("stays", [Work.job({ n: 10 }), Work.job({ n: 11 })])
      const keeps = yield* Oban.insert(Work.job({ n: 12 }, { unique: keptFor }))
      const frees = yield* Oban.insert(Work.job({ n: 13 }, { unique: freedFor }))
      const plain = yield* Oban.insert(Work.job({ n: 14 }))
      yield* startNode({ prefix, queues: { work: 5 }, workers: [Work] })
      yield* completedAll([...chain.map((job) => job.id), keeps.id, frees.id, plain.id])
      assert.deepStrictEqual(yield* Effect.forEach(chain, (job) => whereIs(job.id)), ["hot", "hot"])
      assert.strictEqual(yield* whereIs(keeps.id), "hot")
      assert.strictEqual(yield* whereIs(frees.id), "finished")
      assert.strictEqual(yield* whereIs(plain.id), "finished")
      // The key kept in oban_jobs still blocks; the freed one does not.
      const again = yield* Oban.insert(Work.job({ n: 12 }, { unique: keptFor }))
      assert.deepStrictEqual([again.id, again.conflict], [keeps.id, true])
      const next = yield* Oban.insert(Work.job({ n: 13 }, { unique: freedFor }))
      assert.strictEqual(next.conflict, false)
    }).pipe(Effect.scoped))

  it.effect("retry brings a finished job back and it runs again; delete removes it; a taken unique key refuses the retry", () =>
    Effect.gen(function*() {
      yield* truncate
      const [again, gone] = yield* Oban.insertAll([Work.job({ n: 20 }), Work.job({ n: 21 })])
      const keyed = yield* Oban.insert(Work.job({ n: 22 }, { unique: freedFor }))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* startNode({ prefix, queues: { work: 5 }, workers: [Work] })
        yield* completedAll([again!.id, gone!.id, keyed.id])
      }))
      assert.deepStrictEqual(yield* Effect.forEach([again!.id, gone!.id, keyed.id], whereIs), ["finished", "finished", "finished"])

      const retried = Option.getOrThrow(yield* Oban.retryJob(again!.id))
      assert.strictEqual(retried.state, "available")
      assert.strictEqual(yield* whereIs(again!.id), "hot")

      assert.isTrue(yield* Oban.deleteJob(gone!.id))
      assert.strictEqual(yield* whereIs(gone!.id), "none")
      assert.isFalse(yield* Oban.deleteJob(gone!.id))

      const newer = yield* Oban.insert(Work.job({ n: 22 }, { unique: freedFor }))
      assert.isFalse(newer.conflict)
      const refused = yield* Effect.flip(Oban.retryJob(keyed.id))
      assert.strictEqual(refused._tag, "UniqueConflictError")
      assert.strictEqual(yield* whereIs(keyed.id), "finished", "a refused retry leaves the job where it was")

      yield* Effect.scoped(Effect.gen(function*() {
        yield* startNode({ prefix, queues: { work: 5 }, workers: [Work] })
        yield* completedAll([again!.id, newer.id])
      }))
      assert.strictEqual(runs.get(again!.id), 2)
      const twice = Option.getOrThrow(yield* Oban.getJob(again!.id))
      assert.deepStrictEqual([twice.state, twice.attempt], ["completed", 2])
      assert.strictEqual(yield* whereIs(again!.id), "finished")
    }))

  it.effect("bulk retry and delete reach the jobs in both tables, each once", () =>
    Effect.gen(function*() {
      yield* truncate
      const jobs = yield* Oban.insertAll(Array.from({ length: 30 }, (_, n) => Work.job({ n })))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* startNode({ prefix, queues: { work: 10 }, workers: [Work] })
        yield* completedAll(jobs.map((job) => job.id))
      }))
      // One completed job in oban_jobs too (a job finished by an older release, or one that stayed).
      const sql = yield* SqlClient
      const stayed = yield* Oban.insert(Work.job({ n: 99 }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${stayed.id}`

      const retried = yield* Jobs.retry({ states: ["completed"], args: { n: 5 } })
      assert.strictEqual(retried.changed, 1)
      const deleted = yield* Jobs.remove({ states: ["completed"] }, { batchSize: 7 })
      assert.strictEqual(deleted.changed, 30)
      const left = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
      assert.strictEqual(left[0]!.n, 1, "only the retried job is left")
      assert.strictEqual(yield* stateOf(jobs[5]!.id), "available")
    }))

  it.effect("the pruner deletes old finished jobs from both tables and keeps recent ones", () =>
    Effect.gen(function*() {
      yield* truncate
      const jobs = yield* Oban.insertAll(Array.from({ length: 10 }, (_, n) => Work.job({ n })))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* startNode({ prefix, queues: { work: 10 }, workers: [Work] })
        yield* completedAll(jobs.map((job) => job.id))
      }))
      const sql = yield* SqlClient
      const old = jobs.slice(0, 6).map((job) => job.id)
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs_finished SET completed_at = now() - interval '1 hour' WHERE id IN ${sql.in(old)}`
      const staying = yield* Oban.insertAll([Work.job({ n: 50 }), Work.job({ n: 51 })])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'discarded', discarded_at = now() - interval '1 hour'
        WHERE id = ${staying[0]!.id}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now() WHERE id = ${staying[1]!.id}`

      const result = yield* Pruner.runOnce({ sql, prefix, maxAge: Duration.minutes(5), batchSize: 4 })
      assert.strictEqual(result.deleted, 7)
      const left = yield* sql<{ id: number }>`SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      assert.deepStrictEqual(left.map((row) => row.id), [...jobs.slice(6).map((job) => job.id), staying[1]!.id])
    }))

  it.effect("a cancel that commits while the ack waits for the row wins: the job ends cancelled, in oban_jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const node = "finished-node"
      const plain = yield* Oban.insert(Work.job({ n: 1 }))
      const [step] = yield* Chain.insert("race", [Work.job({ n: 2 }), Work.job({ n: 3 })])
      const claimed = yield* claimJobs(sql, prefix, yield* now(sql), [plain.id, step!.id], node)
      assert.deepStrictEqual(claimed.map((job) => job.state), ["executing", "executing"])
      // Claimed by a producer that is alive: the plain job's cancel waits for its attempt, as the step's does.
      yield* answeredByLiveProducer(prefix, [plain.id])

      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const cancel = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* Oban.cancelJob(plain.id)
        yield* Oban.cancelJob(step!.id)
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      const ack = yield* Effect.forkChild(
        Effect.flatMap(now(sql), (time) => ackJobs(sql, prefix, time, node, claimed.map((job) => ackOf(job, "completed"))))
      )
      yield* waitFor(
        "the ack waits for the cancel's row locks",
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
      // Both cancels were only requested (the rows stay executing until their attempts end): the ack writes
      // both, the trigger makes them cancelled, and neither moves to oban_jobs_finished although the ack's
      // snapshot saw no request (the delete re-read the rows and left them).
      assert.deepStrictEqual([...result.written].sort(), [plain.id, step!.id].sort())
      assert.deepStrictEqual(result.stale, [])
      assert.deepStrictEqual(yield* Effect.forEach([plain.id, step!.id], stateOf), ["cancelled", "cancelled"])
      assert.deepStrictEqual(yield* Effect.forEach([plain.id, step!.id], whereIs), ["hot", "hot"])
    }))

  it.effect("migrating down to 15 moves the finished jobs back into oban_jobs", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const other = uniquePrefix("finished_down")
      yield* dropSchemaOnClose(other)
      const inOther = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, Config.layer({ prefix: other }))
      yield* inOther(Migrations.run())
      yield* sql`INSERT INTO ${sql(other)}.oban_jobs (worker, state, completed_at) VALUES ('A', 'available', NULL), ('B', 'available', NULL)`
      yield* sql`UPDATE ${sql(other)}.oban_jobs SET state = 'completed', completed_at = now() WHERE worker = 'B'`
      yield* sql`WITH moved AS (DELETE FROM ${sql(other)}.oban_jobs WHERE worker = 'B' RETURNING *)
        INSERT INTO ${sql(other)}.oban_jobs_finished SELECT * FROM moved`
      yield* inOther(Migrations.down({ to: 15 }))
      const rows = yield* sql<{ worker: string; state: string }>`
        SELECT worker, state::text AS state FROM ${sql(other)}.oban_jobs ORDER BY id`
      assert.deepStrictEqual(rows.map((row) => [row.worker, row.state]), [["A", "available"], ["B", "completed"]])
      yield* inOther(Migrations.run())
      const next = yield* sql<{ id: number }>`INSERT INTO ${sql(other)}.oban_jobs (worker) VALUES ('C') RETURNING id::int AS id`
      assert.strictEqual(next[0]!.id, 3, "the identity goes on after the moved rows")
    }))
})
