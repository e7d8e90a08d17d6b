/**
 * The node's CPU per job in a drain, apart from everything else a workload
 * does in the benchmark's process: each round the server inserts a backlog
 * of no-op jobs (BENCH_NODE_JOBS, default 50,000, with generate_series, so
 * the node encodes nothing), then one node (limit 10, or BENCH_NODE_LIMIT) drains it and stops.
 * The round's rate and the process's CPU (user + system) per job are taken
 * over the drain alone. Rounds alternate completed jobs kept and
 * `deleteCompleted`; the first BENCH_NODE_WARMUP (default 2) of each warm the
 * JIT up and are left out of the medians (BENCH_NODE_ROUNDS, default 5, after
 * them).
 *
 * What a drain costs the node, from claim to outcome, is what this prints; the
 * bookkeeping around each attempt alone is `npm run bench:attempt`.
 */
import { Deferred, Effect, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { checkExactlyOnce, checkJobsTable, checkNoJobsLeft, clock, cpuMeter, nothingLeft, pgLayer, startNode, waitUntil, withSchema } from "../common.ts"
import { makeCounting } from "../workers.ts"
import { insertNoopBacklog } from "./backlog.ts"
import { envInt, fixed, grouped, median, textTable } from "./report.ts"

const prefix = "bench_scale_node"
const limit = envInt("BENCH_NODE_LIMIT", 10)

type Variant = "kept" | "deleteCompleted"
const variants: ReadonlyArray<Variant> = ["kept", "deleteCompleted"]

interface Round {
  readonly jobsPerSecond: number
  readonly cpuMicrosPerJob: number
  /** The rest of the machine's CPU per job (the server, mostly); NaN off Linux. */
  readonly restMicrosPerJob: number
  /** The share of the machine's cores busy over the drain; NaN off Linux. */
  readonly busyShare: number
}

/** One drain of a fresh backlog; its problems, if a job ran twice or never or its outcome was not written. */
const drainOnce = (jobs: number, variant: Variant) =>
  Effect.gen(function*() {
    const inserted = yield* insertNoopBacklog(prefix, jobs, { analyze: true })
    const { allRan, ran, runs, worker } = yield* makeCounting(jobs)
    const deleteCompleted = variant === "deleteCompleted"
    const meter = cpuMeter()
    const start = yield* clock
    const node = yield* startNode({
      prefix,
      node: "bench-node-cost",
      queues: { default: { limit } },
      workers: [worker],
      deleteCompleted
    })
    const finished = yield* Deferred.await(allRan).pipe(Effect.timeoutOption("120 seconds"))
    const written = yield* waitUntil(
      nothingLeft(prefix),
      { every: "10 millis", timeout: "60 seconds" }
    )
    const wallMs = (yield* clock) - start
    const cpu = meter.stop()
    yield* node.stop
    const problems = [
      ...(Option.isSome(finished) ? [] : [`${variant}: only ${ran()} of ${jobs} jobs ran within 120 s`]),
      ...(written ? [] : [`${variant}: outcomes not written 60 s after the last job ran`]),
      ...checkExactlyOnce(runs, inserted).map((problem) => `${variant}: ${problem}`),
      ...(deleteCompleted ? yield* checkNoJobsLeft(prefix) : yield* checkJobsTable(prefix, jobs))
    ]
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
    const round: Round = {
      jobsPerSecond: jobs / (wallMs / 1000),
      cpuMicrosPerJob: cpu.ownMicros / jobs,
      restMicrosPerJob: cpu.restMicros === undefined ? Number.NaN : cpu.restMicros / jobs,
      busyShare: cpu.busyShare ?? Number.NaN
    }
    return { round, problems }
  })

export const nodeCost = (url: string) =>
  Effect.gen(function*() {
    const jobs = envInt("BENCH_NODE_JOBS", 50_000)
    const rounds = envInt("BENCH_NODE_ROUNDS", 5)
    const warmup = Number(process.env["BENCH_NODE_WARMUP"] ?? 2)
    const measured: Record<Variant, Array<Round>> = { kept: [], deleteCompleted: [] }
    const problems: Array<string> = []
    for (let index = 0; index < warmup + rounds; index++) {
      for (const variant of variants) {
        const { round, problems: found } = yield* drainOnce(jobs, variant)
        problems.push(...found)
        if (index >= warmup) measured[variant].push(round)
      }
    }
    const row = (variant: Variant) => {
      const of = measured[variant]
      return [
        variant,
        grouped(median(of.map((round) => round.jobsPerSecond))),
        fixed(median(of.map((round) => round.cpuMicrosPerJob)), 1),
        fixed(Math.min(...of.map((round) => round.cpuMicrosPerJob)), 1),
        fixed(Math.max(...of.map((round) => round.cpuMicrosPerJob)), 1),
        fixed(median(of.map((round) => round.restMicrosPerJob)), 1),
        `${fixed(median(of.map((round) => round.busyShare)) * 100, 0)}%`
      ]
    }
    return {
      title: `Node: one node (limit ${limit}) draining ${grouped(jobs)} jobs inserted by the server, ${rounds} rounds after ${warmup} warm-up(s), medians`,
      table: textTable(
        ["completed jobs", "jobs/s", "node CPU µs/job", "min", "max", "rest µs/job", "cores busy"],
        variants.map(row)
      ),
      notes: [
        "node CPU: this process's user + system time over the drain, divided by the jobs",
        "rest: the CPU the rest of the machine (the database server, mostly) spent per job; cores busy: the machine's " +
        "CPU over the drain against all its cores' time (medians; from /proc/stat, Linux only)"
      ],
      problems
    }
  }).pipe(Effect.scoped, (body) => withSchema(prefix, body), Effect.provide(pgLayer(url, 12)))
