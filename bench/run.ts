/**
 * `npm run bench`: insert throughput, drain throughput (one node, then two
 * processes) and NOTIFY latency of effect-oban against a durable PostgreSQL
 * (DATABASE_URL, or an embedded server started for the run). Prints one
 * table at the end; exits non-zero when a workload's checks failed (a job
 * run twice or never, wrong counts) or a workload crashed.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { startDatabase } from "../support/database.ts"
import { clock, pgLayer, type Row } from "./common.ts"
import { w3c } from "./multiprocess.ts"
import { renderTable } from "./table.ts"
import { w1, w1b, w2, w3a, w3b, w4 } from "./workloads.ts"

interface Workload {
  readonly name: string
  readonly jobs: number
  readonly run: (url: string) => Effect.Effect<Row, unknown>
}

const allWorkloads: ReadonlyArray<Workload> = [
  { name: "W1  insert, 1 fiber", jobs: 2_000, run: w1 },
  { name: "W1b insert, 50 fibers", jobs: 10_000, run: w1b },
  { name: "W2  insertAll", jobs: 50_000, run: w2 },
  { name: "W3a drain, 1 node", jobs: 20_000, run: w3a },
  { name: "W3b drain, 1 node", jobs: 20_000, run: w3b },
  { name: "W3c drain, 2 processes", jobs: 20_000, run: w3c({ processes: 2, limit: 50, jobs: 20_000 }) },
  { name: "W4  latency (NOTIFY)", jobs: 500, run: w4 }
]

/** BENCH_ONLY=W3b,W4 runs only the workloads whose name starts with one of these. */
const only = (process.env["BENCH_ONLY"] ?? "").split(",").map((name) => name.trim()).filter((name) => name !== "")
const workloads = only.length === 0
  ? allWorkloads
  : allWorkloads.filter((workload) => only.some((name) => workload.name.startsWith(`${name} `)))

/** Runs one workload; a crash becomes a row with the failure as its problem. */
const runWorkload = (workload: Workload, url: string) =>
  Effect.gen(function*() {
    yield* Console.error(`running ${workload.name} ...`)
    const start = yield* clock
    const row = yield* workload.run(url).pipe(
      Effect.catchCause((cause) =>
        Effect.succeed<Row>({ name: workload.name, jobs: workload.jobs, wallMs: Number.NaN, problems: [Cause.pretty(cause)] })
      )
    )
    yield* Console.error(`  done in ${(((yield* clock) - start) / 1000).toFixed(1)} s (including setup)`)
    return row
  })

const serverVersion = (url: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ server_version: string }>`SHOW server_version`
    return row?.server_version ?? "unknown"
  }).pipe(Effect.provide(pgLayer(url, 1)))

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const version = yield* serverVersion(database.url)
  const rows: Array<Row> = []
  for (const workload of workloads) rows.push(yield* runWorkload(workload, database.url))

  yield* Console.log("")
  yield* Console.log(`Node ${process.version}, PostgreSQL ${version} (${database.embedded ? "embedded, durable" : "DATABASE_URL"})`)
  yield* Console.log(renderTable(rows))
  const failed = rows.filter((row) => row.problems.length > 0)
  if (failed.length > 0) {
    for (const row of failed) yield* Console.error(`\n${row.name} FAILED:\n  ${row.problems.join("\n  ")}`)
    yield* Effect.sync(() => {
      process.exitCode = 1
    })
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
