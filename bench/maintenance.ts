/**
 * `npm run bench:maintenance`: what the leader's pruner and every node's
 * available-jobs sampler cost on a big jobs table, at the defaults. Builds
 * 3,000,000 rows (BENCH_ROWS) with generate_series: two thirds finished
 * recently (not yet due for pruning), one third available in one queue. Then
 * times a pruner run with nothing due, a sampler call, and the pruner working
 * off a backlog of 1,000,000 due rows (BENCH_BACKLOG), and prints a table.
 * Not part of CI: building the table takes a minute or two.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Duration, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { countAvailable } from "../src/internal/sql/jobs.ts"
import * as Pruner from "../src/Pruner.ts"
import { startDatabase } from "../support/database.ts"
import { pgLayer, stopwatch, timeRepeatedly, withSchema } from "./common.ts"

const prefix = "bench_maintenance"
const rows = Number(process.env["BENCH_ROWS"] ?? 3_000_000)
const backlog = Number(process.env["BENCH_BACKLOG"] ?? 1_000_000)
const samples = 25
const queues = ["default", "mailers", "reports", "empty"]

interface Line {
  readonly measure: string
  readonly value: string
  readonly note: string
}

const render = (lines: ReadonlyArray<Line>): string => {
  const width = (pick: (line: Line) => string, title: string) => Math.max(title.length, ...lines.map((l) => pick(l).length))
  const [m, v] = [width((l) => l.measure, "measure"), width((l) => l.value, "value")]
  const row = (a: string, b: string, c: string) => `${a.padEnd(m)}  ${b.padStart(v)}  ${c}`
  return [row("measure", "value", "notes"), row("-".repeat(m), "-".repeat(v), "-----"), ...lines.map((l) => row(l.measure, l.value, l.note))]
    .join("\n")
}

const grouped = (value: number): string => Math.round(value).toLocaleString("en-US")
const ms = (value: number): string => `${value.toFixed(2)} ms`

/** Finished rows not yet due (finished within the last minute) and a backlog of available ones. */
const build = Effect.gen(function*() {
  const sql = yield* SqlClient
  const finished = Math.round((rows * 2) / 3)
  yield* sql`
    INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, attempt, completed_at, cancelled_at, discarded_at)
    SELECT s::${sql(prefix)}.oban_job_state, 'default', 'Noop', 1,
           CASE WHEN s = 'completed' THEN now() - (i % 60) * interval '1 second' END,
           CASE WHEN s = 'cancelled' THEN now() - (i % 60) * interval '1 second' END,
           CASE WHEN s = 'discarded' THEN now() - (i % 60) * interval '1 second' END
    FROM generate_series(1, ${finished}) AS i,
         LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 'discarded' WHEN i % 100 = 1 THEN 'cancelled'
                              ELSE 'completed' END AS s) AS pick`
  yield* sql`
    INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker)
    SELECT 'available', CASE WHEN i % 1000 = 0 THEN 'mailers' ELSE 'default' END, 'Noop'
    FROM generate_series(1, ${rows - finished}) AS i`
  yield* sql.unsafe(`VACUUM ANALYZE "${prefix}".oban_jobs`)
})

/** Completed jobs finished an hour ago: all due. */
const addBacklog = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, attempt, completed_at)
    SELECT 'completed', 'default', 'Noop', 1, now() - interval '1 hour' - i * interval '1 millisecond'
    FROM generate_series(1, ${backlog}) AS i`
  yield* sql.unsafe(`ANALYZE "${prefix}".oban_jobs`)
})

const repeat = <A, E, R>(self: Effect.Effect<A, E, R>) => timeRepeatedly(self, samples)

const measure = Effect.gen(function*() {
  const sql = yield* SqlClient
  const lines: Array<Line> = []
  const [buildMs] = yield* stopwatch(build)
  const [[{ n }]] = [yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs`]
  lines.push({ measure: "table built", value: `${grouped(n)} rows`, note: `${(buildMs / 1000).toFixed(1)} s with VACUUM ANALYZE` })

  const prune = Pruner.runOnce({ sql, prefix })
  const idle = yield* repeat(prune)
  lines.push({
    measure: "pruner run, nothing due",
    value: ms(idle.p50),
    note: `p50 of ${samples} runs; p95 ${ms(idle.p95)}, max ${ms(idle.max)}`
  })

  const sample = countAvailable(sql, prefix, queues)
  const counts = yield* sample
  const sampled = yield* repeat(sample)
  lines.push({
    measure: "sampler call",
    value: ms(sampled.p50),
    note: `p50 of ${samples}; p95 ${ms(sampled.p95)}; ${queues.length} queues, ${
      queues.map((q) => `${q}=${grouped(counts.get(q) ?? 0)}`).join(" ")
    }`
  })

  yield* addBacklog
  const runs: Array<readonly [number, Pruner.Result]> = []
  while (true) {
    const run = yield* stopwatch(prune)
    runs.push(run)
    if (run[1].batches < Pruner.defaults.maxBatches) break
  }
  const deleted = runs.reduce((sum, [, result]) => sum + result.deleted, 0)
  const busyMs = runs.reduce((sum, [elapsed]) => sum + elapsed, 0)
  const full = runs.filter(([, result]) => result.batches === Pruner.defaults.maxBatches)
  const fullMs = full.reduce((sum, [elapsed]) => sum + elapsed, 0) / Math.max(1, full.length)
  const perTick = Pruner.defaults.batchSize * Pruner.defaults.maxBatches
  const interval = Duration.toMillis(Pruner.defaults.interval)
  lines.push({
    measure: "pruning, while deleting",
    value: `${grouped(deleted / (busyMs / 1000))} rows/s`,
    note: `${grouped(deleted)} due rows in ${runs.length} runs, ${(busyMs / 1000).toFixed(2)} s of statements`
  })
  lines.push({
    measure: "pruning, sustained at defaults",
    value: `${grouped(perTick / ((interval + fullMs) / 1000))} rows/s`,
    note: `${grouped(perTick)} rows a run (${Pruner.defaults.maxBatches} x ${
      grouped(Pruner.defaults.batchSize)
    }), a full run ${ms(fullMs)}, then ${interval / 1000} s of sleep`
  })

  const after = yield* repeat(prune)
  lines.push({
    measure: "pruner run, nothing due, after",
    value: ms(after.p50),
    note: `right after the backlog went, before any VACUUM; p95 ${ms(after.p95)}, max ${ms(after.max)}`
  })
  return lines
})

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const [lines, version] = yield* Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ server_version: string }>`SHOW server_version`
    return [yield* withSchema(prefix, measure), row] as const
  }).pipe(Effect.provide(pgLayer(database.url, 2)))
  yield* Console.log("")
  yield* Console.log(
    `Node ${process.version}, PostgreSQL ${version?.server_version ?? "unknown"} (${
      database.embedded ? "embedded, durable" : "DATABASE_URL"
    }); pruner defaults: maxAge ${Duration.format(Pruner.defaults.maxAge)}, every ${
      Duration.format(Pruner.defaults.interval)
    }, ${Pruner.defaults.maxBatches} x ${Pruner.defaults.batchSize}`
  )
  yield* Console.log(render(lines))
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
