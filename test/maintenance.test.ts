import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../src/Cluster.ts"
import * as Config from "../src/Config.ts"
import * as Cron from "../src/Cron.ts"
import * as Events from "../src/Events.ts"
import { lapseMillis } from "../src/internal/liveness.ts"
import { countAvailable, countAvailableStatement } from "../src/internal/sql/jobs.ts"
import { pruneStatement } from "../src/internal/sql/maintenance.ts"
import { transaction } from "../src/internal/sql/transaction.ts"
import * as Leader from "../src/Leader.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import * as Pruner from "../src/Pruner.ts"
import * as Rescuer from "../src/Rescuer.ts"
import * as Stager from "../src/Stager.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { explain, explainGeneric, scansOf } from "./support/plans.ts"

const prefix = uniquePrefix("maint")
const Noop = Worker.make("Noop", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

/** `n` jobs in one statement, the states taken in turn; finished ones finished `age` ago. */
const insertMany = (n: number, states: ReadonlyArray<string>, age: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const finishedAt = sql`now() - ${age}::interval`
    yield* sql`
      INSERT INTO ${sql(prefix)}.oban_jobs (state, worker, completed_at, cancelled_at, discarded_at)
      SELECT s::${sql(prefix)}.oban_job_state, 'Noop',
             CASE WHEN s = 'completed' THEN ${finishedAt} END,
             CASE WHEN s = 'cancelled' THEN ${finishedAt} END,
             CASE WHEN s = 'discarded' THEN ${finishedAt} END
      FROM generate_series(1, ${n}) AS i,
           LATERAL (SELECT (string_to_array(${states.join(",")}, ','))[1 + i % ${states.length}] AS s) AS pick`
  })

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers, ${sql(prefix)}.oban_peers`
})


/**
 * Every job of the table executing under a new producer of `node` whose row last beat two minutes ago
 * (`revivable`: registered by this release, which the rescuer marks rather than removes); its id.
 */
const silentProducer = (
  node: string,
  options: { readonly revivable: boolean; readonly limit?: number; readonly paused?: boolean }
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const id = crypto.randomUUID()
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
               attempted_by = ARRAY[${node}, ${id}]`
    yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, updated_at, revivable) VALUES
               (${id}, ${node}, 'default', ${options.limit ?? 5}, ${options.paused ?? false}, now() - interval '2 minutes',
                ${options.revivable})`
    return id
  })

layer(testLayer(prefix, { maxConnections: 10 }), { excludeTestServices: true })("maintenance runOnce", (it) => {
  it.effect("the lapse of its own process after which a node's rescuer waits rescueAfter again", () =>
    Effect.sync(() => {
      const lapse = (rescueAfter: number, heartbeat: number) =>
        lapseMillis(Duration.millis(rescueAfter), Duration.millis(heartbeat))
      // Half of rescueAfter with the defaults (60 s, heartbeats every 10 s).
      assert.strictEqual(lapse(60_000, 10_000), 30_000)
      // Sparse heartbeats: a neighbour paused along needs one, and some slack, to beat after it wakes.
      assert.strictEqual(lapse(60_000, 40_000), 1_000)
      assert.strictEqual(lapse(60_000, 30_000), 15_000)
      assert.strictEqual(lapse(4_000, 300), 2_000)
      // Never under a second, so that a busy event loop is no lapse.
      assert.strictEqual(lapse(1_500, 300), 1_000)
    }))

  it.effect("the pruner and rescuer limit their own transaction's idle time, never a caller's they run inside", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const idleLimit = Effect.map(
        sql<{ readonly limit: string }>`SELECT current_setting('idle_in_transaction_session_timeout') AS limit`,
        (rows) => rows[0]!.limit
      )
      const outside = yield* idleLimit
      // Inside the caller's transaction (a savepoint): the caller's setting, after the calls as before.
      const inside = yield* sql.withTransaction(Effect.gen(function*() {
        const before = yield* idleLimit
        yield* Pruner.runOnce({ sql, prefix })
        yield* Rescuer.runOnce({ sql, prefix, confirm: Effect.succeed(true) })
        return [before, yield* idleLimit]
      }))
      assert.deepStrictEqual(inside, [outside, outside])
      // Their own: limited while it is open (seen from inside, as the node's transactions set it).
      assert.strictEqual(yield* transaction(sql, idleLimit), "10s")
      assert.strictEqual(yield* idleLimit, outside)
    }))

  it.effect("runOnce refuses bad options with a typed error before any statement (batchSize 0 looped forever)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const tagOf = (effect: Effect.Effect<unknown, { readonly _tag: string }>) =>
        effect.pipe(Effect.timeout("5 seconds"), Effect.match({ onFailure: (error) => error._tag, onSuccess: () => "success" }))
      const refused: Array<Effect.Effect<unknown, { readonly _tag: string }>> = [
        Stager.runOnce({ sql, prefix, batchSize: 0 }),
        Stager.runOnce({ sql, prefix, batchSize: Number.NaN }),
        Rescuer.runOnce({ sql, prefix, batchSize: 0 }),
        Rescuer.runOnce({ sql, prefix, rescueAfter: Duration.millis(-1) }),
        Rescuer.runOnce({ sql, prefix, liveProducers: ["x}'; drop table t; --"] }),
        Pruner.runOnce({ sql, prefix, batchSize: 1.5 }),
        Pruner.runOnce({ sql, prefix, maxBatches: 0 }),
        Pruner.runOnce({ sql, prefix, maxAge: Duration.infinity })
      ]
      for (const [i, effect] of refused.entries()) assert.strictEqual(yield* tagOf(effect), "InvalidConfigError", `case ${i}`)
      const badPrefix: Array<Effect.Effect<unknown, { readonly _tag: string }>> = [
        Stager.runOnce({ sql, prefix: "Bad Prefix" }),
        Pruner.runOnce({ sql, prefix: "x;drop" })
      ]
      for (const effect of badPrefix) {
        assert.strictEqual(yield* tagOf(effect), "InvalidPrefixError")
      }
      assert.strictEqual(yield* tagOf(Stager.runOnce({ sql, prefix, batchSize: 1 })), "success")
    }))

  it.effect("Leader.runOnce: one node takes the lease, the other sees it, and takes over when it expires", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const ttl = Duration.seconds(30)
      const a = yield* Leader.runOnce({ sql, prefix, node: "a", ttl })
      assert.deepStrictEqual([a.isLeader, a.leader], [true, "a"])
      const b = yield* Leader.runOnce({ sql, prefix, node: "b", ttl })
      assert.deepStrictEqual([b.isLeader, b.leader], [false, "a"])
      assert.isAbove(b.expiresInMillis, 29_000)
      // Renewing keeps it.
      assert.isTrue((yield* Leader.runOnce({ sql, prefix, node: "a", ttl })).isLeader)
      yield* sql`UPDATE ${sql(prefix)}.oban_peers SET expires_at = now() - interval '1 second'`
      const takeover = yield* Leader.runOnce({ sql, prefix, node: "b", ttl })
      assert.deepStrictEqual([takeover.isLeader, takeover.leader], [true, "b"])
      assert.isFalse((yield* Leader.runOnce({ sql, prefix, node: "a", ttl })).isLeader)
    }))

  it.effect("Rescuer.runOnce rescues jobs of dead producers, discards those out of attempts, and spares live ones", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [orphan, spent, alive, absent] = yield* Oban.insertAll([
        Noop.job({ n: 1 }),
        Noop.job({ n: 2 }, { maxAttempts: 1 }),
        Noop.job({ n: 3 }),
        Noop.job({ n: 4 })
      ])
      // Producer incarnations: "dead" stopped beating; "alive" beats; "gone" has no row at all.
      const [dead, live, gone] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = CASE id WHEN ${alive!.id} THEN ARRAY['alive', ${live}]
                                        WHEN ${absent!.id} THEN ARRAY['gone', ${gone}]
                                        ELSE ARRAY['dead', ${dead}] END`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at, revivable) VALUES
                 (${dead}, 'dead', 'default', 5, now() - interval '2 minutes', true),
                 (${live}, 'alive', 'default', 5, now(), true)`
      const result = yield* Rescuer.runOnce({ sql, prefix })
      assert.deepStrictEqual(result, { rescued: 2, discarded: 1, cancelled: 0 })
      const rescued = yield* jobRow(prefix, orphan!.id)
      assert.strictEqual(rescued.state, "available")
      assert.strictEqual(rescued.attempt, 1)
      assert.strictEqual(rescued.errors[0]!.kind, "rescued")
      assert.include(rescued.errors[0]!.message, "dead")
      // Its scheduled time is kept: it goes back to its place in the queue, not behind later jobs.
      assert.strictEqual(rescued.scheduled_at.getTime(), orphan!.scheduledAt.getTime())
      assert.strictEqual((yield* jobRow(prefix, absent!.id)).state, "available")
      assert.strictEqual((yield* jobRow(prefix, spent!.id)).state, "discarded")
      assert.strictEqual((yield* jobRow(prefix, alive!.id)).state, "executing")
      // The dead producer's row is marked, not removed: it keeps what commands stored for its node.
      const producers = yield* sql<{ node: string; dead: boolean }>`
        SELECT node, dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers ORDER BY node`
      assert.deepStrictEqual(producers, [{ node: "alive", dead: false }, { node: "dead", dead: true }])
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 0, discarded: 0, cancelled: 0 })
    }))

  it.effect("Rescuer.runOnce asks confirm after each batch's statement, before its commit: a no rolls the batch back, nothing rescued or marked", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [orphan] = yield* Oban.insertAll([Noop.job({ n: 1 })])
      const dead = crypto.randomUUID()
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = ARRAY['dead', ${dead}]`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at, revivable) VALUES
                 (${dead}, 'dead', 'default', 5, now() - interval '2 minutes', true)`
      // The check runs after the batch's statement, before its commit, on a connection of its own (a
      // transaction of the caller's works there): the job's row is locked and still executing to others.
      const seen: Array<{ state: string; locked: boolean }> = []
      const refuse = Effect.map(
        Effect.orDie(sql.withTransaction(sql<{ state: string; locked: boolean }>`
          SELECT (SELECT state::text FROM ${sql(prefix)}.oban_jobs WHERE id = ${orphan!.id}) AS state,
                 EXISTS (SELECT 1 FROM pg_locks WHERE relation = ${`"${prefix}".oban_jobs`}::regclass
                         AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()) AS locked`)),
        (rows) => {
          seen.push(rows[0]!)
          return false
        }
      )
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix, confirm: refuse }), { rescued: 0, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual(seen, [{ state: "executing", locked: true }])
      assert.strictEqual((yield* jobRow(prefix, orphan!.id)).state, "executing")
      const [producer] = yield* sql<{ dead: boolean }>`SELECT dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers`
      assert.isFalse(producer!.dead)
      assert.deepStrictEqual(
        yield* Rescuer.runOnce({ sql, prefix, confirm: Effect.succeed(true) }),
        { rescued: 1, discarded: 0, cancelled: 0 }
      )
      assert.strictEqual((yield* jobRow(prefix, orphan!.id)).state, "available")
    }))

  it.effect("Rescuer.runOnce never judges the liveProducers it is given by their heartbeats (a stalled node's own)", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [own, other] = yield* Oban.insertAll([Noop.job({ n: 1 }), Noop.job({ n: 2 })])
      // Both rows are stale, as the rescuing node's own are when it wakes from a stall past rescueAfter.
      const [mine, theirs, mineOld] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = CASE id WHEN ${own!.id} THEN ARRAY['me', ${mine}] ELSE ARRAY['other', ${theirs}] END`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at, revivable) VALUES
                 (${mine}, 'me', 'default', 5, now() - interval '2 minutes', true),
                 (${mineOld}, 'me', 'other', 5, now() - interval '2 minutes', false),
                 (${theirs}, 'other', 'default', 5, now() - interval '2 minutes', true)`
      const result = yield* Rescuer.runOnce({ sql, prefix, liveProducers: [mine, mineOld] })
      assert.deepStrictEqual(result, { rescued: 1, discarded: 0, cancelled: 0 })
      assert.strictEqual((yield* jobRow(prefix, own!.id)).state, "executing")
      assert.strictEqual((yield* jobRow(prefix, other!.id)).state, "available")
      // Neither spared row is marked dead (revivable) or removed (not revivable); the other is marked.
      const producers = yield* sql<{ id: string; dead: boolean }>`
        SELECT id::text AS id, dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers`
      assert.deepStrictEqual(
        new Map(producers.map((row) => [row.id, row.dead])),
        new Map([[mine, false], [mineOld, false], [theirs, true]])
      )
      // Without them, the same rows are judged as any other.
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.strictEqual((yield* jobRow(prefix, own!.id)).state, "available")
    }))

  it.effect("Rescuer.runOnce: a job claimed ahead is rescued once for free; a second rescue in a row counts an attempt", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [poison, patient, retried] = yield* Oban.insertAll([
        Noop.job({ n: 1 }, { maxAttempts: 1 }),
        Noop.job({ n: 2 }, { maxAttempts: 3 }),
        Noop.job({ n: 3 }, { maxAttempts: 3 })
      ])
      const ids = [poison!.id, patient!.id, retried!.id]
      /** Claims the jobs ahead (attempt not counted) under a producer that is already dead, and rescues them. */
      const crash = (only: ReadonlyArray<number>) =>
        Effect.gen(function*() {
          const dead = crypto.randomUUID()
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempted_at = now(),
                     attempted_by = ARRAY['dead', ${dead}, 'claim', 'ahead'] WHERE id IN ${sql.in(only)}`
          yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at)
                     VALUES (${dead}, 'dead', 'default', 5, now() - interval '2 minutes')`
          return yield* Rescuer.runOnce({ sql, prefix })
        })
      const rows = Effect.forEach(ids, (id) => jobRow(prefix, id))
      // First crash: it may never have started, so nothing is counted, even with maxAttempts 1.
      assert.deepStrictEqual(yield* crash(ids), { rescued: 3, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual((yield* rows).map((row) => [row.state, row.attempt]), [["available", 0], ["available", 0], ["available", 0]])
      // The third finishes an attempt in between (a failure): its chain of rescues is broken.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 1,
                 errors = errors || '[{"attempt":1,"kind":"error","message":"boom"}]'::jsonb WHERE id = ${retried!.id}`
      // Second crash in a row: the poison job has now used its only attempt and is discarded.
      assert.deepStrictEqual(yield* crash(ids), { rescued: 2, discarded: 1, cancelled: 0 })
      const after = yield* rows
      assert.deepStrictEqual(after.map((row) => [row.state, row.attempt]), [["discarded", 1], ["available", 1], ["available", 1]])
      assert.deepStrictEqual(after[0]!.errors.map((entry) => [entry.kind, entry.attempt]), [["rescued", 0], ["rescued", 1]])
      // Third crash for the patient one: a count on each crash in a row, never past maxAttempts.
      assert.deepStrictEqual(yield* crash([patient!.id]), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual(yield* crash([patient!.id]), { rescued: 0, discarded: 1, cancelled: 0 })
      const patientRow = yield* jobRow(prefix, patient!.id)
      assert.deepStrictEqual([patientRow.state, patientRow.attempt], ["discarded", 3])
      assert.deepStrictEqual(patientRow.errors.map((entry) => entry.attempt), [0, 1, 2, 3])
    }))

  it.effect("Rescuer.runOnce: a job rescued from a claim that counted its attempt, then claimed ahead on a node that dies too, keeps its attempt", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Noop.job({ n: 1 }, { maxAttempts: 2 })])
      /** Claims the job under a producer that is already dead (`ahead`: its attempt not counted), and rescues it. */
      const crash = (ahead: boolean) =>
        Effect.gen(function*() {
          const dead = crypto.randomUUID()
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempted_at = now(),
                     attempt = attempt + ${ahead ? 0 : 1},
                     attempted_by = ${ahead ? sql`ARRAY['dead', ${dead}, 'claim', 'ahead']` : sql`ARRAY['dead', ${dead}, 'claim']`}
                     WHERE id = ${job!.id}`
          yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at)
                     VALUES (${dead}, 'dead', 'default', 5, now() - interval '2 minutes')`
          return yield* Rescuer.runOnce({ sql, prefix })
        })
      const state = Effect.map(jobRow(prefix, job!.id), (row) => [row.state, row.attempt] as const)
      // Started at once on a node that died: the claim counted attempt 1, the rescue adds nothing.
      assert.deepStrictEqual(yield* crash(false), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual(yield* state, ["available", 1])
      // Then claimed ahead on a node that dies too: the first rescue of an uncounted claim is free.
      // (It was taken for a second rescue in a row, and the job discarded with one run.)
      assert.deepStrictEqual(yield* crash(true), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual(yield* state, ["available", 1])
      // A second uncounted one in a row counts: the job has used its attempts.
      assert.deepStrictEqual(yield* crash(true), { rescued: 0, discarded: 1, cancelled: 0 })
      const row = yield* jobRow(prefix, job!.id)
      assert.deepStrictEqual(
        row.errors.map((entry) => [entry.kind, entry.attempt, (entry as { readonly claimedAhead?: boolean }).claimedAhead]),
        [["rescued", 1, false], ["rescued", 1, true], ["rescued", 2, true]]
      )

      // An attempt that ends without an entry (a completion, a cancel while it ran) ends the run of
      // rescues too: after one free rescue, a completed attempt 1 and a retry by hand, the next rescue
      // of a waiting job is free again.
      const [other] = yield* Oban.insertAll([Noop.job({ n: 2 }, { maxAttempts: 3 })])
      const crashOther = Effect.gen(function*() {
        const dead = crypto.randomUUID()
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempted_at = now(),
                   attempted_by = ARRAY['dead', ${dead}, 'claim', 'ahead'] WHERE id = ${other!.id}`
        yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at)
                   VALUES (${dead}, 'dead', 'default', 5, now() - interval '2 minutes')`
        return yield* Rescuer.runOnce({ sql, prefix })
      })
      yield* crashOther
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 1 WHERE id = ${other!.id}`
      yield* crashOther
      assert.deepStrictEqual(
        yield* Effect.map(jobRow(prefix, other!.id), (row) => [row.state, row.attempt, row.errors.map((entry) => entry.attempt)]),
        ["available", 1, [0, 1]]
      )
    }))

  it.effect("Rescuer.runOnce publishes a rescued event that names the workflow and step of a rescued step", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const step = (yield* Oban.insertWorkflow(Workflow.make("rescued-flow").add("only", Noop.job({ n: 1 })))).jobs.only
      const dead = crypto.randomUUID()
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = ARRAY['dead', ${dead}] WHERE id = ${step!.id}`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at) VALUES
                 (${dead}, 'dead', 'default', 5, now() - interval '2 minutes')`
      const hub = yield* Events.makeHub
      const collector = yield* Effect.forkChild(Events.stream(hub).pipe(Stream.take(1), Stream.runCollect))
      yield* Effect.sleep("20 millis")
      yield* Rescuer.runOnce({ sql, prefix }).pipe(Effect.provideService(Events.EventHub, hub))
      const [event] = Array.from(yield* Fiber.join(collector).pipe(Effect.timeout("5 seconds")))
      assert.deepStrictEqual([event!.kind, event!.jobId, event!.workflow], ["rescued", step!.id, { id: "rescued-flow", step: "only" }])
    }).pipe(Effect.scoped))

  it.effect("Rescuer.runOnce judges each producer incarnation: a restart under the same node name does not hide the old one's jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [old, fresh] = yield* Oban.insertAll([Noop.job({ n: 1 }), Noop.job({ n: 2 })])
      const [crashed, restarted] = [crypto.randomUUID(), crypto.randomUUID()]
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = CASE id WHEN ${old!.id} THEN ARRAY['web-1', ${crashed}] ELSE ARRAY['web-1', ${restarted}] END`
      // The crashed process's row went silent; the restarted one, same node name and queue, beats.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at) VALUES
                 (${crashed}, 'web-1', 'default', 5, now() - interval '2 minutes'),
                 (${restarted}, 'web-1', 'default', 5, now())`
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.strictEqual((yield* jobRow(prefix, old!.id)).state, "available")
      assert.strictEqual((yield* jobRow(prefix, fresh!.id)).state, "executing")
      const producers = yield* sql<{ id: string }>`
        SELECT id::text AS id FROM ${sql(prefix)}.oban_producers WHERE dead_at IS NULL`
      assert.deepStrictEqual(producers.map((row) => row.id), [restarted])
    }))

  it.effect("Rescuer.runOnce keeps a dead producer's row for forgetAfter, then removes it; its leftover jobs are rescued by later runs", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const jobs = yield* Oban.insertAll([Noop.job({ n: 1 }), Noop.job({ n: 2 }), Noop.job({ n: 3 })])
      const dead = yield* silentProducer("gone-node", { revivable: true, limit: 7, paused: true })
      const deadRow = sql<{ limit: number; paused: boolean; dead: boolean }>`
        SELECT "limit", paused, dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers WHERE id = ${dead}::uuid`
      // One job per statement: the row is marked by the first, and its other jobs are still orphans after it.
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix, batchSize: 1 }), { rescued: 3, discarded: 0, cancelled: 0 })
      assert.deepStrictEqual(yield* deadRow, [{ limit: 7, paused: true, dead: true }])
      for (const job of jobs) assert.strictEqual((yield* jobRow(prefix, job.id)).state, "available")
      // Kept while it is younger than forgetAfter; removed once older.
      yield* Rescuer.runOnce({ sql, prefix, forgetAfter: Duration.hours(1) })
      assert.strictEqual((yield* deadRow).length, 1)
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET dead_at = now() - interval '2 hours',
                 updated_at = now() - interval '3 hours' WHERE id = ${dead}::uuid`
      yield* Rescuer.runOnce({ sql, prefix, forgetAfter: Duration.hours(1) })
      assert.deepStrictEqual(yield* deadRow, [])
    }))

  it.effect("Rescuer.runOnce removes the stale row of a node of a release before migration 22 (whose heartbeat would beat a marked row) and rescues its jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Noop.job({ n: 1 })])
      // Registered by an earlier release: not revivable.
      yield* silentProducer("older-node", { revivable: false })
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 1, discarded: 0, cancelled: 0 })
      assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "available")
      assert.deepStrictEqual(yield* sql`SELECT id FROM ${sql(prefix)}.oban_producers`, [])
    }))

  it.effect("Rescuer.runOnce spares the jobs of a producer whose heartbeat commits while the rescue waits for its row", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Noop.job({ n: 1 })])
      const late = yield* silentProducer("late-beat", { revivable: true })
      // The heartbeat, after an outage of two minutes: its update holds the row until it commits.
      const held = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      const beat = yield* Effect.forkChild(sql.withTransaction(Effect.andThen(
        sql`UPDATE ${sql(prefix)}.oban_producers SET updated_at = now() WHERE id = ${late}::uuid`,
        Effect.andThen(Deferred.succeed(held, undefined), Deferred.await(commit))
      )))
      yield* Deferred.await(held)
      // The rescue starts while the row still looks stale (its snapshot), and waits for the row's lock.
      const rescue = yield* Effect.forkChild(Rescuer.runOnce({ sql, prefix }))
      // This file's schema only: other files' nodes run rescues of their own meanwhile.
      const inThisSchema = `%"${prefix}".oban_producers%dead_at = clock.now%`
      yield* waitFor("the rescue waits for the row", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                           WHERE wait_event_type = 'Lock' AND query LIKE ${inThisSchema}`,
        (rows) => rows[0]!.n > 0
      ))
      yield* Deferred.succeed(commit, undefined)
      yield* Fiber.join(beat)
      // Before, the rescue judged the job by its snapshot and took it from a producer that lives on.
      assert.deepStrictEqual(yield* Fiber.join(rescue), { rescued: 0, discarded: 0, cancelled: 0 })
      assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "executing")
      const rows = yield* sql<{ dead: boolean }>`SELECT dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers`
      assert.deepStrictEqual(rows, [{ dead: false }])
    }))

  it.effect("Pruner.runOnce deletes 100,000 old jobs in bounded batches and keeps recent and unfinished ones", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      yield* insertMany(100_000, ["completed", "cancelled", "discarded"], "8 days")
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, worker, completed_at)
                 VALUES ('completed', 'Recent', now() - interval '1 minute'), ('available', 'Waiting', NULL)`
      const first = yield* Pruner.runOnce({ sql, prefix, batchSize: 10_000, maxBatches: 4 })
      assert.deepStrictEqual(first, { deleted: 40_000, batches: 4 })
      let total = first.deleted
      while (true) {
        const next = yield* Pruner.runOnce({ sql, prefix, batchSize: 10_000, maxBatches: 4 })
        total += next.deleted
        if (next.batches < 4) break
      }
      assert.strictEqual(total, 100_000)
      const left = yield* sql<{ worker: string }>`SELECT worker FROM ${sql(prefix)}.oban_jobs_all ORDER BY worker`
      assert.deepStrictEqual(left.map((row) => row.worker), ["Recent", "Waiting"])
    }))

  it.effect("a prune with nothing due walks each state's partial index, never the table, in custom and generic plans", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      // 200,000 jobs, a quarter in each of available, completed, cancelled and discarded, all finished just now.
      yield* insertMany(200_000, ["available", "completed", "cancelled", "discarded"], "0 seconds")
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
      const statement = pruneStatement(
        sql,
        prefix,
        yield* now(sql),
        Duration.toMillis(Pruner.defaults.maxAge),
        Pruner.defaults.batchSize
      )
      for (const plan of [yield* explain(statement), yield* explainGeneric(statement)]) {
        const scans = scansOf(plan, "oban_jobs")
        assert.deepStrictEqual(scans.filter((node) => node["Node Type"] === "Seq Scan"), [])
        const indexes = new Set(scans.map((node) => node["Index Name"]))
        for (const index of ["oban_jobs_completed_at_idx", "oban_jobs_cancelled_at_idx", "oban_jobs_discarded_at_idx"]) {
          assert.isTrue(indexes.has(index), `${index} in ${[...indexes].join(", ")}`)
        }
      }
      assert.deepStrictEqual(yield* Pruner.runOnce({ sql, prefix }), { deleted: 0, batches: 1 })
    }))

  it.effect("the available-jobs sample counts at most the cap per queue, however long the backlog", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      yield* sql`
        INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker)
        SELECT 'available', CASE WHEN i <= 3 THEN 'small' ELSE 'big' END, 'Noop'
        FROM generate_series(1, 200000) AS i`
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
      const queues = ["big", "small", "empty"]
      const counts = yield* countAvailable(sql, prefix, queues, 1_000)
      assert.deepStrictEqual([...counts.entries()].sort(), [["big", 1_000], ["small", 3]])
      const plan = yield* explain(countAvailableStatement(sql, prefix, queues, 1_000), { analyze: true })
      const scans = scansOf(plan, "oban_jobs")
      assert.isNotEmpty(scans)
      for (const scan of scans) {
        assert.notStrictEqual(scan["Node Type"], "Seq Scan")
        // Rows read per queue (per loop) stay within the cap.
        assert.isAtMost(scan["Actual Rows"]!, 1_000)
      }
    }))

  it.effect("Cron.runOnce across a fall-back: an every-hour entry runs every real hour, a fixed-hour one once", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      // Europe/Paris repeats 02:00-02:59 local on 2027-10-31: first at +02:00 (00:xxZ), then at +01:00 (01:xxZ).
      const entries = yield* Cron.parse([
        Cron.entry("0 * * * *", Noop, { n: 1 }, { name: "hourly", timezone: "Europe/Paris" }),
        Cron.entry("30 2 * * *", Noop, { n: 2 }, { name: "daily", timezone: "Europe/Paris", meta: { team: "ops" } })
      ])
      yield* Cron.runOnce({ sql, prefix, entries, from: new Date("2027-10-30T22:30:00Z"), to: new Date("2027-10-31T03:30:00Z") })
      const keys = yield* sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all ORDER BY 1`
      // The hourly entry skipped the real hour 01:00Z before ("earlier" occurrences only).
      assert.deepStrictEqual(keys.map((row) => row.k), [
        "cron:daily:2027-10-31T00:30:00.000Z",
        "cron:hourly:2027-10-30T23:00:00.000Z",
        "cron:hourly:2027-10-31T00:00:00.000Z",
        "cron:hourly:2027-10-31T01:00:00.000Z",
        "cron:hourly:2027-10-31T02:00:00.000Z",
        "cron:hourly:2027-10-31T03:00:00.000Z"
      ])
      // Each job says which entry and slot it is for (a late daily job can tell its day), beside the entry's meta.
      const [daily] = yield* sql<{ meta: unknown }>`
        SELECT meta FROM ${sql(prefix)}.oban_jobs_all WHERE unique_key = 'cron:daily:2027-10-31T00:30:00.000Z'`
      assert.deepStrictEqual(daily!.meta, { team: "ops", cron: { name: "daily", slot: "2027-10-31T00:30:00.000Z" } })
    }))

  it.effect("Cron shorthands (@daily, @hourly, ...) read as classic cron reads them", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const entries = yield* Cron.parse([
        Cron.entry("@daily", Noop, { n: 1 }, { name: "daily" }),
        Cron.entry(" @hourly ", Noop, { n: 2 }, { name: "hourly" }),
        Cron.entry("@WEEKLY", Noop, { n: 3 }, { name: "weekly" })
      ])
      // Thursday 2026-12-03 22:30Z to Sunday 2026-12-06 00:00Z.
      yield* Cron.runOnce({ sql, prefix, entries, from: new Date("2026-12-03T22:30:00Z"), to: new Date("2026-12-06T00:00:00Z") })
      const counts = yield* sql<{ name: string; n: number }>`
        SELECT split_part(unique_key, ':', 2) AS name, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY 1 ORDER BY 1`
      assert.deepStrictEqual(counts.map((row) => [row.name, row.n]), [["daily", 3], ["hourly", 50], ["weekly", 1]])
      const error = yield* Cron.parse([Cron.entry("@reboot", Noop, { n: 1 })]).pipe(Effect.flip)
      assert.strictEqual(error._tag, "InvalidConfigError")
      assert.include(error.message, `"@reboot" is no shorthand this crontab knows (@yearly, @annually`)
      // A known shorthand with a bad time zone is told about the time zone.
      const zone = yield* Cron.parse([Cron.entry("@daily", Noop, { n: 1 }, { timezone: "Europe/Pariss" })]).pipe(Effect.flip)
      assert.notInclude(zone.message, "no shorthand")
      assert.include(zone.message, "Pariss")
      // Options an entry does not take (past the types) are refused by name, not dropped.
      const refused = (options: object) =>
        Cron.parse([Cron.entry("@daily", Noop, { n: 1 }, options as Cron.EntryOptions)]).pipe(
          Effect.flip,
          Effect.map((error) => [error.field, error.message])
        )
      assert.deepStrictEqual(yield* refused({ priorty: 1 }), [
        "crontab",
        `crontab entry 0 ("Noop:@daily"): unknown option "priorty" (did you mean "priority"?); ` +
        "known: queue, priority, maxAttempts, tags, meta, timeout, backoff, timezone, name"
      ])
      for (const own of ["scheduleIn", "scheduledAt", "unique"]) {
        const [, message] = yield* refused({ [own]: own === "unique" ? { period: 60 } : "1 minute" })
        assert.include(message, `option "${own}" is the cron's own`)
      }
      assert.lengthOf(yield* Cron.parse([Cron.entry("@daily", Noop, { n: 1 }, { priority: 2, name: "fine" })]), 1)
      // An option given as undefined is none; a copy of an entry keeps what was wrong with it.
      assert.lengthOf(yield* Cron.parse([Cron.entry("@daily", Noop, { n: 1 }, { unique: undefined } as Cron.EntryOptions)]), 1)
      const copied = { ...Cron.entry("@daily", Noop, { n: 1 }, { constructor: 1 } as Cron.EntryOptions), name: "copied" }
      const fromCopy = yield* Effect.flip(Cron.parse([copied]))
      assert.include(fromCopy.message, `crontab entry 0 ("copied"): unknown option "constructor"`)
    }))

  it.effect("Cron.runOnce across a spring-forward: a slot in the gap runs once after it, from any round's start", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Europe/Paris skips 02:00-02:59 local on 2027-03-28 (01:00Z): 02:30 does not exist that day.
      const entries = yield* Cron.parse([Cron.entry("30 2 * * *", Noop, { n: 3 }, { name: "gap", timezone: "Europe/Paris" })])
      const keys = Effect.map(
        sql<{ k: string }>`SELECT unique_key AS k FROM ${sql(prefix)}.oban_jobs_all WHERE unique_key LIKE 'cron:gap:%' ORDER BY 1`,
        (rows) => rows.map((row) => row.k)
      )
      // Rounds split at every quarter hour around the change: one that starts in the hour after the gap
      // (01:00Z-01:30Z) skipped to the next day before, so the slot was lost.
      for (const starts of [["00:45", "01:15", "02:00"], ["00:45", "02:00"], ["01:05", "01:20", "01:45"]]) {
        yield* truncate
        for (let i = 0; i + 1 < starts.length; i++) {
          const from = new Date(`2027-03-28T${starts[i]}:00Z`)
          const to = new Date(`2027-03-28T${starts[i + 1]}:00Z`)
          yield* Cron.runOnce({ sql, prefix, entries, from, to })
        }
        assert.deepStrictEqual(yield* keys, ["cron:gap:2027-03-28T01:30:00.000Z"], starts.join(" "))
      }
      // The days around it are untouched: 02:30 local is 01:30Z on the day before (CET), 00:30Z after (CEST).
      yield* truncate
      yield* Cron.runOnce({ sql, prefix, entries, from: new Date("2027-03-27T00:00:00Z"), to: new Date("2027-03-29T12:00:00Z") })
      assert.deepStrictEqual(yield* keys, [
        "cron:gap:2027-03-27T01:30:00.000Z",
        "cron:gap:2027-03-28T01:30:00.000Z",
        "cron:gap:2027-03-29T00:30:00.000Z"
      ])
    }))

  it.effect("Cron.runOnce inserts one job per slot, and a second run over the same window inserts none", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const entries = yield* Cron.parse([
        Cron.entry("*/10 * * * * *", Noop, { n: 1 }),
        Cron.entry("0 * * * *", Noop, { n: 2 }, { queue: "hourly", timezone: "Asia/Kolkata" })
      ])
      const from = new Date("2026-03-01T10:00:00.000Z")
      const to = new Date("2026-03-01T10:01:00.000Z")
      const first = yield* Cron.runOnce({ sql, prefix, entries, from, to })
      // Every 10 s in (10:00:00, 10:01:00]: 6 slots. Kolkata is UTC+5:30, so its hours start at hh:30 UTC: none here.
      assert.deepStrictEqual(first, { inserted: 6, duplicates: 0 })
      const again = yield* Cron.runOnce({ sql, prefix, entries, from: new Date(from.getTime() - 30_000), to })
      assert.deepStrictEqual(again, { inserted: 3, duplicates: 6 })
      // A long gap is capped at 100 slots per entry and run: 100 of the 174 ten-second slots, plus 10:30 UTC hourly.
      const gap = yield* Cron.runOnce({ sql, prefix, entries, from: to, to: new Date("2026-03-01T10:30:00.000Z") })
      assert.deepStrictEqual(gap, { inserted: 101, duplicates: 0 })
      const [hourly] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'hourly'`
      assert.strictEqual(hourly!.n, 1)
      const keys = yield* sql<{ unique_key: string }>`
        SELECT unique_key FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'hourly'`
      assert.strictEqual(keys[0]!.unique_key, "cron:Noop:0 * * * *:2026-03-01T10:30:00.000Z")
    }))
})

describe("leadership in running nodes", () => {
  const leaderPrefix = uniquePrefix("lead")
  layer(testLayer(leaderPrefix, { maxConnections: 10 }), { excludeTestServices: true })((it) => {
    it.effect("exactly one of two nodes leads; when it stops, the other takes over at once", () =>
      Effect.gen(function*() {
        const options = { prefix: leaderPrefix, workers: [Noop], queues: {} }
        const a = yield* startNode({ ...options, node: "lead-a" })
        const b = yield* startNode({ ...options, node: "lead-b" })
        yield* waitFor("a leader", Effect.map(Effect.all([a.oban.isLeader, b.oban.isLeader]), ([x, y]) => x || y))
        const [aLeads, bLeads] = yield* Effect.all([a.oban.isLeader, b.oban.isLeader])
        assert.isTrue(aLeads !== bLeads)
        const [first, second] = aLeads ? [a, b] : [b, a]
        const started = Date.now()
        yield* first.stop
        yield* waitFor("the other to lead", second.oban.isLeader)
        // Well within the renew interval (15 s), node shutdown included: the resignation woke it.
        assert.isBelow(Date.now() - started, 8_000)
      }))

    it.effect("an invalid cron expression or time zone fails the layer with InvalidConfigError", () =>
      Effect.gen(function*() {
        for (
          const entry of [
            Cron.entry("61 * * * *", Noop, { n: 1 }),
            Cron.entry("* * * * *", Noop, { n: 1 }, { timezone: "Mars/Olympus" }),
            // Parses, but matches no date: at run time it stopped every entry's slots.
            Cron.entry("0 0 30 2 *", Noop, { n: 1 }),
            // Names are part of each slot's unique key: an empty one, or one PostgreSQL cannot store.
            Cron.entry("* * * * *", Noop, { n: 1 }, { name: "" }),
            Cron.entry("* * * * *", Noop, { n: 1 }, { name: "a\u0000b" })
          ]
        ) {
          const error = yield* Layer.build(Oban.layer({ prefix: leaderPrefix, workers: [Noop], crontab: [entry] })).pipe(
            Effect.scoped,
            Effect.flip
          )
          assert.strictEqual(error._tag, "InvalidConfigError")
          if (error._tag === "InvalidConfigError") assert.strictEqual(error.field, "crontab")
        }
      }))

    it.effect("cron runs on a node with a crontab while a node without one leads the cluster", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* sql`TRUNCATE ${sql(leaderPrefix)}.oban_jobs, ${sql(leaderPrefix)}.oban_jobs_finished`
        // A web node that only inserts starts first and takes the leader's lease.
        const web = yield* startNode({ prefix: leaderPrefix, workers: [Noop], queues: {}, node: "web" })
        yield* waitFor("web to lead", web.oban.isLeader)
        const crontab = [Cron.entry("* * * * * *", Noop, { n: 7 }, { name: "every-second" })]
        const scheduler = yield* startNode({ prefix: leaderPrefix, workers: [Noop], queues: {}, node: "scheduler", crontab })
        assert.isTrue(yield* web.oban.isLeader)
        assert.isFalse(yield* scheduler.oban.isLeader)
        // Before, cron ran only on the leader, with the leader's (empty) crontab: no job at all.
        const slots = Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(leaderPrefix)}.oban_jobs_all WHERE unique_key LIKE 'cron:every-second:%'`,
          (rows) => rows[0]!.n
        )
        yield* waitFor("three slots inserted", Effect.map(slots, (n) => n >= 3), "20 seconds")
        // The scheduler runs no queue, so it has no producer row: its crontab is read from the cron lease.
        const view = yield* Cluster.view.pipe(Effect.provide(Config.layer({ prefix: leaderPrefix })))
        assert.deepStrictEqual([view.leader?.node, view.cronLeader?.node], ["web", "scheduler"])
        assert.deepStrictEqual(view.nodes, [])
        assert.deepStrictEqual(view.crons.map((cron) => [cron.name, cron.expression, cron.worker, cron.nodes]), [
          ["every-second", "* * * * * *", "Noop", ["scheduler"]]
        ])
        // A node of an earlier release takes the lease over (as after an expiry) without writing meta:
        // the row's crontab is the former holder's, and is not shown as the new holder's.
        yield* sql`UPDATE ${sql(leaderPrefix)}.oban_peers SET node = 'older-release', instance = 'older' WHERE name = 'cron'`
        const taken = yield* Cluster.view.pipe(Effect.provide(Config.layer({ prefix: leaderPrefix })))
        assert.deepStrictEqual([taken.cronLeader?.node, taken.crons], ["older-release", []])
        yield* scheduler.stop
        yield* web.stop
      }))

    it.effect("a pruner that would remove cron slots before a new leader's look back fails the layer", () =>
      Effect.gen(function*() {
        const crontab = [Cron.entry("* * * * *", Noop, { n: 1 })]
        const error = yield* Layer.build(
          Oban.layer({ prefix: leaderPrefix, workers: [Noop], crontab, pruner: { maxAge: "30 seconds" } })
        ).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(error._tag, "InvalidConfigError")
        if (error._tag === "InvalidConfigError") {
          assert.strictEqual(error.field, "pruner.maxAge")
          assert.include(error.message, "would run twice")
        }
        // A lease that outlives the look back would lose the slots between a crash and the takeover.
        const ttl = yield* Layer.build(
          Oban.layer({ prefix: leaderPrefix, workers: [Noop], crontab, leader: { ttl: "75 seconds", renewInterval: "20 seconds" } })
        ).pipe(Effect.scoped, Effect.flip)
        assert.deepStrictEqual([ttl._tag, (ttl as { field?: string }).field], ["InvalidConfigError", "leader.ttl"])
        // Without a crontab, or with a minute, the same pruner is fine.
        yield* Layer.build(Oban.layer({ prefix: leaderPrefix, workers: [Noop], pruner: { maxAge: "30 seconds" } })).pipe(Effect.scoped)
        yield* Layer.build(Oban.layer({ prefix: leaderPrefix, workers: [Noop], crontab, pruner: { maxAge: "1 minute" } })).pipe(Effect.scoped)
      }))
  })
})

