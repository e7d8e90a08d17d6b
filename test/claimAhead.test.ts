/**
 * Claiming ahead: a producer of short jobs keeps up to `limit` claimed jobs
 * waiting beside the running ones. Those are given back, with their attempt,
 * on shutdown and on pause, and a cancelled one never starts.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { busyFor, countByState, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("ahead")

const runs = new Map<number, number>()
/** While set, a Short job that starts waits for it before its 40 ms: a test holds the buffer still. */
let gate: Deferred.Deferred<void> | undefined
/** The jobs that waited (or wait) at the gate. */
const atGate = new Set<number>()
const Short = Worker.make("Short", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "short",
  perform: (job) =>
    Effect.sync(() => runs.set(job.id, (runs.get(job.id) ?? 0) + 1)).pipe(
      Effect.andThen(Effect.suspend(() => {
        if (gate === undefined) return Effect.void
        atGate.add(job.id)
        return Deferred.await(gate)
      })),
      Effect.andThen(Effect.sleep("40 millis"))
    )
})

const limit = 2

/** A job that holds the CPU for 15 ms without ever yielding. */
const Busy = Worker.make("Busy", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "busy",
  perform: () => Effect.sync(() => busyFor(15))
})

/** Instant jobs; the first to start once `holdNext` is set holds the CPU for `holdMillis`, without yielding. */
let holdNext = false
let held: { readonly id: number; readonly endedAt: number } | undefined
const holdMillis = 600
const Instant = Worker.make("Instant", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "instant",
  perform: (job) =>
    Effect.sync(() => {
      runs.set(job.id, (runs.get(job.id) ?? 0) + 1)
      if (!holdNext) return
      holdNext = false
      busyFor(holdMillis)
      held = { id: job.id, endedAt: Date.now() }
    })
})

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_producers, ${sql(prefix)}.oban_peers`
  runs.clear()
  atGate.clear()
})

const start = startNode({
  prefix,
  queues: { short: limit },
  workers: [Short],
  pollInterval: "100 millis",
  shutdownGracePeriod: "10 seconds"
})

/** Waits until more jobs are executing than the limit allows to run, i.e. some were claimed ahead. */
const claimedAhead = waitFor(
  "jobs claimed ahead of the limit",
  Effect.map(countByState(prefix), (c) => (c["executing"] ?? 0) > limit),
  "15 seconds"
)

/**
 * 200 Short jobs on a node that claims ahead; once it does, the gate is set: jobs that start from then
 * on wait for the returned deferred.
 */
const gatedOnceAhead = Effect.gen(function*() {
  yield* truncate
  yield* Oban.insertAll(Array.from({ length: 200 }, (_, n) => Short.job({ n })))
  yield* start
  yield* claimedAhead
  const open = yield* Deferred.make<void>()
  gate = open
  return open
})

const jobRows = Effect.gen(function*() {
  const sql = yield* SqlClient
  return yield* sql<{ id: number; state: string; attempt: number; errors: ReadonlyArray<unknown> }>`
    SELECT id::int AS id, state::text AS state, attempt, errors FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
})

layer(testLayer(prefix), { excludeTestServices: true })("claiming ahead", (it) => {
  it.effect("a waiting job has used no attempt; shutdown gives it back; nothing runs twice or stays executing", () =>
    Effect.gen(function*() {
      yield* truncate
      // One attempt each: a job claimed ahead that counted its attempt would be discarded by a rescue.
      yield* Oban.insertAll(Array.from({ length: 200 }, (_, n) => Short.job({ n }, { maxAttempts: 1 })))
      const node = yield* start
      yield* claimedAhead
      const sql = yield* SqlClient
      const executing = yield* sql<{ attempt: number }>`
        SELECT attempt FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing'`
      assert.isAbove(executing.filter((row) => row.attempt === 0).length, 0, "waiting jobs count no attempt")
      yield* node.stop
      const rows = yield* jobRows
      assert.deepStrictEqual(rows.filter((row) => row.state === "executing"), [])
      for (const row of rows) {
        if (row.state === "completed") assert.strictEqual(runs.get(row.id), 1)
        else assert.deepStrictEqual([row.state, row.attempt, row.errors, runs.get(row.id)], ["available", 0, [], undefined])
      }
    }).pipe(Effect.scoped))

  it.effect("pause gives waiting jobs back; the running ones finish", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* Oban.insertAll(Array.from({ length: 200 }, (_, n) => Short.job({ n })))
      const node = yield* start
      yield* claimedAhead
      yield* node.oban.pauseQueue("short")
      yield* waitFor("nothing executing", Effect.map(countByState(prefix), (c) => (c["executing"] ?? 0) === 0))
      const rows = yield* jobRows
      for (const row of rows.filter((row) => row.state === "available")) {
        assert.deepStrictEqual([row.attempt, runs.get(row.id)], [0, undefined])
      }
      // A pause for every node is kept for the queue: the next test's node would start paused.
      yield* node.oban.resumeQueue("short")
    }).pipe(Effect.scoped))

  it.effect("a give-back the database refuses (the rows locked) is tried again until it gets through", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      yield* Oban.insertAll(Array.from({ length: 200 }, (_, n) => Short.job({ n }, { maxAttempts: 1 })))
      const node = yield* start
      yield* claimedAhead
      // The jobs that start from now on wait at the gate, so the buffer holds still.
      const open = yield* Deferred.make<void>()
      gate = open
      // Another transaction holds every row of the queue (so no claim takes more meanwhile): the
      // pause's give-back of the waiting jobs waits out its deadline.
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE queue = 'short' FOR UPDATE`
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      yield* node.oban.pauseQueue("short", { scope: "node" })
      // Held past the give-back's 5 s deadline.
      yield* Effect.sleep("7 seconds")
      // The give-back was refused: jobs besides the two running at the gate are still executing.
      assert.isAbove((yield* countByState(prefix))["executing"] ?? 0, limit)
      yield* Deferred.succeed(release, undefined)
      gate = undefined
      yield* Deferred.succeed(open, undefined)
      // Given back by the retry, not by the reconciler (a minute later, with a rescue entry).
      yield* waitFor("nothing executing", Effect.map(countByState(prefix), (c) => (c["executing"] ?? 0) === 0), "15 seconds")
      const rows = yield* jobRows
      for (const row of rows) {
        if (row.state === "completed") assert.strictEqual(runs.get(row.id), 1)
        else assert.deepStrictEqual([row.state, row.attempt, row.errors, runs.get(row.id)], ["available", 0, [], undefined])
      }
    }).pipe(Effect.ensuring(Effect.sync(() => (gate = undefined))), Effect.scoped), 45_000)

  it.effect("a waiting job that is cancelled ends cancelled and never completes", () =>
    Effect.gen(function*() {
      // The jobs that start from now on wait: the newest claimed stays in the buffer until the node has
      // heard of the cancel (NOTIFY, after the row changed), however long this takes (it would otherwise
      // start about a second after it was claimed). The gate opens 3 s after the cancel.
      const held = yield* gatedOnceAhead
      const sql = yield* SqlClient
      // The executing job that has not started yet: the newest of those claimed.
      const [waiting] = yield* sql<{ id: number }>`
        SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing' ORDER BY id DESC LIMIT 1`
      const cancelled = yield* Oban.cancelJob(waiting!.id).pipe(
        Effect.ensuring(Effect.andThen(
          Effect.andThen(Effect.sleep("3 seconds"), Effect.sync(() => (gate = undefined))),
          Deferred.succeed(held, undefined)
        ))
      )
      assert.isTrue(cancelled._tag === "Some")
      yield* waitFor("the rest completed", Effect.map(countByState(prefix), (c) => c["completed"] === 199), "30 seconds")
      const row = (yield* jobRows).find((job) => job.id === waiting!.id)!
      assert.strictEqual(row.state, "cancelled")
      // It waited in the buffer and was dropped there: it never started.
      assert.strictEqual(runs.get(row.id), undefined)
    }).pipe(Effect.scoped))

  it.effect("a job claimed ahead that is cancelled while it runs counts the attempt it ran", () =>
    Effect.gen(function*() {
      // The jobs that start from now on wait at the gate: the one cancelled below is running.
      const open = yield* gatedOnceAhead
      const sql = yield* SqlClient
      // A job that started and waits at the gate (so it cannot finish first), which its claim took ahead
      // (no attempt counted in its row).
      let running: { readonly id: number } | undefined
      yield* waitFor(
        "a job claimed ahead that started",
        Effect.map(
          sql<{ id: number }>`SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs
                              WHERE state = 'executing' AND attempted_by[4] = 'ahead' AND attempt = 0`,
          (rows) => (running = rows.find((row) => atGate.has(row.id))) !== undefined
        ),
        "15 seconds"
      )
      const cancelled = yield* Oban.cancelJob(running!.id)
      assert.isTrue(cancelled._tag === "Some")
      // The node interrupts it and writes its outcome, which counts its attempt and ends the row cancelled.
      yield* waitFor(
        "the cancelled job's attempt counted",
        Effect.map(jobRows, (rows) => rows.find((row) => row.id === running!.id)?.attempt === 1),
        "10 seconds"
      )
      gate = undefined
      yield* Deferred.succeed(open, undefined)
      yield* waitFor("the rest completed", Effect.map(countByState(prefix), (c) => c["completed"] === 199), "30 seconds")
      const row = (yield* jobRows).find((job) => job.id === running!.id)!
      assert.deepStrictEqual([row.state, row.attempt, runs.get(row.id)], ["cancelled", 1, 1])
    }).pipe(Effect.ensuring(Effect.sync(() => (gate = undefined))), Effect.scoped))

  it.effect("a full claim of short jobs sends the next claim before its batch starts, so the two overlap", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* startNode({ prefix, queues: { instant: 10 }, workers: [Instant], pollInterval: "100 millis" })
      // A few jobs first: a producer claims ahead once it knows its queue's jobs are short.
      yield* Oban.insertAll(Array.from({ length: 20 }, (_, n) => Instant.job({ n })))
      yield* waitFor("the first jobs completed", Effect.map(countByState(prefix), (c) => c["completed"] === 20))
      holdNext = true
      yield* Oban.insertAll(Array.from({ length: 1_500 }, (_, n) => Instant.job({ n: 20 + n })))
      yield* waitFor("every job completed", Effect.map(countByState(prefix), (c) => c["completed"] === 1_520), "30 seconds")
      assert.deepStrictEqual(new Set(runs.values()), new Set([1]), "every job ran once")
      assert.strictEqual(runs.size, 1_520)
      // The first job of the big batch held the node's only thread; the batch's claim was full, so the
      // next claim was already on its way and ran on the server meanwhile. Had the batch started first,
      // no claim could have gone out before the hold ended.
      const sql = yield* SqlClient
      const claims = yield* sql<{ claim: string; at: Date; n: number }>`
        SELECT attempted_by[3] AS claim, min(attempted_at) AS at, count(*)::int AS n
        FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'instant' AND (args->>'n')::int >= 20
        GROUP BY 1 ORDER BY 2`
      const [heldClaim] = yield* sql<{ claim: string }>`
        SELECT attempted_by[3] AS claim FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${held!.id}`
      assert.strictEqual(claims.find((claim) => claim.claim === heldClaim!.claim)?.n, 500, "the held job's claim was full")
      const during = claims.filter((claim) => claim.claim !== heldClaim!.claim && claim.at.getTime() < held!.endedAt - 100)
      assert.isAbove(during.length, 0, `a claim ran while the batch before it held the thread: ${JSON.stringify(claims)}`)
    }).pipe(Effect.scoped))

  it.effect("jobs claimed ahead that never yield still let the event loop turn every few dozen jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* Oban.insertAll(Array.from({ length: 250 }, (_, n) => Busy.job({ n })))
      // The longest the event loop went without running a 5 ms timer while the node drained.
      let longestGap = 0
      let last = performance.now()
      const probe = setInterval(() => {
        const now = performance.now()
        longestGap = Math.max(longestGap, now - last)
        last = now
      }, 5)
      yield* startNode({ prefix, queues: { busy: 10 }, workers: [Busy], pollInterval: "100 millis" })
      yield* waitFor(
        "every busy job completed",
        Effect.map(countByState(prefix), (c) => c["completed"] === 250),
        "30 seconds"
      ).pipe(Effect.ensuring(Effect.sync(() => clearInterval(probe))))
      // 32 jobs of 15 ms start in one turn at most (about 0.5 s); all 250 in one turn would be 3.7 s.
      // The room between is for a loaded machine's stalls.
      assert.isBelow(longestGap, 2_500, `the event loop was held for ${Math.round(longestGap)} ms`)
    }).pipe(Effect.scoped))
})
