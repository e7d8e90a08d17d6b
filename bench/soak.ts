/**
 * The production-edges soak (`npm run soak`, not part of CI): four OS
 * processes drain 100,000 jobs that write to the database, while this (fifth)
 * process, which owns the TCP proxy every node connects through, SIGKILLs one
 * node and restarts it at once under the same name, then cuts the database
 * off from every node for 90 s. All settings are the defaults (heartbeats
 * 10 s, rescueAfter 60 s, lease TTL 30 s), so the numbers are what a user gets.
 *
 * Each perform is recorded in `<prefix>.runs` with its claim; at the end the
 * soak checks that no job was lost, none is left executing, no claim ran
 * twice, and no job ran more often than it had attempts: every run after the
 * first follows an attempt that ended with an errors entry (the documented
 * at-least-once cases: a rescue of the killed node's jobs, or an attempt whose
 * own database write committed while its reply was lost in the outage). It
 * prints a table and exits 1 on a failure.
 *
 *   SOAK_JOBS (100000)  SOAK_OUTAGE_MS (90000)  SOAK_JOB_MS (10)  DATABASE_URL (else embedded)
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { startDatabase } from "../support/database.ts"
import { awaitReady, type NodeProcess, spawnNode, stopNode } from "../test/support/processes.ts"
import { startProxy } from "../test/support/proxy.ts"

const total = Number(process.env["SOAK_JOBS"] ?? 100_000)
const outageMillis = Number(process.env["SOAK_OUTAGE_MS"] ?? 90_000)
const jobMillis = process.env["SOAK_JOB_MS"] ?? "10"
const prefix = `soak_${Math.random().toString(36).slice(2, 8)}`

// The same name and args as the worker in test/support/nodeProcess.ts.
const Record = Worker.make("Record", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

/** Two aligned columns. */
const printTable = (header: readonly [string, string], rows: ReadonlyArray<readonly [string, string]>) => {
  const width = Math.max(header[0].length, ...rows.map((row) => row[0].length))
  const valueWidth = Math.max(header[1].length, ...rows.map((row) => row[1].length))
  const line = (row: readonly [string, string]) => `${row[0].padEnd(width)}  ${row[1].padStart(valueWidth)}`
  console.log([line(header), `${"-".repeat(width)}  ${"-".repeat(valueWidth)}`, ...rows.map(line)].join("\n"))
}

const since = (start: number) => `${((Date.now() - start) / 1000).toFixed(1)} s`

const say = (start: number, line: string) => Effect.sync(() => console.log(`[${since(start)}] ${line}`))

const counts = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ state: string; n: number }>`
    SELECT state::text, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY state`
  return Object.fromEntries(rows.map((row) => [row.state, row.n])) as Record<string, number>
}).pipe(Effect.orElseSucceed(() => ({} as Record<string, number>)))

const waitForCompleted = (start: number, atLeast: number, timeoutMillis: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    let lastReport = 0
    while (true) {
      const now = yield* counts
      if ((now["completed"] ?? 0) >= atLeast) return true
      if (Date.now() > deadline) return false
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now()
        yield* say(start, `states ${JSON.stringify(now)}`)
      }
      yield* Effect.sleep("250 millis")
    }
  })

const main = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true, maxConnections: 200 })),
    (db) => Effect.promise(() => db.stop())
  )
  const direct = PgClient.layer({ url: Redacted.make(database.url), maxConnections: 4 })
  const proxy = yield* startProxy(database.url)

  yield* Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* Migrations.run()
    yield* sql`CREATE TABLE ${sql(prefix)}.runs (
      job_id bigint NOT NULL, node text NOT NULL, claim text, at timestamptz DEFAULT clock_timestamp())`
    for (let from = 0; from < total; from += 5_000) {
      yield* Oban.insertAll(Array.from({ length: Math.min(5_000, total - from) }, (_, i) => Record.job({ n: from + i })))
    }
    const env = {
      DATABASE_URL: proxy.url,
      PREFIX: prefix,
      QUEUES: JSON.stringify({ default: 10 }),
      JOB_MS: jobMillis,
      RECORD_CLAIM: "1"
    }
    const start = Date.now()
    const nodes: Array<NodeProcess> = yield* Effect.forEach(["n1", "n2", "n3", "n4"], (name) => spawnNode(name, env))
    yield* Effect.forEach(nodes, (node) => awaitReady(node, 60_000))
    yield* say(start, `${total} jobs inserted; 4 nodes draining through the proxy`)

    yield* waitForCompleted(start, Math.round(total * 0.1), 600_000)
    yield* stopNode(nodes[3]!, "SIGKILL")
    const killedAt = Date.now()
    nodes[3] = yield* spawnNode("n4", env)
    yield* awaitReady(nodes[3]!, 60_000)
    yield* say(start, "n4 SIGKILLed and restarted under the same name")

    yield* waitForCompleted(start, Math.round(total * 0.3), 600_000)
    yield* proxy.refuse
    yield* proxy.cut
    yield* say(start, `database cut off from every node for ${outageMillis / 1000} s`)
    yield* Effect.sleep(outageMillis)
    yield* proxy.accept
    yield* say(start, "database reachable again")

    const drained = yield* waitForCompleted(start, total, 900_000)
    const drainMillis = Date.now() - start
    yield* say(start, drained ? "every job completed" : "gave up waiting for the drain")
    yield* Effect.forEach(nodes, (node) => stopNode(node, "SIGTERM"))

    const final = yield* counts
    const [stats] = yield* sql<{
      runs: number
      jobs_run: number
      duplicates: number
      after_rescue: number
      unexplained: number
      same_claim: number
      max_runs: number
      rescued: number
    }>`
      WITH per_job AS (
        SELECT j.id, count(r.job_id)::int AS runs, jsonb_array_length(j.errors) AS ended_badly,
               EXISTS (SELECT 1 FROM jsonb_array_elements(j.errors) e WHERE e->>'kind' = 'rescued') AS rescued
        FROM ${sql(prefix)}.oban_jobs_all j LEFT JOIN ${sql(prefix)}.runs r ON r.job_id = j.id
        GROUP BY j.id, j.errors
      )
      SELECT COALESCE(sum(runs), 0)::int AS runs,
             count(*) FILTER (WHERE runs > 0)::int AS jobs_run,
             count(*) FILTER (WHERE runs > 1)::int AS duplicates,
             count(*) FILTER (WHERE runs > 1 AND rescued)::int AS after_rescue,
             count(*) FILTER (WHERE runs > 1 + ended_badly)::int AS unexplained,
             COALESCE(max(runs), 0)::int AS max_runs,
             count(*) FILTER (WHERE rescued)::int AS rescued,
             (SELECT count(*)::int FROM (
                SELECT 1 FROM ${sql(prefix)}.runs GROUP BY job_id, claim HAVING count(*) > 1) AS twice) AS same_claim
      FROM per_job`
    const lost = total - (final["completed"] ?? 0)
    const executing = final["executing"] ?? 0
    printTable(
      ["measure", "value"],
      [
        ["jobs", String(total)],
        ["completed", String(final["completed"] ?? 0)],
        ["lost (not completed)", String(lost)],
        ["left executing", String(executing)],
        ["performs recorded", String(stats!.runs)],
        ["jobs run more than once", String(stats!.duplicates)],
        ["  after a rescue of the killed node's jobs", String(stats!.after_rescue)],
        ["  unexplained (more runs than attempts)", String(stats!.unexplained)],
        ["runs twice under one claim", String(stats!.same_claim)],
        ["jobs rescued", String(stats!.rescued)],
        ["most runs of one job", String(stats!.max_runs)],
        ["outage", `${outageMillis / 1000} s`],
        ["drain, start to last job", `${(drainMillis / 1000).toFixed(1)} s`],
        ["kill to end of drain", `${((Date.now() - killedAt) / 1000).toFixed(1)} s`]
      ]
    )
    const ok = drained && lost === 0 && executing === 0 && stats!.unexplained === 0 && stats!.same_claim === 0
    if (!ok) {
      for (const node of nodes) console.log(`--- ${node.name}\n${node.output().slice(-4_000)}`)
      return yield* Effect.die(new Error("soak failed: see the table above"))
    }
  }).pipe(Effect.provide(Config.layer({ prefix }).pipe(Layer.provideMerge(direct))))
}).pipe(Effect.scoped)

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
