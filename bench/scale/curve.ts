/**
 * The process curve: a drain of N no-op jobs (40,000 by default) by 1, 2 and
 * 4 OS processes, limit 50 each, for effect-oban (bench/multiprocess.ts,
 * nodes in bench/drainer.ts) and for the raw-SQL floor (bench/peers/raw.ts,
 * children in bench/peers/child.ts). The two run interleaved in the same
 * rounds (the order alternates each round); each point is the median of the
 * rounds, and every drain is checked for exactly-once execution.
 */
import { Console, Effect } from "effect"
import type { Measurement } from "../common.ts"
import { w3c } from "../multiprocess.ts"
import { rawSql } from "../peers/raw.ts"
import { drainProcesses } from "../peers/workloads.ts"
import { envInt, grouped, median, ratio, textTable } from "./report.ts"

const processCounts = [1, 2, 4] as const
const limit = 50

interface Contender {
  readonly name: string
  readonly drain: (processes: number, jobs: number, url: string) => Effect.Effect<Measurement>
}

const crashed = (cause: unknown): Measurement => ({ wallMs: Number.NaN, problems: [String(cause)] })

const effectOban: Contender = {
  name: "effect-oban",
  drain: (processes, jobs, url) =>
    w3c({ processes, limit, jobs }).run(url).pipe(Effect.catchCause((cause) => Effect.succeed(crashed(cause))))
}

const raw: Contender = {
  name: "raw SQL",
  drain: (processes, jobs, url) =>
    Effect.tryPromise(() => drainProcesses({ processes, limit, jobs })(rawSql, url)).pipe(
      Effect.catchCause((cause) => Effect.succeed(crashed(cause)))
    )
}

const contenders = [effectOban, raw] as const

/** Runs the curve and returns its table; `problems` lists every failed check. */
export const processCurve = (url: string) =>
  Effect.gen(function*() {
    const jobs = envInt("BENCH_CURVE_JOBS", 40_000)
    const rounds = envInt("BENCH_ROUNDS", 3)
    const runs = new Map<string, Array<Measurement>>()
    for (let round = 0; round < rounds; round++) {
      for (const processes of processCounts) {
        for (let k = 0; k < contenders.length; k++) {
          const contender = contenders[(k + round) % contenders.length]!
          const measured = yield* contender.drain(processes, jobs, url)
          const key = `${contender.name}/${processes}`
          runs.set(key, [...(runs.get(key) ?? []), measured])
          yield* Console.error(
            `curve round ${round + 1}/${rounds}, ${processes} process(es), ${contender.name}: ${
              grouped(jobs / (measured.wallMs / 1000))
            } jobs/s${measured.problems.length > 0 ? ` FAILED ${measured.problems.join("; ")}` : ""}`
          )
        }
      }
    }
    const rate = (name: string, processes: number) =>
      jobs / (median((runs.get(`${name}/${processes}`) ?? []).map((run) => run.wallMs)) / 1000)
    const rows = processCounts.map((processes) => {
      const oban = rate("effect-oban", processes)
      const floor = rate("raw SQL", processes)
      return [
        `${processes} x limit ${limit}`,
        grouped(oban),
        ratio(oban / rate("effect-oban", 1)),
        grouped(floor),
        ratio(floor / rate("raw SQL", 1)),
        ratio(oban / floor)
      ]
    })
    const table = textTable(
      ["processes", "effect-oban jobs/s", "vs 1 process", "raw SQL jobs/s", "vs 1 process", "effect-oban / raw"],
      rows
    )
    const problems = Array.from(runs).flatMap(([key, list]) =>
      list.flatMap((run, i) => run.problems.map((problem) => `${key} round ${i + 1}: ${problem}`))
    )
    return {
      title: `Process curve: drain of ${grouped(jobs)} no-op jobs, medians of ${rounds} interleaved rounds`,
      table,
      problems
    }
  })
