/**
 * A node behind a TCP proxy that breaks the network the ways production does:
 * replies lost after the server committed, and an outage of every connection
 * longer than `rescueAfter` (also one during which its paused queue is resumed
 * for every node). Every perform is counted, so a duplicate shows.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Redacted, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../src/Cluster.ts"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Reconciler from "../src/internal/reconciler.ts"
import * as Pruner from "../src/Pruner.ts"
import * as Rescuer from "../src/Rescuer.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"
import { startProxy } from "./support/proxy.ts"

const runs = new Map<number, number>()
const Work = Worker.make("Work", {
  args: Schema.Struct({ n: Schema.Int, millis: Schema.Int }),
  perform: (job) =>
    Effect.andThen(
      Effect.sync(() => runs.set(job.id, (runs.get(job.id) ?? 0) + 1)),
      Effect.sleep(job.args.millis)
    )
})

/** Whether the `Endless` job's perform began, and when it was interrupted (Date.now()), if it was. */
let endlessStarted = false
let endlessInterruptedAt: number | undefined
const Endless = Worker.make("Endless", {
  args: Schema.Struct({}),
  perform: () =>
    Effect.andThen(Effect.sync(() => (endlessStarted = true)), Effect.never).pipe(
      Effect.onInterrupt(() => Effect.sync(() => (endlessInterruptedAt = Date.now())))
    )
})

const direct = PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 4 })

/** Room for a fetch beside every maintenance statement stuck on a lost reply. */
const poolSize = 10

/** A node whose every connection (pool, LISTEN, liveness) goes through `url`. */
const nodeBehind = (
  url: string,
  prefix: string,
  options: Partial<Oban.LayerOptions<typeof Work | typeof Endless>> = {},
  poolScope?: Scope.Scope
) =>
  Effect.gen(function*() {
    const pool = PgClient.layer({ url: Redacted.make(url), maxConnections: poolSize, connectTimeout: "2 seconds" })
    const context = yield* (poolScope === undefined ? Layer.build(pool) : Layer.buildWithScope(pool, poolScope))
    // Open every pooled connection while the network works: once replies are dropped no new
    // connection can finish its handshake, and the statements whose replies are lost (the fetch,
    // and each maintenance loop's) hold theirs until their deadlines, so a fetch must find one open.
    yield* Effect.all(
      Array.from({ length: poolSize }, () => Effect.flatMap(SqlClient, (sql) => sql`SELECT pg_sleep(0.05)`)),
      { concurrency: "unbounded", discard: true }
    ).pipe(Effect.provideContext(context))
    return yield* startNode({
      prefix,
      node: "behind-proxy",
      queues: { default: 5 },
      workers: [Work, Endless],
      pollInterval: "200 millis",
      ...options
    }).pipe(Effect.provideContext(context))
  })

/** Fast maintenance: a rescuer that looks every 100 ms, and producers silent for 3 s count as dead. */
const fastMaintenance = {
  rescuer: { rescueAfter: "3 seconds", interval: "100 millis" },
  leader: { ttl: "2 seconds", renewInterval: "500 millis" }
} as const

/**
 * Heartbeats far enough apart that none is sent while the claim below is on its way. With replies
 * dropped a heartbeat fails, and a node whose heartbeat failed claims nothing: a fetch in flight as
 * replies stop waits out its 15 s deadline, and the one after it, which claims, must come before the
 * next heartbeat has failed (with the default 10 s interval it sometimes did not, and the test waited
 * for a claim that could not come).
 */
const quietHeartbeats = { heartbeatInterval: "30 seconds" } as const

/** A migrated schema `prefix`, dropped when the scope closes, and a proxy in front of the server. */
const schemaAndProxy = (prefix: string) =>
  Effect.gen(function*() {
    yield* dropSchemaOnClose(prefix)
    yield* Migrations.run({ prefix })
    return yield* startProxy(databaseUrl())
  })

/** Each job's state, attempt and errors, in id order. */
const outcomes = (prefix: string, jobs: ReadonlyArray<{ readonly id: number }>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly state: string; readonly attempt: number; readonly errors: ReadonlyArray<unknown> }>`
      SELECT state::text AS state, attempt, errors FROM ${sql(prefix)}.oban_jobs_all
      WHERE id IN ${sql.in(jobs.map((job) => job.id))} ORDER BY id`
    return rows.map((row) => [row.state, row.attempt, row.errors] as const)
  })

const executingOrDone = (prefix: string, total: number) =>
  Effect.map(countByState(prefix), (c) => (c["executing"] ?? 0) + (c["completed"] ?? 0) === total)

describe("a node behind a broken network", () => {
  const lostReply = uniquePrefix("lost_reply")
  it.live("a fetch whose reply is lost, then an outage: its claimed jobs are released and run once, none stays executing", () =>
    Effect.gen(function*() {
      runs.clear()
      const prefix = lostReply
      const proxy = yield* schemaAndProxy(prefix)
      yield* nodeBehind(proxy.url, prefix, quietHeartbeats)
      yield* producersRegistered(prefix)
      // The next fetch reaches the server and commits; its result never comes back.
      yield* proxy.dropReplies
      const jobs = yield* Oban.insertAll(Array.from({ length: 5 }, (_, n) => Work.job({ n, millis: 0 })))
      // A poll's fetch may be in flight when replies stop: it waits out its 15 s deadline, then the next one claims.
      yield* waitFor("the server claimed the jobs", executingOrDone(prefix, 5), "45 seconds")
      // Then the database is gone for a while: releasing the claim must outlast the outage.
      yield* proxy.refuse
      yield* proxy.cut
      yield* Effect.sleep("15 seconds")
      yield* proxy.restore
      yield* proxy.accept
      yield* waitFor(
        "every job completed",
        Effect.map(countByState(prefix), (c) => c["completed"] === 5),
        "60 seconds"
      )
      assert.deepStrictEqual(jobs.map((job) => runs.get(job.id)), [1, 1, 1, 1, 1])
      // The release gave back exactly the attempts the lost claim used (none for jobs it claimed ahead):
      // each job completed on its first counted attempt.
      assert.deepStrictEqual((yield* outcomes(prefix, jobs)).map(([, attempt]) => attempt), [1, 1, 1, 1, 1])
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: lostReply })), Effect.provide(direct)), 120_000)
})

describe("a fetch whose reply comes after rescueAfter", () => {
  const lateReply = uniquePrefix("late_reply")
  it.live("its jobs are the producer's: the reconciler leaves them, and each runs once on its one attempt", () =>
    Effect.gen(function*() {
      runs.clear()
      const prefix = lateReply
      const proxy = yield* schemaAndProxy(prefix)
      // The reconciler looks every 100 ms for claims of this node older than 3 s that it does not answer for.
      yield* nodeBehind(proxy.url, prefix, { ...fastMaintenance, heartbeatInterval: "2 seconds", queues: { slow_link: 5 } })
      yield* producersRegistered(prefix)
      // Only the connection that sends the fetch (its parameters name the queue) gets its replies late.
      yield* proxy.holdRepliesAfter("slow_link")
      // One attempt each: a release by the reconciler keeps the attempt the claim counted, and discards them.
      const jobs = yield* Oban.insertAll(
        Array.from({ length: 3 }, (_, n) => Work.job({ n, millis: 0 }, { queue: "slow_link", maxAttempts: 1 }))
      )
      yield* waitFor("the server claimed the jobs", executingOrDone(prefix, 3), "10 seconds")
      // Past rescueAfter and within the fetch's 15 s deadline, the reply comes.
      yield* Effect.sleep("4500 millis")
      yield* proxy.release
      yield* waitFor(
        "every job finished",
        Effect.map(countByState(prefix), (c) => (c["completed"] ?? 0) + (c["discarded"] ?? 0) === 3),
        "20 seconds"
      )
      assert.deepStrictEqual(yield* outcomes(prefix, jobs), jobs.map(() => ["completed", 1, []]))
      assert.deepStrictEqual(jobs.map((job) => runs.get(job.id)), [1, 1, 1])
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: lateReply })), Effect.provide(direct)), 60_000)
})

/**
 * A maintenance transaction (`run`, on a pool behind a proxy) that takes a job executing under
 * producer `mine` since two minutes ago (stranded for the reconciler, orphaned for the rescuer: no
 * producer row), or one completed two days ago (for the pruner), and loses its COMMIT on a link that
 * died: the server ends the transaction within seconds, not when the system gives the connection up,
 * and the job is as it was, unlocked.
 */
const commitLost = (
  prefix: string,
  run: (sql: SqlClient, prefix: string, id: number) => Effect.Effect<unknown, unknown>,
  state: "executing" | "completed" = "executing"
) =>
  Effect.gen(function*() {
    const proxy = yield* schemaAndProxy(prefix)
    const sql = yield* SqlClient
    const [job] = yield* Oban.insertAll([Work.job({ n: 0, millis: 0 })])
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
               attempted_at = now() - interval '2 minutes', attempted_by = ARRAY['node', 'mine', 'lost-claim']
               WHERE id = ${job!.id}`
    // For the pruner: finished two days ago (a row of a release that kept finished jobs in this table).
    if (state === "completed") {
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', completed_at = now() - interval '2 days'
                 WHERE id = ${job!.id}`
    }
    const behind = yield* Layer.build(PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: 1 }))
    const proxied = yield* Effect.provideContext(Effect.gen(function*() {
      return yield* SqlClient
    }), behind)
    yield* proxy.blackholeAfter("COMMIT")
    const running = yield* Effect.forkChild(run(proxied, prefix, job!.id))
    // Its session, idle in its transaction after the statement that took the job (looked at without
    // locking the row, which would make that statement pass over it).
    const open = Effect.map(
      sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                                  WHERE state = 'idle in transaction' AND query LIKE ${`%${prefix}%`}`,
      (rows) => rows[0]!.n > 0
    )
    // A claim's `SKIP LOCKED` passes over the row while that transaction holds it.
    const free = sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${job!.id} FOR UPDATE SKIP LOCKED`
    // Idle between two of its statements counts too: wait until the one that takes the row has run.
    const holding = Effect.flatMap(open, (idle) => idle ? Effect.map(free, (rows) => rows.length === 0) : Effect.succeed(false))
    yield* waitFor("the statement ran and holds the row, its COMMIT lost", holding, "10 seconds")
    const heldSince = Date.now()
    yield* waitFor("the server ended the idle transaction", Effect.map(open, (idle) => !idle), "30 seconds")
    assert.isBelow(Date.now() - heldSince, 15_000)
    assert.strictEqual((yield* free).length, 1, "the row is free again")
    // Rolled back with its session: still executing, with no rescue entry.
    const [row] = yield* sql<{ readonly state: string; readonly errors: ReadonlyArray<unknown> }>`
      SELECT state::text AS state, errors FROM ${sql(prefix)}.oban_jobs WHERE id = ${job!.id}`
    assert.deepStrictEqual([row!.state, row!.errors], [state, []])
    yield* Fiber.interrupt(running)
  }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix })), Effect.provide(direct))

describe("a transaction of the library's whose COMMIT never arrives (its link died)", () => {
  it.live("the reconciler's release: the server ends it within seconds; the job is unlocked and not released", () =>
    commitLost(uniquePrefix("dead_commit"), (sql, prefix) =>
      Reconciler.runOnce({
        sql,
        prefix,
        producers: [{ id: "mine", unreturned: Effect.succeed({ jobs: [], claims: [] }) }],
        executor: { owned: Effect.succeed(new Set<number>()) },
        rescueAfter: Duration.seconds(60)
      })), 60_000)

  it.live("the leader's rescue: the server ends it within seconds; the job is unlocked and not rescued", () =>
    commitLost(uniquePrefix("dead_rescue"), (sql, prefix) => Rescuer.runOnce({ sql, prefix, confirm: Effect.succeed(true) })), 60_000)

  it.live("the pruner's delete: the server ends it within seconds; the job is unlocked and kept", () =>
    commitLost(uniquePrefix("dead_prune"), (sql, prefix) => Pruner.runOnce({ sql, prefix, maxAge: Duration.days(1) }), "completed"), 60_000)

  it.live("a call that opens one in the caller's fiber (retryJob): the server ends it within seconds; the job is unlocked and not retried", () =>
    commitLost(
      uniquePrefix("dead_retry"),
      (sql, _prefix, id) => Effect.provideService(Oban.retryJob(id), SqlClient, sql),
      "completed"
    ), 60_000)
})

describe("a fetch whose reply is lost as its node shuts down", () => {
  const lostAtShutdown = uniquePrefix("lost_at_shutdown")
  it.live("the jobs it claimed go back with their attempts, not to a rescue that would discard them unrun", () =>
    Effect.gen(function*() {
      runs.clear()
      const prefix = lostAtShutdown
      const proxy = yield* schemaAndProxy(prefix)
      const node = yield* nodeBehind(proxy.url, prefix, quietHeartbeats)
      yield* producersRegistered(prefix)
      // The next fetch reaches the server and commits; its reply is dropped.
      yield* proxy.dropReplies
      // One attempt each: a rescue keeps the attempt the claim counted, and would discard them.
      const jobs = yield* Oban.insertAll(Array.from({ length: 3 }, (_, n) => Work.job({ n, millis: 0 }, { maxAttempts: 1 })))
      yield* waitFor("the server claimed the jobs", executingOrDone(prefix, 3), "45 seconds")
      // Every connection cut: the fetch fails at once, and its release waits a second (see lostClaims.ts).
      // The node shuts down within it; new connections work again.
      yield* proxy.restore
      yield* proxy.cut
      yield* node.stop
      assert.deepStrictEqual(yield* outcomes(prefix, jobs), jobs.map(() => ["available", 0, []]))
      assert.strictEqual(runs.size, 0)
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: lostAtShutdown })), Effect.provide(direct)), 120_000)
})

describe("an outage of every connection", () => {
  const outage = uniquePrefix("outage")
  it.live("longer than rescueAfter: no live node's job is rescued; each runs once and completes", () =>
    Effect.gen(function*() {
      runs.clear()
      yield* dropSchemaOnClose(outage)
      yield* Migrations.run({ prefix: outage })
      const proxy = yield* startProxy(databaseUrl())
      const maintenance = { ...fastMaintenance, heartbeatInterval: "1 second" } as const
      yield* nodeBehind(proxy.url, outage, { node: "left", ...maintenance })
      yield* nodeBehind(proxy.url, outage, { node: "right", ...maintenance })
      // Ten jobs of 12 s each, five per node: they outlive the outage below.
      const jobs = yield* Oban.insertAll(Array.from({ length: 10 }, (_, n) => Work.job({ n, millis: 12_000 })))
      yield* waitFor("every job running", Effect.sync(() => runs.size === 10))
      // Wait until both nodes have been connected long enough that a rescuer may run at all.
      yield* Effect.sleep("3500 millis")
      yield* proxy.refuse
      yield* proxy.cut
      yield* Effect.sleep("6 seconds")
      yield* proxy.accept
      yield* waitFor("every job completed", Effect.map(countByState(outage), (c) => c["completed"] === 10), "60 seconds")
      assert.deepStrictEqual(jobs.map((job) => runs.get(job.id)), jobs.map(() => 1))
      const sql = yield* SqlClient
      const rescued = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM ${sql(outage)}.oban_jobs_all, jsonb_array_elements(errors) e WHERE e->>'kind' = 'rescued'`
      assert.strictEqual(rescued[0]!.n, 0)
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: outage })), Effect.provide(direct)), 120_000)

  const blackhole = uniquePrefix("blackhole")
  it.live("a black-holed network does not hang a node's shutdown", () =>
    Effect.gen(function*() {
      runs.clear()
      yield* dropSchemaOnClose(blackhole)
      yield* Migrations.run({ prefix: blackhole })
      const proxy = yield* startProxy(databaseUrl())
      const node = yield* nodeBehind(proxy.url, blackhole, { shutdownGracePeriod: "1 second" })
      yield* Oban.insertAll(Array.from({ length: 3 }, (_, n) => Work.job({ n, millis: 500 })))
      yield* waitFor("the jobs ran", Effect.sync(() => runs.size === 3))
      yield* proxy.blackhole
      const started = Date.now()
      yield* node.stop
      const took = Date.now() - started
      // Grace (1 s), then each step that needs the database gives up after its own deadline (flush 5 s,
      // producer rows 3 s; the resign's 3 s run beside them) without waiting for the driver to drop the
      // connection: about 8.5 s on a quiet machine.
      assert.isBelow(took, 30_000, `shutdown took ${took} ms`)
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: blackhole })), Effect.provide(direct)), 120_000)
})

describe("replies lost while a fetch and a maintenance transaction wait", () => {
  const deaf = uniquePrefix("deaf_begin")
  it.live("the node stops without waiting out the fetch's deadline, and its pool closes: no BEGIN is left waiting", () =>
    Effect.gen(function*() {
      yield* dropSchemaOnClose(deaf)
      yield* Migrations.run({ prefix: deaf })
      const proxy = yield* startProxy(databaseUrl())
      // The pool in a scope of its own, closed below: a statement that never ends keeps its connection
      // checked out, and the pool's close waits for every connection to come back.
      const poolScope = yield* Scope.make()
      // Three queues, each with its fetch in flight: their producers stop side by side, not one after another.
      const queues = { default: 5, mail: 5, reports: 5 }
      const node = yield* nodeBehind(
        proxy.url,
        deaf,
        { queues, pruner: { interval: "100 millis" }, shutdownGracePeriod: "1 second" },
        poolScope
      )
      yield* producersRegistered(deaf, 3)
      // The pruner runs on the leader only.
      yield* waitFor("the node leads", node.oban.isLeader)
      // A job that never ends, running as shutdown begins: it gets its grace period from the start of
      // shutdown, while the producers stop beside it.
      endlessStarted = false
      endlessInterruptedAt = undefined
      yield* Oban.insert(Endless.job({}))
      // Its perform began, not only its row `executing`: a claim is committed before its reply reaches the
      // node, and a reply still on its way when replies stop is lost with the job it claimed (CI once did).
      yield* waitFor("the endless job runs", Effect.sync(() => endlessStarted))
      // The next poll's fetch of each queue (every 200 ms), and the pruner's next run (every 100 ms, in a
      // transaction) with its BEGIN, get no reply.
      yield* proxy.dropReplies
      yield* Effect.sleep("1 second")
      const started = Date.now()
      yield* node.stop
      const stopped = Date.now() - started
      // The fetch is not waited for to its 15 s deadline, only until the driver gives its connection up
      // (5 s, so its claim cannot commit after the release); then the release (5 s) and removing the
      // producer rows (3 s) give up at their deadlines: about 13 s, where waiting out the fetch took 22 s
      // for one queue (and stopping the producers one after another took 28 s for three).
      assert.isBelow(stopped, 17_000, `the node took ${stopped} ms to stop`)
      // And the fetches' ends were waited for: without that the release comes at once, about 8 s in all.
      assert.isAtLeast(stopped, 9_500, `the node did not wait for its fetches to end: ${stopped} ms`)
      // The running job was interrupted when its 1 s grace period ended, not after the producers had
      // stopped (about 10 s in: a grace period that began only then).
      assert.isDefined(endlessInterruptedAt, "the endless job was not interrupted")
      const interruptedAfter = endlessInterruptedAt! - started
      assert.isAtLeast(interruptedAfter, 900, `the job was interrupted ${interruptedAfter} ms into shutdown`)
      assert.isBelow(interruptedAfter, 3_000, `the job was interrupted ${interruptedAfter} ms into shutdown`)
      // Closing a pool cannot be interrupted: it runs in a fiber of its own, and the test waits for it a minute.
      const closing = yield* Effect.forkDetach(Scope.close(poolScope, Exit.void))
      yield* Fiber.join(closing).pipe(
        Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.die(new Error("the pool never closed")) })
      )
      // The driver gives up each connection whose statement was interrupted within 5 s.
      const closed = Date.now() - started - stopped
      assert.isBelow(closed, 15_000, `the pool took ${closed} ms to close`)
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: deaf })), Effect.provide(direct)), 120_000)
})

describe("a pause for every node and an outage", () => {
  const away = uniquePrefix("pause_away")
  it.live("a node cut off past rescueAfter while its queue was resumed for every node runs it again when it is back; its own pause holds, and a scale for it alone given meanwhile applies", () =>
    Effect.gen(function*() {
      runs.clear()
      yield* dropSchemaOnClose(away)
      yield* Migrations.run({ prefix: away })
      const proxy = yield* startProxy(databaseUrl())
      const maintenance = { ...fastMaintenance, heartbeatInterval: "500 millis" } as const
      const sql = yield* SqlClient
      const producerRows = Effect.map(
        sql<{ queue: string; paused: boolean }>`
          SELECT queue, paused FROM ${sql(away)}.oban_producers WHERE node = 'away' AND dead_at IS NULL ORDER BY queue`,
        (rows) => rows.map((row) => [row.queue, row.paused] as const)
      )
      // Kept before either node starts; the node behind the proxy runs "mail" and "own", the other node
      // (direct, the one left to lead and rescue during the outage) runs neither.
      yield* Cluster.pauseQueue("mail")
      yield* Cluster.pauseQueue("free")
      const node = yield* nodeBehind(proxy.url, away, { node: "away", queues: { mail: 5, own: 5, free: 5 }, ...maintenance })
      yield* startNode({ prefix: away, node: "here", queues: { other: 1 }, workers: [Work], pollInterval: "200 millis", ...maintenance })
      // Registered: a command for one node reaches only the producers that have rows (one given before
      // would find none, and say so).
      yield* node.oban.ready
      yield* node.oban.pauseQueue("own", { scope: "node" })
      // "free" is resumed for this node alone: it runs here while paused for nodes that start later.
      assert.strictEqual(yield* Cluster.resumeQueue("free", { node: "away" }), 1)
      yield* waitFor("the node's rows", Effect.map(producerRows, (rows) =>
        JSON.stringify(rows) === JSON.stringify([["free", false], ["mail", true], ["own", true]])))
      // And the node itself: a signal it missed (its LISTEN connection not up yet) is read back by its next
      // heartbeat (or, after an outage that got its rows marked dead, by its registration, as the scale below).
      yield* waitFor("the node applied them", Effect.map(
        Effect.all([node.oban.checkQueue("free"), node.oban.checkQueue("own")]),
        ([free, own]) => !free.paused && own.paused
      ))
      // The outage: every connection of the node cut and refused, long enough for the other node to mark its rows dead.
      yield* proxy.refuse
      yield* proxy.cut
      yield* waitFor("the node's rows marked dead", Effect.map(producerRows, (rows) => rows.length === 0), "30 seconds")
      // Resumed for every node meanwhile: the node sees neither the row update nor the signal.
      yield* Cluster.resumeQueue("mail")
      // Scaled for this node alone meanwhile: no running producer took it, but its dead row keeps it.
      assert.strictEqual(yield* Cluster.scaleQueue("own", 3, { node: "away" }), 0)
      yield* proxy.accept
      yield* waitFor("the node registered again", Effect.map(producerRows, (rows) => rows.length === 3), "30 seconds")
      const [mail, own, free] = yield* Oban.insertAll([
        Work.job({ n: 1, millis: 0 }, { queue: "mail" }),
        Work.job({ n: 2, millis: 0 }, { queue: "own" }),
        Work.job({ n: 3, millis: 0 }, { queue: "free" })
      ])
      yield* waitFor("the mail job ran on the node back from the outage", Effect.sync(() => runs.get(mail!.id) === 1), "30 seconds")
      // Resumed for itself under a kept pause, and no command for every node of "free" since: it still runs it.
      yield* waitFor("the free job ran", Effect.sync(() => runs.get(free!.id) === 1), "30 seconds")
      assert.deepStrictEqual(yield* producerRows, [["free", false], ["mail", false], ["own", true]])
      assert.strictEqual((yield* node.oban.checkQueue("own")).limit, 3)
      yield* Effect.sleep("1 second")
      assert.isUndefined(runs.get(own!.id), "its own pause holds")
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix: away })), Effect.provide(direct)), 120_000)
})
