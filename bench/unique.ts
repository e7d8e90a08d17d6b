/**
 * What uniqueness costs on insert (`npm run bench`, rows Wu...): the same
 * single inserts and insertAll batches as W1 and W2, with every job unique
 * (a distinct key each, so every insert writes a row), and single inserts
 * that all conflict with one existing job. Compare each with its plain row.
 */
import { Effect } from "effect"
import * as Oban from "../src/Oban.ts"
import { range } from "./common.ts"
import { insertWorkload } from "./workloads.ts"
import { Noop } from "./workers.ts"

const unique = { period: "forever" } as const

const uniqueJob = (i: number) => Noop.job({ i }, { unique })

/** Wu1: one fiber, 2,000 single unique inserts, each a new key (compare W1). */
export const wu1 = insertWorkload({
  name: "Wu1 unique insert, 1 fiber",
  prefix: "bench_wu1",
  jobs: 2_000,
  rows: 2_000,
  pool: 5,
  note: "as W1, every job unique (new keys)",
  insert: Effect.forEach(range(2_000), (i) => Oban.insert(uniqueJob(i)), { discard: true })
})

/** Wu1c: one fiber, 2,000 single inserts of one unique job: one row, then conflicts. */
export const wu1c = insertWorkload({
  name: "Wu1c unique conflict, 1 fiber",
  prefix: "bench_wu1c",
  jobs: 2_000,
  rows: 1,
  pool: 5,
  note: "as W1, the same unique job: 1,999 conflicts",
  insert: Effect.forEach(range(2_000), () => Oban.insert(uniqueJob(0)), { discard: true })
})

/** Wu2: 50,000 unique jobs with insertAll, 1,000 per call (compare W2). */
export const wu2 = insertWorkload({
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
