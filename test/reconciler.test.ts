/**
 * The reconciler on its own: a job claimed by one of this node's producers
 * long ago is put back when the node no longer answers for it, and left alone
 * while it runs here, waits in a producer's buffer, or was claimed recently;
 * a job it runs or holds whose row was cancelled is stopped (its signal lost).
 * And on a node: a running job cancelled without a signal is interrupted.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Reconciler from "../src/internal/reconciler.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode } from "./support/node.ts"

const prefix = uniquePrefix("reconciler")
const Noop = Worker.make("Noop", { args: Schema.Struct({}), perform: () => Effect.void })

/** Claims the job under `producer`, `agoSeconds` ago, as a fetch would (under `claim`, else a fresh one). */
const claimedBy = (id: number, producer: string, agoSeconds: number, claim?: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
               attempted_at = now() - ${agoSeconds} * interval '1 second',
               attempted_by = ARRAY['node', ${producer}, COALESCE(${claim ?? null}::text, gen_random_uuid()::text)] WHERE id = ${id}`
  })

const runOnce = (
  owned: ReadonlyArray<number>,
  waiting: ReadonlyArray<number>,
  stopped?: Array<number>,
  releasing: ReadonlyArray<string> = []
) =>
  Effect.flatMap(SqlClient, (sql) =>
    Reconciler.runOnce({
      sql,
      prefix,
      producers: [{ id: "mine", unreturned: Effect.succeed({ jobs: waiting, claims: releasing }) }],
      executor: { owned: Effect.succeed(new Set(owned)) },
      rescueAfter: Duration.seconds(60),
      ...(stopped === undefined ? {} : { stop: (id: number) => Effect.sync(() => void stopped.push(id)) })
    }))

/** Cancels the job as `Oban.cancelJob` does, but sends no signal: as if it were lost on the way. */
const cancelSilently = (id: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${id}`)

layer(testLayer(prefix), { excludeTestServices: true })("reconciler", (it) => {
  it.effect("releases only old claims of its own producers that it neither runs nor holds", () =>
    Effect.gen(function*() {
      const [lost, running, waiting, recent, elsewhere] = yield* Oban.insertAll(
        Array.from({ length: 5 }, () => Noop.job({}))
      )
      yield* claimedBy(lost!.id, "mine", 120)
      yield* claimedBy(running!.id, "mine", 120)
      yield* claimedBy(waiting!.id, "mine", 120)
      yield* claimedBy(recent!.id, "mine", 5)
      yield* claimedBy(elsewhere!.id, "another-producer", 120)
      const released = yield* runOnce([running!.id], [waiting!.id])
      assert.deepStrictEqual(released, [lost!.id])
      const row = yield* jobRow(prefix, lost!.id)
      assert.strictEqual(row.state, "available")
      assert.deepStrictEqual(row.errors.map((entry) => entry.kind), ["rescued"])
      // It keeps its scheduled time, so its place in the queue.
      assert.strictEqual(row.scheduled_at.getTime(), lost!.scheduledAt.getTime())
      for (const job of [running, waiting, recent, elsewhere]) {
        assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "executing")
      }
      // Nothing left to release.
      assert.deepStrictEqual(yield* runOnce([running!.id], [waiting!.id]), [])
    }))

  it.effect("leaves alone the jobs of a failed fetch whose claim its producer is still releasing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs`
      const [lostFetch, other] = yield* Oban.insertAll([Noop.job({}), Noop.job({})])
      // Released here, the job would keep the attempt the fetch counted; its producer gives it back.
      yield* claimedBy(lostFetch!.id, "mine", 120, "fetch-being-released")
      yield* claimedBy(other!.id, "mine", 120)
      assert.deepStrictEqual(yield* runOnce([], [], undefined, ["fetch-being-released"]), [other!.id])
      assert.deepStrictEqual((yield* jobRow(prefix, lostFetch!.id)).state, "executing")
      // Once the producer no longer releases it (its release failed for good), it is put back here.
      assert.deepStrictEqual(yield* runOnce([], []), [lostFetch!.id])
    }))

  it.effect("rolls back a release when a job it took became the node's while the statement ran (a late reply, a fetch that failed meanwhile), and releases the others at once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs`
      const [late, lost] = yield* Oban.insertAll([Noop.job({}), Noop.job({})])
      yield* claimedBy(late!.id, "mine", 120, "answered-meanwhile")
      yield* claimedBy(lost!.id, "mine", 120)
      // The first look knows neither; by the time the statement has run, the producer answers for one claim.
      let looks = 0
      const release = Reconciler.runOnce({
        sql,
        prefix,
        producers: [{
          id: "mine",
          unreturned: Effect.sync(() => ({ jobs: [], claims: looks++ === 0 ? [] : ["answered-meanwhile"] }))
        }],
        executor: { owned: Effect.succeed(new Set<number>()) },
        rescueAfter: Duration.seconds(60)
      })
      // The first release took both and was rolled back whole; the second, looking again, took only the other.
      assert.deepStrictEqual(yield* release, [lost!.id])
      assert.strictEqual(looks, 4)
      assert.strictEqual((yield* jobRow(prefix, lost!.id)).state, "available")
      const kept = yield* jobRow(prefix, late!.id)
      assert.strictEqual(kept.state, "executing")
      assert.deepStrictEqual(kept.errors, [])
      assert.deepStrictEqual(yield* release, [])
    }))

  it.effect("gives up for this run after three releases rolled back, leaving every job as it was", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs`
      const [late, lost] = yield* Oban.insertAll([Noop.job({}), Noop.job({})])
      yield* claimedBy(late!.id, "mine", 120, "answered-each-second-look")
      yield* claimedBy(lost!.id, "mine", 120)
      // Each release's first look misses the claim and its second sees it: every release is rolled back.
      let looks = 0
      const released = yield* Reconciler.runOnce({
        sql,
        prefix,
        producers: [{
          id: "mine",
          unreturned: Effect.sync(() => ({ jobs: [], claims: looks++ % 2 === 0 ? [] : ["answered-each-second-look"] }))
        }],
        executor: { owned: Effect.succeed(new Set<number>()) },
        rescueAfter: Duration.seconds(60)
      })
      assert.deepStrictEqual(released, [])
      assert.strictEqual(looks, 6)
      for (const job of [late, lost]) {
        const row = yield* jobRow(prefix, job!.id)
        assert.strictEqual(row.state, "executing")
        assert.deepStrictEqual(row.errors, [])
      }
    }))

  it.effect("stops the jobs it runs or holds whose rows were cancelled, and no other", () =>
    Effect.gen(function*() {
      const [running, waiting, cancelledElsewhere, still] = yield* Oban.insertAll(
        Array.from({ length: 4 }, () => Noop.job({}))
      )
      for (const job of [running, waiting, still]) yield* claimedBy(job!.id, "mine", 1)
      yield* claimedBy(cancelledElsewhere!.id, "another-producer", 1)
      for (const job of [running, waiting, cancelledElsewhere]) yield* cancelSilently(job!.id)
      const stopped: Array<number> = []
      yield* runOnce([running!.id, still!.id], [waiting!.id], stopped)
      assert.deepStrictEqual(stopped.sort((a, b) => a - b), [running!.id, waiting!.id])
    }))

  it.effect("on a node: a running job cancelled without a signal is interrupted within a reconciler interval", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<number>()
      const interrupted = yield* Deferred.make<number>()
      const Forever = Worker.make("ReconcilerForever", {
        args: Schema.Struct({}),
        queue: "forever",
        perform: (job) =>
          Effect.andThen(Deferred.succeed(started, job.id), Effect.never).pipe(
            Effect.onInterrupt(() => Deferred.succeed(interrupted, job.id))
          )
      })
      yield* startNode({
        prefix,
        node: "reconciled",
        queues: { forever: 1 },
        workers: [Forever],
        rescuer: { interval: "200 millis" }
      })
      const job = yield* Oban.insert(Forever.job({}))
      assert.strictEqual(yield* Deferred.await(started), job.id)
      yield* cancelSilently(job.id)
      const stopped = yield* Deferred.await(interrupted).pipe(Effect.timeoutOption("10 seconds"))
      assert.deepStrictEqual(stopped._tag === "Some" ? stopped.value : "not interrupted", job.id)
      assert.strictEqual((yield* jobRow(prefix, job.id)).state, "cancelled")
    }).pipe(Effect.scoped), 30_000)
})
