/**
 * What uniqueness costs on insert (`npm run bench`, rows Wu...): the same
 * single inserts and insertAll batches as W1 and W2, with every job unique
 * (a distinct key each, so every insert writes a row), and single inserts
 * that all conflict with one existing job. Compare each with its plain row.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { pgLayer, range, stopwatch, withSchema, type Workload } from "./common.ts"
import { Noop } from "./workers.ts"

const unique = { period: "forever" } as const

const uniqueJob = (i: number) => Noop.job({ i }, { unique })

/** A workload on its own schema: `insert`, then a check of how many rows it left. */
const uniqueWorkload = (options: {
  readonly name: string
  readonly prefix: string
  readonly jobs: number
  readonly rows: number
  readonly pool: number
  readonly note: string
  readonly insert: Effect.Effect<unknown, unknown, SqlClient>
}): Workload => ({
  name: options.name,
  jobs: options.jobs,
  run: (url) =>
    Effect.gen(function*() {
      const [wallMs] = yield* stopwatch(options.insert)
      const sql = yield* SqlClient
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(options.prefix)}.oban_jobs`
      const problems = row?.n === options.rows ? [] : [`expected ${options.rows} jobs in the table, found ${row?.n}`]
      return { wallMs, note: options.note, problems }
    }).pipe((body) => withSchema(options.prefix, body), Effect.provide(pgLayer(url, options.pool)))
})

/** Wu1: one fiber, 2,000 single unique inserts, each a new key (compare W1). */
export const wu1 = uniqueWorkload({
  name: "Wu1 unique insert, 1 fiber",
  prefix: "bench_wu1",
  jobs: 2_000,
  rows: 2_000,
  pool: 5,
  note: "as W1, every job unique (new keys)",
  insert: Effect.forEach(range(2_000), (i) => Oban.insert(uniqueJob(i)), { discard: true })
})

/** Wu1c: one fiber, 2,000 single inserts of one unique job: one row, then conflicts. */
export const wu1c = uniqueWorkload({
  name: "Wu1c unique conflict, 1 fiber",
  prefix: "bench_wu1c",
  jobs: 2_000,
  rows: 1,
  pool: 5,
  note: "as W1, the same unique job: 1,999 conflicts",
  insert: Effect.forEach(range(2_000), () => Oban.insert(uniqueJob(0)), { discard: true })
})

/** Wu2: 50,000 unique jobs with insertAll, 1,000 per call (compare W2). */
export const wu2 = uniqueWorkload({
  name: "Wu2 unique insertAll",
  prefix: "bench_wu2",
  jobs: 50_000,
  rows: 50_000,
  pool: 5,
  note: "as W2, every job unique (new keys)",
  insert: Effect.forEach(
    range(50),
    (batch) => Oban.insertAll(range(1_000).map((k) => uniqueJob(batch * 1_000 + k))),
    { discard: true }
  )
})
