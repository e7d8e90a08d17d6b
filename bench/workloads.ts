/**
 * The in-process workloads: insert throughput (W1, W1b, W2), drain
 * throughput of one node (W3a, W3b; W3g, W3p, W3r with cluster-wide limits)
 * and NOTIFY latency (W4). Each one gets its own connection pool and its own
 * freshly migrated schema.
 */
import { Deferred, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import {
  checkExactlyOnce,
  checkJobsTable,
  checkNoJobsLeft,
  nothingLeft,
  clock,
  insertNoopJobs,
  latencyOf,
  analyzeIfAsked,
  cpuMeter,
  tracedIfAsked,
  drainJobs,
  pgLayer,
  range,
  startNode,
  stopwatch,
  waitUntil,
  withSchema,
  type Workload
} from "./common.ts"
import { epochMillis, makeCounting, makeTimed, Noop } from "./workers.ts"

/** How many jobs of the schema exist, as a problem list. */
const checkInserted = (prefix: string, expected: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs`
    return row?.n === expected ? [] : [`expected ${expected} jobs in the table, found ${row?.n}`]
  })

/** `fibers` fibers each insert `perFiber` jobs one `Oban.insert` at a time. */
const singleInserts = (fibers: number, perFiber: number) =>
  Effect.forEach(
    range(fibers),
    (fiber) => Effect.forEach(range(perFiber), (k) => Oban.insert(Noop.job({ i: fiber * perFiber + k })), { discard: true }),
    { concurrency: fibers, discard: true }
  ).pipe(tracedIfAsked)

/** Inserts on a schema of its own, then checks the table holds `rows` jobs (default `jobs`). */
export const insertWorkload = (options: {
  readonly name: string
  readonly prefix: string
  readonly jobs: number
  readonly rows?: number
  readonly pool: number
  readonly note: string
  readonly insert: Effect.Effect<unknown, unknown, SqlClient>
}): Workload => ({
  name: options.name,
  jobs: options.jobs,
  run: (url) =>
    Effect.gen(function*() {
      // This process's CPU over the inserts, and the rest of the machine's (the server, mostly).
      const meter = cpuMeter()
      const [wallMs] = yield* stopwatch(options.insert)
      const cpu = meter.stop().note(options.jobs)
      const problems = yield* checkInserted(options.prefix, options.rows ?? options.jobs)
      return { wallMs, note: `${options.note}; ${cpu}`, problems }
    }).pipe((body) => withSchema(options.prefix, body), Effect.provide(pgLayer(url, options.pool)))
})

/** W1: one fiber, 2,000 single inserts. */
export const w1 = insertWorkload({
  name: "W1  insert, 1 fiber",
  prefix: "bench_w1",
  jobs: 2_000,
  pool: 5,
  note: "Oban.insert one at a time",
  insert: singleInserts(1, 2_000)
})

/** W1b: 50 fibers, 10,000 single inserts in total, pool of 20. */
export const w1b = insertWorkload({
  name: "W1b insert, 50 fibers",
  prefix: "bench_w1b",
  jobs: 10_000,
  pool: 20,
  note: "Oban.insert, pool 20",
  insert: singleInserts(50, 200)
})

/** W2: 50,000 jobs with insertAll, 1,000 per call. */
export const w2 = insertWorkload({
  name: "W2  insertAll",
  prefix: "bench_w2",
  jobs: 50_000,
  pool: 5,
  note: "batches of 1,000",
  insert: insertNoopJobs(50_000, 1_000)
})

/**
 * W3a/W3b: pre-insert `drainJobs` no-op jobs (BENCH_DRAIN_JOBS, default 20,000), start one node with queue limit
 * `limit`, and time from node start until no job is waiting or running
 * (every outcome written). The note also says when the last job had run
 * in-process, so a lag in writing outcomes shows.
 */
const drainInProcess = (options: {
  readonly name: string
  readonly prefix: string
  readonly limit: number
  /** Run the node with `deleteCompleted`: the drain ends when no job is left. */
  readonly deleteCompleted?: boolean
  /** Cluster-wide limits of the queue (docs/limits.md), and what the note says of them. */
  readonly limits?: { readonly config: Oban.QueueLimits; readonly note: string }
}): Workload => ({
  name: options.name,
  jobs: drainJobs,
  run: (url) =>
    Effect.gen(function*() {
      const inserted = yield* insertNoopJobs(drainJobs, 1_000)
      yield* analyzeIfAsked
      const { allRan, ran, runs, worker } = yield* makeCounting(drainJobs)
      const start = yield* clock
      // This process's CPU over the drain (the node, and the bench's own polling for the end).
      const meter = cpuMeter()
      const node = yield* startNode({
        prefix: options.prefix,
        node: `bench-${options.prefix}`,
        queues: { default: { limit: options.limit, ...options.limits?.config } },
        workers: [worker],
        deleteCompleted: options.deleteCompleted ?? false
      })
      const ranAll = yield* Deferred.await(allRan).pipe(Effect.timeoutOption("120 seconds"))
      const ranMs = (yield* clock) - start
      // Done when no job is waiting or running, as the peers' drains are: a cheap test (kept
      // completed jobs are in oban_jobs_finished by then), where counting the completed ones cost
      // the server about 10 ms a poll. `checkJobsTable` counts them after the clock has stopped.
      const recorded = yield* waitUntil(nothingLeft(options.prefix), {
        every: "20 millis",
        timeout: "120 seconds"
      })
      const wallMs = (yield* clock) - start
      const cpu = meter.stop()
      yield* node.stop
      const problems = [
        ...(ranAll._tag === "None" ? [`only ${ran()} of ${drainJobs} jobs ran within 120 s`] : []),
        ...(recorded ? [] : [`the outcomes of some jobs were still not written 120 s after the last job ran`]),
        ...checkExactlyOnce(runs, inserted),
        ...(options.deleteCompleted === true ? yield* checkNoJobsLeft(options.prefix) : yield* checkJobsTable(options.prefix, drainJobs))
      ]
      const note = `1 node, limit ${options.limit}${options.limits === undefined ? "" : `, ${options.limits.note}`}; all ran after ${(ranMs / 1000).toFixed(2)} s; ` +
        cpu.note(drainJobs)
      return { wallMs: recorded ? wallMs : Number.NaN, note, problems }
    }).pipe(Effect.scoped, (body) => withSchema(options.prefix, body), Effect.provide(pgLayer(url, 10)))
})

export const w3a = drainInProcess({ name: "W3a drain, 1 node", prefix: "bench_w3a", limit: 10 })
export const w3b = drainInProcess({ name: "W3b drain, 1 node", prefix: "bench_w3b", limit: 50 })
/** W3g: W3a's drain with a global limit equal to the local one: the price of the row lock and the count. */
export const w3g = drainInProcess({
  name: "W3g drain, global 10",
  prefix: "bench_w3g",
  limit: 10,
  limits: { config: { global: 10 }, note: "global 10" }
})
/** W3p: W3a's drain partitioned by an args key with one job per partition at a time. */
export const w3p = drainInProcess({
  name: "W3p drain, partitioned",
  prefix: "bench_w3p",
  limit: 10,
  limits: { config: { global: 1, partition: { by: "args", key: "i" } }, note: "1 per args.i" }
})
/** W3r: W3a's drain with a rate limit far above the drain rate: the price of counting windows. */
export const w3r = drainInProcess({
  name: "W3r drain, rate limited",
  prefix: "bench_w3r",
  limit: 10,
  limits: { config: { rate: { limit: 1_000_000, period: "1 second" } }, note: "rate 1M/s" }
})
export const w3aDelete = drainInProcess({ name: "W3a drain, deleteCompleted", prefix: "bench_w3a", limit: 10, deleteCompleted: true })
export const w3bDelete = drainInProcess({ name: "W3b drain, deleteCompleted", prefix: "bench_w3b", limit: 50, deleteCompleted: true })

const latencyJobs = 500
const latencySpacingMs = 20

/**
 * W4: an idle node (limit 10, poll every 10 s, so only NOTIFY wakes it) and
 * 500 single inserts 20 ms apart; each job reports the time from just before
 * its insert until its worker started.
 */
export const w4: Workload = {
  name: "W4  latency (NOTIFY)",
  jobs: latencyJobs,
  run: (url) =>
    Effect.gen(function*() {
      const samples: Array<number> = []
      const runs = new Map<number, number>()
      const allRan = yield* Deferred.make<void>()
      const worker = makeTimed((id, latencyMs) =>
        Effect.suspend(() => {
          runs.set(id, (runs.get(id) ?? 0) + 1)
          samples.push(latencyMs)
          return samples.length === latencyJobs ? Effect.asVoid(Deferred.succeed(allRan, undefined)) : Effect.void
        })
      )
      yield* startNode({
        prefix: "bench_w4",
        node: "bench-latency",
        queues: { default: 10 },
        pollInterval: "10 seconds",
        workers: [worker]
      })
      // The producer fetches once at start; let that pass so only NOTIFY can wake it.
      yield* Effect.sleep("500 millis")
      const inserted: Array<number> = []
      const start = yield* clock
      for (const i of range(latencyJobs)) {
        const wait = start + i * latencySpacingMs - (yield* clock)
        if (wait > 0) yield* Effect.sleep(wait)
        const job = yield* Oban.insert(worker.job({ insertedAt: epochMillis() }))
        inserted.push(job.id)
      }
      const ranAll = yield* Deferred.await(allRan).pipe(Effect.timeoutOption("15 seconds"))
      const wallMs = (yield* clock) - start
      const problems = [
        ...(ranAll._tag === "None" ? [`only ${samples.length} of ${latencyJobs} jobs ran within 15 s of the last insert`] : []),
        ...checkExactlyOnce(runs, inserted)
      ]
      const note = `limit 10, poll 10 s, 1 insert / ${latencySpacingMs} ms; max ${latencyOf(samples).max.toFixed(1)} ms`
      return { wallMs, latency: latencyOf(samples), note, problems }
    }).pipe(Effect.scoped, (body) => withSchema("bench_w4", body), Effect.provide(pgLayer(url, 10)))
}
