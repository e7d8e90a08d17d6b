import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { startDatabase } from "../support/database.ts"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Notifier from "../src/Notifier.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, uniquePrefix } from "./support/db.ts"
import { countByState, startLogged, startNode, waitFor } from "./support/node.ts"

const runs = new Map<number, number>()
/** What a job waits for before its work: nothing, unless a test holds jobs back. */
let gate: Promise<void> = Promise.resolve()
const Work = Worker.make("Work", {
  args: Schema.Struct({ n: Schema.Int }),
  perform: (job) =>
    Effect.promise(() => gate).pipe(
      Effect.andThen(Effect.sleep("5 millis")),
      Effect.andThen(Effect.sync(() => runs.set(job.id, (runs.get(job.id) ?? 0) + 1)))
    )
})

const total = 3_000

/** Inserts the jobs, runs `fault` while a node drains them, and checks every job ran exactly once. */
const drainThrough = (
  prefix: string,
  node: string,
  nodeDatabase: Layer.Layer<PgClient.PgClient | SqlClient, unknown>,
  fault: Effect.Effect<void, unknown, SqlClient>
) =>
  Effect.gen(function*() {
    runs.clear()
    yield* Migrations.run({ prefix })
    const jobs = yield* Oban.insertAll(Array.from({ length: total }, (_, n) => Work.job({ n })))
    // The node has a pool of its own, so that the test can watch from outside it.
    const nodeContext = yield* Layer.build(nodeDatabase)
    yield* startNode({ prefix, node, queues: { default: 10 }, workers: [Work], pollInterval: "200 millis" }).pipe(
      Effect.provideContext(nodeContext)
    )
    yield* waitFor("the drain to be under way", Effect.sync(() => runs.size > 200))
    yield* fault
    yield* waitFor(
      "every job completed",
      Effect.map(countByState(prefix).pipe(Effect.orElseSucceed(() => ({} as Record<string, number>))), (c) =>
        c["completed"] === total),
      "60 seconds"
    )
    assert.strictEqual(runs.size, total)
    const twice = jobs.filter((job) => runs.get(job.id) !== 1)
    assert.deepStrictEqual(twice.map((job) => job.id), [])
  }).pipe(Effect.provide(Config.layer({ prefix })))

describe("faults mid-drain", () => {
  it.live("every connection of the node is terminated, twice, a second apart: no job lost or run twice", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("kill")
      yield* dropSchemaOnClose(prefix)
      const terminateAll = Effect.gen(function*() {
        const sql = yield* SqlClient
        const killed = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE application_name IN ('effect-oban-fault', ${Notifier.applicationName("victim")})
            AND pid <> pg_backend_pid()`
        return killed[0]!.n
      })
      yield* drainThrough(
        prefix,
        "victim",
        PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 10, applicationName: "effect-oban-fault" }),
        Effect.gen(function*() {
          const first = yield* terminateAll.pipe(Effect.retry({ times: 5 }))
          yield* Effect.sleep("1 second")
          const second = yield* terminateAll.pipe(Effect.retry({ times: 5 }))
          assert.isAbove(first + second, 2)
        })
      )
    }).pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 4 }))), 120_000)

  it.live("a failover: the node's sessions end, come back read-only (the old primary, now a standby), then writable: no job lost or run twice", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const prefix = uniquePrefix("failover")
      yield* dropSchemaOnClose(prefix)
      // The node logs in as a role of its own, so that its sessions alone can be made read-only, as
      // every session on a standby is.
      const role = `${prefix}_node`
      yield* Effect.acquireRelease(
        sql.unsafe(`CREATE ROLE "${role}" LOGIN SUPERUSER PASSWORD 'failover'`),
        () => Effect.ignore(sql.unsafe(`DROP ROLE IF EXISTS "${role}"`))
      )
      const url = new URL(databaseUrl())
      url.username = role
      url.password = "failover"
      const endSessions = sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${role}`
      yield* drainThrough(
        prefix,
        "failed-over",
        PgClient.layer({ url: Redacted.make(url.toString()), maxConnections: 10, applicationName: "effect-oban-fault" }),
        Effect.gen(function*() {
          yield* sql.unsafe(`ALTER ROLE "${role}" SET default_transaction_read_only = on`)
          yield* endSessions
          yield* Effect.sleep("3 seconds")
          yield* sql.unsafe(`ALTER ROLE "${role}" RESET default_transaction_read_only`)
          yield* endSessions
        })
      )
    }).pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 4 }))), 120_000)

  it.live("the PostgreSQL server restarts: the node carries on without a restart of its own", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startDatabase({ forceEmbedded: true, maxConnections: 50 })),
        (db) => Effect.promise(() => db.stop())
      )
      const prefix = uniquePrefix("restart")
      const database = PgClient.layer({ url: Redacted.make(server.url), maxConnections: 10, connectTimeout: "2 seconds" })
      yield* drainThrough(prefix, "survivor", database, Effect.promise(() => server.restart())).pipe(
        Effect.provide(database)
      )
    }).pipe(Effect.scoped), 120_000)

  it.live("a node shuts down while the server restarts: the jobs it ran are completed, the jobs it claimed ahead go back, none is left executing", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startDatabase({ forceEmbedded: true, maxConnections: 50 })),
        (db) => Effect.promise(() => db.stop())
      )
      const database = PgClient.layer({ url: Redacted.make(server.url), maxConnections: 10, connectTimeout: "2 seconds" })
      const prefix = uniquePrefix("stopping")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        runs.clear()
        yield* Migrations.run({ prefix })
        yield* Oban.insertAll(Array.from({ length: total }, (_, n) => Work.job({ n })))
        const nodeContext = yield* Layer.build(database)
        const node = yield* startLogged({ prefix, node: "stopping", queues: { default: 10 }, workers: [Work] }).pipe(
          Effect.provideContext(nodeContext)
        )
        // Short jobs: once a few have run, the producer claims about a second of them ahead.
        yield* waitFor("the drain to be under way", Effect.sync(() => runs.size > 200))
        // Jobs that start from now on wait, so that those claimed ahead are still there at the stop.
        let open = (): void => {}
        gate = new Promise((resolve) => (open = resolve))
        // Opened whatever happens: jobs held at the gate would hold up the node's stop and hide a failure.
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            open()
            gate = Promise.resolve()
          })
        )
        // A transaction of the test's own locks the jobs table against writes, so that the node's last
        // statements (outcomes, the give-back of the jobs it claimed ahead) are in flight, waiting, when
        // the server ends every session as it shuts down (57P01); while it is down and starting up they
        // get no connection (refused, then 57P03) and must be sent again until it is back.
        const lockerContext = yield* Layer.build(
          PgClient.layer({ url: Redacted.make(server.url), maxConnections: 1, connectTimeout: "2 seconds" })
        )
        const locked = yield* Deferred.make<void>()
        yield* Effect.forkChild(Effect.exit(Effect.provideContext(
          Effect.gen(function*() {
            const own = yield* SqlClient
            yield* own.withTransaction(Effect.gen(function*() {
              yield* own`LOCK TABLE ${own(prefix)}.oban_jobs IN EXCLUSIVE MODE`
              yield* Deferred.succeed(locked, undefined)
              yield* own`SELECT pg_sleep(60)`
            }))
          }),
          lockerContext
        )))
        yield* Deferred.await(locked)
        // Jobs claimed now stay claimed: the lock stops every claim and outcome (reads go on).
        const claimed = new Set((yield* sql<{ id: number }>`
          SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs WHERE state = 'executing'`).map((row) => row.id))
        const stopping = yield* Effect.forkChild(node.stop)
        // The give-back of the jobs claimed ahead (its statement's own CTE), not another release.
        yield* waitFor(
          "the give-back to wait for the lock",
          Effect.map(sql<{ n: number }>`
            SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%free AS MATERIALIZED%'`, (rows) => rows[0]!.n > 0)
        )
        open()
        yield* Effect.promise(() => server.restart())
        yield* Fiber.join(stopping)

        const rows = yield* sql<{ id: number; state: string; attempt: number; claimed: boolean }>`
          SELECT id::int AS id, state::text, attempt, attempted_by IS NOT NULL AS claimed
          FROM ${sql(prefix)}.oban_jobs_all`
        assert.strictEqual(rows.length, total)
        assert.deepStrictEqual(rows.filter((row) => row.state === "executing").map((row) => row.id), [])
        // Every job that ran is completed (its outcome was not given up), and ran once.
        const ranNotCompleted = rows.filter((row) => runs.has(row.id) !== (row.state === "completed"))
        assert.deepStrictEqual(ranNotCompleted.map((row) => [row.id, row.state]), [])
        assert.deepStrictEqual([...runs].filter(([, n]) => n !== 1), [])
        // Jobs claimed ahead and never started are available again, with no attempt used.
        const givenBack = rows.filter((row) => row.state === "available" && row.claimed)
        assert.isAbove(givenBack.length, 0)
        assert.deepStrictEqual(givenBack.filter((row) => !claimed.has(row.id)).map((row) => row.id), [])
        assert.deepStrictEqual(givenBack.filter((row) => row.attempt !== 0).map((row) => row.id), [])
        assert.deepStrictEqual(node.lines.filter((line) => line.text.includes("rescued")).map((line) => line.text), [])
      }).pipe(Effect.provide(Config.layer({ prefix })), Effect.provide(database))
    }).pipe(Effect.scoped), 120_000)
})
