/**
 * `npm run bench -- --peers`: effect-oban next to graphile-worker, pg-boss,
 * BullMQ on PostgreSQL and a raw-SQL queue, on the same database and the
 * same workloads. The rounds are interleaved (round 1 runs every workload
 * for every library, then round 2, ...; the order of the libraries rotates
 * each round) and each cell is the median of the rounds. Each row shows its
 * ratio to graphile-worker and to raw SQL.
 *
 * BENCH_ONLY=W3a,W4 picks workloads, BENCH_PEERS=effect-oban,raw picks
 * libraries, BENCH_ROUNDS=1 sets the number of rounds (default 3).
 * BENCH_WARMUP=0 drops the warm-up round (default 1): a first round of every
 * workload for every library, run and checked like the others but left out
 * of the medians and shown in a table of its own, so that the medians compare
 * code the JIT has compiled (as in a node that has run for a while) rather
 * than each library's first runs in a fresh process.
 */
import { Cause, Console, Effect } from "effect"
import { drainJobs, type Measurement, type Workload } from "../common.ts"
import { w3c } from "../multiprocess.ts"
import * as own from "../workloads.ts"
import { allPeers } from "./registry.ts"
import type { Peer } from "./types.ts"
import { drain, drainTwoProcesses, latency, w1, w2 } from "./workloads.ts"

interface ComparedWorkload {
  readonly key: string
  readonly title: string
  readonly jobs: number
  readonly kind: "throughput" | "latency"
  readonly effectOban: Workload
  /** The same workload on nodes with `deleteCompleted` (drains only). */
  readonly effectObanDelete?: Workload
  readonly peer: (peer: Peer, url: string) => Promise<Measurement>
}

const workloads: ReadonlyArray<ComparedWorkload> = [
  { key: "W1", title: "W1 single inserts, 1 at a time", jobs: 2_000, kind: "throughput", effectOban: own.w1, peer: w1 },
  { key: "W2", title: "W2 bulk inserts of 1,000", jobs: 50_000, kind: "throughput", effectOban: own.w2, peer: w2 },
  {
    key: "W3a",
    title: "W3a drain, limit 10",
    jobs: drainJobs,
    kind: "throughput",
    effectOban: own.w3a,
    effectObanDelete: own.w3aDelete,
    peer: drain(10)
  },
  {
    key: "W3b",
    title: "W3b drain, limit 50",
    jobs: drainJobs,
    kind: "throughput",
    effectOban: own.w3b,
    effectObanDelete: own.w3bDelete,
    peer: drain(50)
  },
  {
    key: "W3c",
    title: "W3c drain, 2 processes x limit 50",
    jobs: drainJobs,
    kind: "throughput",
    effectOban: w3c({ processes: 2, limit: 50, jobs: drainJobs }),
    effectObanDelete: w3c({ processes: 2, limit: 50, jobs: drainJobs, deleteCompleted: true }),
    peer: drainTwoProcesses(50)
  },
  { key: "W4", title: "W4 insert-to-start latency", jobs: 500, kind: "latency", effectOban: own.w4, peer: latency }
]

interface Contender {
  readonly name: string
  readonly key: string
  /** Whether it runs this workload (default: every one). */
  readonly runs?: (workload: ComparedWorkload) => boolean
  readonly run: (workload: ComparedWorkload, url: string) => Effect.Effect<Measurement>
}

const crashed = (cause: Cause.Cause<unknown>): Measurement => ({ wallMs: Number.NaN, problems: [Cause.pretty(cause)] })

const effectOban: Contender = {
  name: "effect-oban",
  key: "effect-oban",
  run: (workload, url) => workload.effectOban.run(url).pipe(Effect.catchCause((cause) => Effect.succeed(crashed(cause))))
}

/** effect-oban with `deleteCompleted`, as graphile-worker and raw SQL do with finished jobs. */
const effectObanDelete: Contender = {
  name: "effect-oban, deleteCompleted",
  key: "effect-oban-delete",
  runs: (workload) => workload.effectObanDelete !== undefined,
  run: (workload, url) =>
    (workload.effectObanDelete ?? workload.effectOban).run(url).pipe(
      Effect.catchCause((cause) => Effect.succeed(crashed(cause)))
    )
}

const isDrain = (workload: ComparedWorkload) => workload.key.startsWith("W3")

const peerContender = (peer: Peer): Contender => ({
  name: peer.name,
  key: peer.key,
  ...(peer.drainsOnly === true ? { runs: isDrain } : {}),
  run: (workload, url) =>
    Effect.tryPromise(() => workload.peer(peer, url)).pipe(Effect.catchCause((cause) => Effect.succeed(crashed(cause))))
})

const listFromEnv = (name: string) =>
  (process.env[name] ?? "").split(",").map((item) => item.trim()).filter((item) => item !== "")

const selected = <A>(items: ReadonlyArray<A>, names: ReadonlyArray<string>, key: (item: A) => string) =>
  names.length === 0 ? items : items.filter((item) => names.includes(key(item)))

const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** One cell of the result: the medians of a library on a workload, over the rounds. */
interface Cell {
  readonly workload: ComparedWorkload
  readonly contender: Contender
  readonly runs: ReadonlyArray<Measurement>
}

/** Jobs per second for throughput workloads, p50 milliseconds for latency. */
const headline = (cell: Cell): number =>
  cell.workload.kind === "latency"
    ? median(cell.runs.map((run) => run.latency?.p50 ?? Number.NaN))
    : cell.workload.jobs / (median(cell.runs.map((run) => run.wallMs)) / 1000)

const problemsOf = (cell: Cell) => cell.runs.flatMap((run, i) => run.problems.map((problem) => `round ${i + 1}: ${problem}`))

const grouped = (value: number) => Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-"
const fixed = (value: number | undefined, digits: number) =>
  value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : "-"

/** A ratio where above 1 means better than the reference (faster, or lower latency). */
const ratio = (cell: Cell, reference: Cell | undefined): string => {
  if (reference === undefined) return "-"
  const mine = headline(cell)
  const theirs = headline(reference)
  const value = cell.workload.kind === "latency" ? theirs / mine : mine / theirs
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : "-"
}

const result = (cell: Cell): string => {
  if (cell.workload.kind === "throughput") return `${grouped(headline(cell))} jobs/s`
  const p = (pick: (run: Measurement) => number | undefined) => median(cell.runs.map((run) => pick(run) ?? Number.NaN))
  return `p50 ${fixed(p((run) => run.latency?.p50), 1)} / p95 ${fixed(p((run) => run.latency?.p95), 1)} / p99 ${
    fixed(p((run) => run.latency?.p99), 1)
  } ms`
}

/**
 * The result table: each row's ratio to graphile-worker and to raw SQL, and,
 * when the raw-SQL queue that keeps its finished jobs ran, to that one too
 * (the floor for a drain that keeps them, as effect-oban does by default).
 */
const renderMarkdown = (cells: ReadonlyArray<Cell>): string => {
  const withKept = cells.some((cell) => cell.contender.key === "raw-kept")
  const lines = [
    `| workload | library | result (median) | vs graphile-worker | vs raw SQL |${withKept ? " vs raw SQL, kept |" : ""} exactly once |`,
    `|---|---|---|---:|---:|${withKept ? "---:|" : ""}---|`
  ]
  for (const cell of cells) {
    const same = cells.filter((other) => other.workload === cell.workload)
    const reference = (key: string) => ratio(cell, same.find((other) => other.contender.key === key))
    lines.push(
      `| ${cell.workload.title} | ${cell.contender.name} | ${result(cell)} | ${reference("graphile")} | ${reference("raw")} |${
        withKept ? ` ${reference("raw-kept")} |` : ""
      } ${problemsOf(cell).length === 0 ? "yes" : "NO"} |`
    )
  }
  return lines.join("\n")
}

/** Runs the comparison on `url`; sets a failing exit code when any run had a problem. */
export const comparePeers = (url: string, serverVersion: string) =>
  Effect.gen(function*() {
    const chosen = selected(workloads, listFromEnv("BENCH_ONLY"), (workload) => workload.key)
    const contenders = selected(
      [effectOban, effectObanDelete, ...allPeers.map(peerContender)],
      listFromEnv("BENCH_PEERS"),
      (c) => c.key
    )
    const rounds = Number(process.env["BENCH_ROUNDS"] ?? "3")
    const warmups = Number(process.env["BENCH_WARMUP"] ?? "1")
    const runs = new Map<string, Array<Measurement>>()
    const warmupRuns = new Map<string, Array<Measurement>>()
    const started = performance.now()
    for (let round = -warmups; round < rounds; round++) {
      const warmup = round < 0
      const label = warmup ? `warm-up ${round + warmups + 1}/${warmups}` : `round ${round + 1}/${rounds}`
      for (const workload of chosen) {
        for (let k = 0; k < contenders.length; k++) {
          const contender = contenders[(k + round + warmups) % contenders.length]!
          if (contender.runs !== undefined && !contender.runs(workload)) continue
          const measured = yield* contender.run(workload, url)
          const id = `${workload.key}/${contender.key}`
          const into = warmup ? warmupRuns : runs
          into.set(id, [...(into.get(id) ?? []), measured])
          const shown = workload.kind === "latency"
            ? `p50 ${fixed(measured.latency?.p50, 1)} ms`
            : `${grouped(workload.jobs / (measured.wallMs / 1000))} jobs/s`
          yield* Console.error(
            `${label} ${workload.key} ${contender.name}: ${shown}${
              measured.problems.length > 0 ? " FAILED" : ""
            } (${((performance.now() - started) / 1000).toFixed(0)} s elapsed)${measured.note === undefined ? "" : `; ${measured.note}`}`
          )
        }
      }
    }
    const cellsOf = (measured: ReadonlyMap<string, ReadonlyArray<Measurement>>): Array<Cell> =>
      chosen.flatMap((workload) =>
        contenders.filter((contender) => contender.runs?.(workload) ?? true).map((contender) => ({
          workload,
          contender,
          runs: measured.get(`${workload.key}/${contender.key}`) ?? []
        }))
      )
    const cells = cellsOf(runs)
    const warmupCells = cellsOf(warmupRuns)
    yield* Console.log("")
    yield* Console.log(
      `Node ${process.version}, PostgreSQL ${serverVersion}, medians of ${rounds} interleaved rounds after ${warmups} ` +
        `warm-up round(s), drains of ${drainJobs.toLocaleString("en-US")} jobs; ratios above 1 are better than the reference`
    )
    yield* Console.log(renderMarkdown(cells))
    if (warmups > 0) {
      yield* Console.log("")
      yield* Console.log(
        "The warm-up round(s), not in the medians above: each library's first runs in this process, before the JIT " +
          "has compiled its hot paths (a long-running node is past this; a node that just started is not)"
      )
      yield* Console.log(renderMarkdown(warmupCells))
    }
    yield* Console.log("")
    yield* Console.log("effect-oban: the workloads of `npm run bench` (W3c: 2 processes x limit 50)")
    for (const peer of allPeers) yield* Console.log(`${peer.name}: ${peer.setup}`)
    // A job run twice or never fails the run in a warm-up round too.
    const failed = [
      ...warmupCells.map((cell) => ({ cell, when: " (warm-up)" })),
      ...cells.map((cell) => ({ cell, when: "" }))
    ].filter(({ cell }) => problemsOf(cell).length > 0)
    for (const { cell, when } of failed) {
      yield* Console.error(`\n${cell.workload.key} ${cell.contender.name}${when} FAILED:\n  ${problemsOf(cell).join("\n  ")}`)
    }
    if (failed.length > 0) {
      yield* Effect.sync(() => {
        process.exitCode = 1
      })
    }
  })
