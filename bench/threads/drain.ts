/**
 * Workload 1 of `npm run bench:threads`: one node drains `jobs` CPU-bound
 * jobs, on its main thread (queue limit 2) or on a pool of `size` threads
 * (queue limit = size). First the node starts and runs one short job per
 * slot (its start-up: the threads start and the code is compiled, once per
 * node); then the jobs are inserted and timed until no job is left waiting or
 * running, with the process's CPU time over the same span (every thread of
 * it). Every job must be completed on its first attempt.
 */
import { Effect } from "effect"
import * as Oban from "../../src/Oban.ts"
import { checkJobsTable, clock, nothingLeft, pgLayer, range, startNode, waitUntil, withSchema } from "../common.ts"
import { CpuMain, cpuQueue, CpuThread, type HashWork } from "./cpu.ts"

/** Where the CPU-bound worker runs: the main thread, or a pool of `size` threads. */
export interface Variant {
  readonly label: string
  /** No CPU-bound jobs at all (the baseline of the ping latency). */
  readonly idle?: boolean | undefined
  /** Pool size; undefined for the main thread. */
  readonly size?: number | undefined
  /** Queue limit, when not the pool size (or 2 on the main thread). */
  readonly limit?: number | undefined
}

export const mainThread: Variant = { label: "main thread" }
export const idle: Variant = { label: "idle (no CPU-bound jobs)", idle: true }
export const threads = (size: number, limit?: number): Variant =>
  limit === undefined ? { label: `threads, size ${size}`, size } : { label: `threads, size ${size}, limit ${limit}`, size, limit }

/** The queue limit of a variant: the pool size, or 2 on the main thread. */
export const limitOf = (variant: Variant): number => variant.limit ?? variant.size ?? 2

export const workerOf = (variant: Variant) => variant.size === undefined ? CpuMain : CpuThread

export interface DrainResult {
  readonly variant: Variant
  readonly jobs: number
  /** From the node's start until it had run one short job per slot. */
  readonly startupMs: number
  /** From the insert of the jobs until none was left waiting or running. */
  readonly wallMs: number
  readonly cpuMs: number
  readonly problems: ReadonlyArray<string>
}

/** Inserts `jobs` hash jobs, each doing `work`, for the variant's worker. */
export const insertHashJobs = (variant: Variant, jobs: number, work: HashWork) =>
  Oban.insertAll(range(jobs).map((i) => workerOf(variant).job({ seed: `job-${i}`, rounds: work.rounds, kind: work.kind })))

export const drain = (url: string, variant: Variant, jobs: number, work: HashWork) =>
  withSchema(
    `bench_threads_drain_${variant.size ?? 0}_${limitOf(variant)}`,
    Effect.scoped(Effect.gen(function*() {
      const prefix = `bench_threads_drain_${variant.size ?? 0}_${limitOf(variant)}`
      const booted = yield* clock
      const node = yield* startNode({
        prefix,
        node: "bench-threads",
        queues: { [cpuQueue]: limitOf(variant) },
        workers: [workerOf(variant)],
        ...(variant.size === undefined ? {} : { threads: { size: variant.size } })
      })
      const slots = limitOf(variant)
      yield* insertHashJobs(variant, slots, { kind: work.kind, rounds: 1 })
      const warm = yield* waitUntil(nothingLeft(prefix), { every: "5 millis", timeout: "1 minute" })
      const startupMs = (yield* clock) - booted
      const cpu = process.cpuUsage()
      const start = yield* clock
      yield* insertHashJobs(variant, jobs, work)
      const drained = warm && (yield* waitUntil(nothingLeft(prefix), { every: "20 millis", timeout: "10 minutes" }))
      const wallMs = (yield* clock) - start
      const used = process.cpuUsage(cpu)
      yield* node.stop
      const problems = drained ? yield* checkJobsTable(prefix, jobs + slots) : ["the drain did not finish in 10 minutes"]
      const result: DrainResult = { variant, jobs, startupMs, wallMs, cpuMs: (used.user + used.system) / 1000, problems }
      return result
    }))
  ).pipe(Effect.provide(pgLayer(url, 10)))
