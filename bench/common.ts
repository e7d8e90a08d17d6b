/**
 * Helpers shared by the benchmark workloads: the connection pool, a fresh
 * migrated schema per workload, bulk inserts, running a node in a scope,
 * polling, timing, percentiles and the exactly-once check.
 */
import { PgClient } from "@effect/sql-pg"
import { readFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { Context, Duration, Effect, Exit, Layer, type LogLevel, Redacted, References, Scope, Tracer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import type * as Worker from "../src/Worker.ts"
import { envInt } from "./scale/report.ts"
import { Noop } from "./workers.ts"

/** What a workload measured. */
export interface Measurement {
  readonly wallMs: number
  readonly latency?: Latency | undefined
  readonly note?: string | undefined
  /** Anything that went wrong (wrong counts, jobs run twice, ...); empty when all is well. */
  readonly problems: ReadonlyArray<string>
}

/** One line of the result table. */
export interface Row extends Measurement {
  readonly name: string
  readonly jobs: number
}

/** A benchmark workload: its table name, its job count, and how to run it on a server. */
export interface Workload {
  readonly name: string
  readonly jobs: number
  readonly run: (url: string) => Effect.Effect<Measurement, unknown>
}

export interface Latency {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

/**
 * CPU milliseconds the whole machine spent busy so far (every core, from
 * /proc/stat), or undefined off Linux. Minus this process's own CPU over a
 * drain, it is what the database server (and anything else running) spent.
 */
const machineCpuMs = (): number | undefined => {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number)
    // user, nice, system, irq, softirq, steal (in clock ticks of 10 ms)
    return (fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!) * 10
  } catch {
    return undefined
  }
}

/** What a measured stretch cost in CPU, and how busy the machine's cores were over its wall time. */
export interface CpuUse {
  /** This process's CPU (user + system), in µs. */
  readonly ownMicros: number
  /** The rest of the machine's CPU (the database server, mostly), in µs; undefined off Linux. */
  readonly restMicros: number | undefined
  /**
   * The share of the machine's cores busy over the stretch (0-1); undefined off Linux. A drain whose
   * node and server take turns, rather than working at once, leaves cores idle: a low share means
   * the rate is bound by waiting, not by CPU.
   */
  readonly busyShare: number | undefined
  /** "node CPU ... µs/job, rest of the machine ... µs/job, cores ...% busy", for `jobs` jobs. */
  readonly note: (jobs: number) => string
}

/** Starts measuring this process's CPU, the rest of the machine's and the time; `stop()` ends it. */
export const cpuMeter = () => {
  const cpuBefore = process.cpuUsage()
  const machineBefore = machineCpuMs()
  const startedAt = performance.now()
  return {
    stop: (): CpuUse => {
      const cpu = process.cpuUsage(cpuBefore)
      const machineAfter = machineCpuMs()
      const wallMicros = (performance.now() - startedAt) * 1000
      const ownMicros = cpu.user + cpu.system
      const machineMicros = machineBefore === undefined || machineAfter === undefined
        ? undefined
        : (machineAfter - machineBefore) * 1000
      const restMicros = machineMicros === undefined ? undefined : machineMicros - ownMicros
      const busyShare = machineMicros === undefined ? undefined : machineMicros / (wallMicros * availableParallelism())
      const note = (jobs: number) =>
        `node CPU ${Math.round(ownMicros / jobs)} µs/job` +
        (restMicros === undefined || busyShare === undefined
          ? ""
          : `, rest of the machine ${Math.round(restMicros / jobs)} µs/job, cores ${Math.round(busyShare * 100)}% busy`)
      return { ownMicros, restMicros, busyShare, note }
    }
  }
}

/** The server's version, for the result table. */
export const serverVersion = (url: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ server_version: string }>`SHOW server_version`
    return row?.server_version ?? "unknown"
  }).pipe(Effect.provide(pgLayer(url, 1)))

/** A connection pool on the benchmark's server. */
export const pgLayer = (url: string, maxConnections: number) =>
  PgClient.layer({ url: Redacted.make(url), maxConnections, applicationName: "effect-oban-bench" })

/** Drops the schema `prefix` and everything in it, if it exists. */
export const dropSchema = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)
  })

/**
 * Runs `body` on a freshly migrated schema `prefix` (with `Config.Settings`
 * for it) and drops the schema afterwards, whatever happened.
 */
export const withSchema = <A, E, R>(prefix: string, body: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.andThen(dropSchema(prefix), Migrations.run({ prefix })),
    () => body.pipe(Effect.provide(Config.layer({ prefix }))),
    () => Effect.ignore(dropSchema(prefix))
  )

export const range = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i)

/**
 * BENCH_TRACED=1: effect-oban's inserts (W1, W2 and the drains' backlogs) run under a tracer that is
 * not Effect's native one, as in an application with a tracing backend (its spans are made but
 * exported nowhere): they then make `oban.insert` spans and their jobs carry a `traceparent` in
 * meta. By default they run under the native tracer, which makes neither (docs/observability.md).
 */
const traced: boolean = process.env["BENCH_TRACED"] === "1"

const backendTracer = Tracer.make({ span: (options) => Tracer.nativeTracer.span(options) })

/** `effect` under `backendTracer` when BENCH_TRACED=1, else as it is. */
export const tracedIfAsked = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  traced ? Effect.withTracer(effect, backendTracer) : effect

/** Inserts `total` no-op jobs with `insertAll`, `batchSize` per call; returns their ids. */
export const insertNoopJobs = (total: number, batchSize: number) =>
  Effect.gen(function*() {
    const ids: Array<number> = []
    for (let start = 0; start < total; start += batchSize) {
      const size = Math.min(batchSize, total - start)
      const jobs = yield* tracedIfAsked(Oban.insertAll(range(size).map((k) => Noop.job({ i: start + k }))))
      for (const job of jobs) ids.push(job.id)
    }
    return ids
  })

/**
 * How many jobs each drain workload (W3) runs: BENCH_DRAIN_JOBS, default
 * 20,000 (the size issue #9 names). A larger backlog spreads each library's
 * fixed costs (its start, the first statements on new connections, the last
 * outcomes) over more jobs.
 */
export const drainJobs: number = envInt("BENCH_DRAIN_JOBS", 20_000)

/**
 * BENCH_ANALYZE=1: every drain runs `ANALYZE` on the whole database after
 * inserting its backlog, before its clock starts, for every library alike,
 * so no claim is planned without statistics of a table that has just been
 * filled (without them a plain `ORDER BY id LIMIT n` claim may sort every
 * waiting job).
 */
export const analyzeBacklog: boolean = process.env["BENCH_ANALYZE"] === "1"

/** `ANALYZE` of the database, when BENCH_ANALYZE=1 asks for it. */
export const analyzeIfAsked: Effect.Effect<void, SqlError, SqlClient> = Effect.gen(function*() {
  if (!analyzeBacklog) return
  const sql = yield* SqlClient
  yield* sql`ANALYZE`
})

/** Milliseconds on a monotonic clock. */
export const clock: Effect.Effect<number> = Effect.sync(() => performance.now())

/** Runs `self` and returns how long it took in milliseconds, with its result. */
export const stopwatch = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = yield* clock
    const result = yield* self
    return [(yield* clock) - start, result] as const
  })

/** The log level of every node the benchmark runs: Error, or BENCH_LOG (e.g. Warn, Debug). */
export const nodeLogLevel: LogLevel.LogLevel = (process.env["BENCH_LOG"] as LogLevel.LogLevel | undefined) ?? "Error"

export interface RunningNode {
  readonly oban: Oban.ObanShape
  /** Shuts the node down gracefully and waits for it. */
  readonly stop: Effect.Effect<void>
}

/** Starts a node in a child of the current scope, so it can be stopped early. */
export const startNode = <W extends Worker.Any>(options: Oban.LayerOptions<W>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Scope.Scope)
    const context = yield* Layer.buildWithScope(Layer.fresh(Oban.layer(options)), scope).pipe(
      Effect.provideService(References.MinimumLogLevel, nodeLogLevel)
    )
    const node: RunningNode = { oban: Context.get(context, Oban.Oban), stop: Scope.close(scope, Exit.void) }
    return node
  })

/** Checks `condition` every `every` until it holds; false if `timeout` passed first. */
export const waitUntil = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  options: { readonly every: Duration.Input; readonly timeout: Duration.Input }
): Effect.Effect<boolean, E, R> =>
  Effect.gen(function*() {
    const deadline = (yield* clock) + Duration.toMillis(options.timeout)
    while (!(yield* condition)) {
      if ((yield* clock) > deadline) return false
      yield* Effect.sleep(options.every)
    }
    return true
  })

/** How many jobs of the schema are `completed`. */
export const completedCount = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'completed'`
    return row?.n ?? 0
  })

/** True when no job of the schema is waiting or running (cheap: uses the fetch index). */
export const nothingLeft = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ left: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM ${sql(prefix)}.oban_jobs
        WHERE state IN ('available', 'executing', 'scheduled', 'retryable')
      ) AS left`
    return row?.left === false
  })

/** Database-side checks after a drain: every job completed, on its first attempt. */
export const checkJobsTable = (prefix: string, expected: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ total: number; completed: number; first_attempt: number }>`
      SELECT count(*)::int AS total,
             (count(*) FILTER (WHERE state = 'completed'))::int AS completed,
             (count(*) FILTER (WHERE state = 'completed' AND attempt = 1))::int AS first_attempt
      FROM ${sql(prefix)}.oban_jobs_all`
    const problems: Array<string> = []
    if (row === undefined || row.total !== expected) problems.push(`expected ${expected} jobs in the table, found ${row?.total}`)
    else if (row.completed !== expected) problems.push(`only ${row.completed} of ${expected} jobs are completed`)
    else if (row.first_attempt !== expected) problems.push(`${expected - row.first_attempt} jobs needed more than one attempt`)
    return problems
  })

/** Database-side check after a drain with `deleteCompleted`: no job is left, in any state. */
export const checkNoJobsLeft = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ total: number }>`SELECT count(*)::int AS total FROM ${sql(prefix)}.oban_jobs_all`
    return row?.total === 0 ? [] : [`expected no jobs left in the table, found ${row?.total}`]
  })

/** Compares how often each job ran (job id -> runs) with the ids that were inserted. */
export const checkExactlyOnce = (runs: ReadonlyMap<number, number>, inserted: ReadonlyArray<number>) => {
  const problems: Array<string> = []
  const twice = Array.from(runs).filter(([, count]) => count !== 1)
  if (twice.length > 0) {
    problems.push(`${twice.length} jobs ran more than once (e.g. job ${twice[0]![0]} ran ${twice[0]![1]} times)`)
  }
  const missing = inserted.filter((id) => !runs.has(id))
  if (missing.length > 0) problems.push(`${missing.length} jobs never ran (e.g. job ${missing[0]})`)
  const total = Array.from(runs.values()).reduce((sum, count) => sum + count, 0)
  if (runs.size !== inserted.length) problems.push(`${runs.size} distinct jobs ran, expected ${inserted.length}`)
  if (total !== inserted.length) problems.push(`${total} runs in total, expected ${inserted.length}`)
  return problems
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

export const latencyOf = (samples: ReadonlyArray<number>): Latency => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!
  }
}

/** Runs `self` `times` times in a row and gives the latency distribution of the runs. */
export const timeRepeatedly = <A, E, R>(self: Effect.Effect<A, E, R>, times: number) =>
  Effect.gen(function*() {
    const samples: Array<number> = []
    for (let i = 0; i < times; i++) samples.push((yield* stopwatch(self))[0])
    return latencyOf(samples)
  })
