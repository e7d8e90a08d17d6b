/**
 * A node whose pool goes through a real PgBouncer in transaction mode (as on
 * many managed databases), with prepared statements off. Through PgBouncer
 * alone it leads, its heartbeats land, and polling runs its jobs; with its
 * own connections given a direct address (`directConnection`), NOTIFY wakes
 * it too. Unique inserts and staging work, and each job runs once. Skipped
 * when the `pgbouncer` binary is not installed.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema, type Scope } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, uniquePrefix } from "./support/db.ts"
import { countByState, jobRow, type LogLine, producersRegistered, startLogged, waitFor } from "./support/node.ts"
import { pgbouncerBinary, startPgBouncer } from "./support/pgbouncer.ts"

const runs = new Map<number, number>()
const Work = Worker.make("Work", {
  args: Schema.Struct({ n: Schema.Int }),
  perform: (job) => Effect.sync(() => void runs.set(job.id, (runs.get(job.id) ?? 0) + 1))
})

const completed = (prefix: string, count: number) =>
  Effect.map(countByState(prefix), (states) => (states["completed"] ?? 0) === count)

/**
 * Runs `test` with a pool that goes through a fresh PgBouncer (prepared statements off: PgBouncer
 * 1.18 cannot carry them) and `prefix` migrated through it.
 */
const throughPgBouncer = <A, E>(prefix: string, test: Effect.Effect<A, E, SqlClient | PgClient.PgClient | Scope.Scope>) =>
  Effect.gen(function*() {
    const bouncer = yield* startPgBouncer(databaseUrl())
    const pool = yield* Layer.build(PgClient.layer({ url: Redacted.make(bouncer), prepare: false, maxConnections: 5 }))
    return yield* Effect.gen(function*() {
      yield* dropSchemaOnClose(prefix)
      yield* Migrations.run({ prefix })
      return yield* test
    }).pipe(Effect.provideContext(pool), Effect.provide(Config.layer({ prefix })))
  }).pipe(Effect.scoped)

/** How old the freshest heartbeat is, in ms (by the database's clock). */
const heartbeatAge = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ age: number }>`
      SELECT (extract(epoch FROM now() - max(updated_at)) * 1000)::int AS age FROM ${sql(prefix)}.oban_producers`
    return row!.age
  })

/** Unique inserts of several jobs (a transaction of their own) and a scheduled job (staged by the leader). */
const insertTheRest = Effect.gen(function*() {
  const unique = { period: "forever" } as const
  yield* Oban.insertAll([Work.job({ n: 2 }, { unique }), Work.job({ n: 3 }, { unique }), Work.job({ n: 2 }, { unique })])
  yield* Oban.insert(Work.job({ n: 4 }, { scheduleIn: "500 millis" }))
})

const heardNothing = (lines: ReadonlyArray<LogLine>) => lines.some((line) => line.text.includes("LISTEN connection heard nothing"))

const fast = {
  stageInterval: "200 millis",
  heartbeatInterval: "300 millis",
  leader: { ttl: "3 seconds", renewInterval: "300 millis" }
} as const

describe.skipIf(pgbouncerBinary === undefined)("a node behind PgBouncer in transaction mode", () => {
  it.live("through PgBouncer alone: it leads, its heartbeats land, and polling runs each job once", () =>
    throughPgBouncer(uniquePrefix("pgbouncer"), Effect.gen(function*() {
      runs.clear()
      const prefix = (yield* Config.Settings).prefix
      const node = yield* startLogged({ prefix, node: "bounced", queues: { default: 5 }, workers: [Work], pollInterval: "300 millis", ...fast })
      yield* producersRegistered(prefix)
      // The lease and the heartbeats go through PgBouncer, on the node's own connection.
      yield* waitFor("the node leads", node.oban.isLeader, "10 seconds")
      yield* Effect.sleep("1 second")
      const age = yield* heartbeatAge(prefix)
      assert.isBelow(age, 1_500, `the producer's row is ${age} ms old`)
      yield* Oban.insert(Work.job({ n: 1 }))
      yield* insertTheRest
      yield* waitFor("every job completed", completed(prefix, 4), "15 seconds")
      assert.deepStrictEqual([...runs.values()], [1, 1, 1, 1])
      // And it says why its jobs wait for the poll: the NOTIFY it sent itself never came back.
      yield* waitFor("the node warns that LISTEN hears nothing", Effect.sync(() => heardNothing(node.lines)), "10 seconds")
    })), 60_000)

  it.live("with a direct address for its own connections: NOTIFY wakes it, long before the next poll", () =>
    throughPgBouncer(uniquePrefix("pgbouncer_direct"), Effect.gen(function*() {
      runs.clear()
      const prefix = (yield* Config.Settings).prefix
      const startedAt = Date.now()
      const node = yield* startLogged({
        prefix,
        node: "bounced",
        queues: { default: 5 },
        workers: [Work],
        // Far apart: a job that starts sooner was woken by its insert's NOTIFY.
        pollInterval: "10 seconds",
        ...fast,
        directConnection: { url: Redacted.make(databaseUrl()) }
      })
      yield* producersRegistered(prefix)
      yield* waitFor("the node leads", node.oban.isLeader, "10 seconds")
      const started = Date.now()
      yield* Oban.insert(Work.job({ n: 1 }))
      yield* waitFor("the job completed", completed(prefix, 1), "8 seconds")
      const took = Date.now() - started
      assert.isBelow(took, 3_000, `the job completed ${took} ms after its insert: no wake-up arrived`)
      yield* insertTheRest
      yield* waitFor("every job completed", completed(prefix, 4), "15 seconds")
      assert.deepStrictEqual([...runs.values()], [1, 1, 1, 1])
      // Past the probe's 5 s: its NOTIFY came back, so no warning.
      yield* Effect.sleep(Math.max(0, startedAt + 6_000 - Date.now()))
      assert.isFalse(heardNothing(node.lines), node.lines.map((line) => line.text).join("\n"))
    })), 60_000)
})

const bin = fileURLToPath(new URL("../bin/effect-oban.js", import.meta.url))

/** Runs the CLI as an OS process with `args`, its database `url`. */
const cli = (url: string, args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args, "--database-url", url], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }))
    })
  )

describe.skipIf(pgbouncerBinary === undefined)("the CLI behind PgBouncer in transaction mode", () => {
  // PgBouncer hands each transaction whichever server connection is free, so nothing may rest on a
  // session: a session-level lock or setting, a LISTEN. Commands one after another, and several at
  // once (sharing PgBouncer's server connections), must each work. (Prepared statements are off in
  // the CLI; were they on, the driver would prepare again a statement a server connection lacks.)
  it.live("migrates, lists, cancels and retries through it, commands one after another and at once", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("pgbouncer_cli")
      yield* dropSchemaOnClose(prefix)
      const bouncer = yield* startPgBouncer(databaseUrl())
      const run = (...args: ReadonlyArray<string>) =>
        Effect.map(cli(bouncer, [...args, "--prefix", prefix, "--json"]), (result) => {
          assert.strictEqual(result.code, 0, `effect-oban ${args.join(" ")}: ${result.stderr}`)
          return JSON.parse(result.stdout) as unknown
        })
      yield* run("migrate", "up")
      const status = (yield* run("migrate", "status")) as { readonly current: number; readonly latest: number }
      assert.strictEqual(status.current, status.latest)
      const jobs = yield* Oban.insertAll([Work.job({ n: 1 }), Work.job({ n: 2 }), Work.job({ n: 3 })]).pipe(
        Effect.provide(Config.layer({ prefix }))
      )
      const [first, second, third] = jobs.map((job) => String(job.id))
      const [listed] = yield* Effect.all([
        run("jobs", "list"),
        run("jobs", "cancel", first!),
        run("jobs", "cancel", second!),
        run("jobs", "show", third!),
        run("queues", "status"),
        run("nodes")
      ], { concurrency: "unbounded" })
      assert.deepStrictEqual(
        (listed as { readonly jobs: ReadonlyArray<{ readonly id: number }> }).jobs.map((job) => job.id).sort(),
        jobs.map((job) => job.id).sort()
      )
      yield* run("jobs", "retry", first!)
      const states = yield* Effect.forEach(jobs, (job) => Effect.map(jobRow(prefix, job.id), (row) => row.state))
      assert.deepStrictEqual(states, ["available", "cancelled", "available"])
    }).pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 2 }))), 120_000)
})
