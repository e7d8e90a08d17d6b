/**
 * `npm run bench:ops`: what the operators' reads cost on a big jobs table.
 * Builds 1,000,000 rows (BENCH_ROWS) with generate_series over 5 queues:
 * 90% finished (completed, discarded, cancelled), the rest available,
 * scheduled, retryable and executing. Then times `Jobs.counts` (live states
 * exact through their partial indexes, the rest estimated), the exact count
 * for comparison, the first and a deep page of `Jobs.list` (id order, and a
 * filtered one), `Cluster.view`, and a bulk retry of 100,000 discarded jobs
 * in batches of 1000. Not part of CI: building the table takes a minute.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../src/Cluster.ts"
import * as Jobs from "../src/Jobs.ts"
import { startDatabase } from "../support/database.ts"
import { pgLayer, stopwatch, timeRepeatedly, withSchema } from "./common.ts"

const prefix = "bench_ops"
const rows = Number(process.env["BENCH_ROWS"] ?? 1_000_000)
const samples = 25

const ms = (value: number): string => `${value.toFixed(2)} ms`

const build = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args, attempt, attempted_at, completed_at, discarded_at,
                                          cancelled_at, scheduled_at, attempted_by)
    SELECT pick.s::${sql(prefix)}.oban_job_state, 'q' || (i % 5), 'Worker' || (i % 3), jsonb_build_object('user', i % 1000),
           CASE WHEN pick.s IN ('available', 'scheduled') THEN 0 ELSE 1 END,
           CASE WHEN pick.s IN ('available', 'scheduled') THEN NULL ELSE now() - interval '1 minute' END,
           CASE WHEN pick.s = 'completed' THEN now() END,
           CASE WHEN pick.s = 'discarded' THEN now() END,
           CASE WHEN pick.s = 'cancelled' THEN now() END,
           CASE WHEN pick.s IN ('scheduled', 'retryable') THEN now() + interval '1 hour' ELSE now() END,
           CASE WHEN pick.s = 'executing' THEN ARRAY['bench', gen_random_uuid()::text] END
    FROM generate_series(1, ${rows}) AS i,
         LATERAL (SELECT CASE WHEN i % 100 < 75 THEN 'completed' WHEN i % 100 < 85 THEN 'discarded'
                              WHEN i % 100 < 90 THEN 'cancelled' WHEN i % 100 < 95 THEN 'available'
                              WHEN i % 100 < 98 THEN 'scheduled' WHEN i % 100 < 99 THEN 'retryable'
                              ELSE 'executing' END AS s) AS pick`
  yield* sql.unsafe(`VACUUM ANALYZE "${prefix}".oban_jobs`)
})

const repeat = <A, E, R>(self: Effect.Effect<A, E, R>) => timeRepeatedly(self, samples)

const measure = Effect.gen(function*() {
  const sql = yield* SqlClient
  const lines: Array<readonly [string, string, string]> = []
  const [buildMs] = yield* stopwatch(build)
  lines.push(["table built", `${rows.toLocaleString("en-US")} rows`, `${(buildMs / 1000).toFixed(1)} s with VACUUM ANALYZE`])

  const counts = yield* repeat(Jobs.counts())
  const sample = yield* Jobs.counts()
  const exactSample = yield* Jobs.counts({ exact: true })
  const q0 = sample.queues.find((q) => q.queue === "q0")!.states
  const q0exact = exactSample.queues.find((q) => q.queue === "q0")!.states
  lines.push(["Jobs.counts()", ms(counts.p50), `p50 of ${samples}; p95 ${ms(counts.p95)}, max ${ms(counts.max)}; estimated: ${sample.estimated.join(", ")}`])
  lines.push(["  q0 completed (estimate / exact)", `${q0.completed} / ${q0exact.completed}`, `available ${q0.available} / ${q0exact.available} (exact both)`])
  const exact = yield* repeat(Jobs.counts({ exact: true }))
  lines.push(["Jobs.counts({ exact: true })", ms(exact.p50), `p50 of ${samples}; p95 ${ms(exact.p95)}: reads every finished row`])

  const first = yield* repeat(Jobs.list({ limit: 50 }))
  lines.push(["Jobs.list, first page of 50", ms(first.p50), `id desc; p95 ${ms(first.p95)}`])
  let cursor: string | undefined
  for (let page = 0; page < 200; page++) cursor = (yield* Jobs.list({ limit: 500, cursor })).next
  const deep = yield* repeat(Jobs.list({ limit: 50, cursor }))
  lines.push(["Jobs.list, page after 100,000 jobs", ms(deep.p50), `keyset: as cheap as the first; p95 ${ms(deep.p95)}`])
  const filtered = yield* repeat(Jobs.list({ limit: 50, filter: { queues: ["q3"], states: ["retryable"], args: { user: 98 } } }))
  lines.push(["Jobs.list, queue+state+args filter", ms(filtered.p50), `p95 ${ms(filtered.p95)}`])
  const available = yield* repeat(Jobs.list({ limit: 50, filter: { queues: ["q1"], states: ["available"] }, sort: { by: "scheduledAt", order: "asc" } }))
  lines.push(["Jobs.list, available of a queue by scheduledAt", ms(available.p50), `p95 ${ms(available.p95)}`])

  const view = yield* repeat(Cluster.view)
  lines.push(["Cluster.view", ms(view.p50), `no producers; p95 ${ms(view.p95)}`])

  const [retryMs, retried] = yield* stopwatch(Jobs.retry({ states: ["discarded"] }))
  lines.push(["Jobs.retry of every discarded job", `${(retryMs / 1000).toFixed(2)} s`, `${retried.changed.toLocaleString("en-US")} jobs in ${retried.batches} batches of 1000`])
  const [cancelMs, cancelled] = yield* stopwatch(Jobs.cancel({ queues: ["q2"], states: ["available", "scheduled"] }))
  lines.push(["Jobs.cancel, one queue's waiting jobs", `${(cancelMs / 1000).toFixed(2)} s`, `${cancelled.changed.toLocaleString("en-US")} jobs`])
  const after = yield* repeat(Jobs.counts())
  lines.push(["Jobs.counts() after the bulk actions", ms(after.p50), `${after.p95.toFixed(2)} ms p95 (before any VACUUM)`])
  yield* sql`SELECT 1`
  return lines
})

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const lines = yield* withSchema(prefix, measure).pipe(Effect.provide(pgLayer(database.url, 4)))
  const width = (index: 0 | 1) => Math.max(...lines.map((line) => line[index].length))
  yield* Console.log(`\nNode ${process.version}, ${database.embedded ? "embedded PostgreSQL" : "DATABASE_URL"}`)
  for (const [name, value, note] of lines) {
    yield* Console.log(`${name.padEnd(width(0))}  ${value.padStart(width(1))}  ${note}`)
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
