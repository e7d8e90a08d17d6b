/**
 * Memory of one node draining a backlog: 100,000 no-op jobs (BENCH_MEMORY_JOBS)
 * inserted up front with generate_series, then one node (limit 50) started in
 * this process. Every 500 ms a sample of RSS and heap is taken, after a full
 * garbage collection when the process runs with `--expose-gc` (the npm
 * script does), so the heap shows what is retained rather than garbage not
 * yet collected. Flat means the heap at the end of the drain is about where
 * it was early in it: nothing is kept per job.
 */
import { Deferred, Effect, Fiber, Option } from "effect"
import { checkJobsTable, clock, completedCount, pgLayer, startNode, waitUntil, withSchema } from "../common.ts"
import { makeNoop } from "../workers.ts"
import { insertNoopBacklog } from "./backlog.ts"
import { envInt, fixed, grouped, megabytes, textTable } from "./report.ts"

const prefix = "bench_scale_memory"
const sampleEveryMs = 500

interface Sample {
  readonly seconds: number
  readonly ran: number
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
}

const collect = (globalThis as { gc?: () => void }).gc

/** The sample closest to `fraction` of the drain done. */
const at = (samples: ReadonlyArray<Sample>, jobs: number, fraction: number): Sample =>
  samples.reduce((best, sample) =>
    Math.abs(sample.ran - fraction * jobs) < Math.abs(best.ran - fraction * jobs) ? sample : best
  )

export const memoryOfDrain = (url: string) =>
  Effect.gen(function*() {
    const jobs = envInt("BENCH_MEMORY_JOBS", 100_000)
    yield* insertNoopBacklog(prefix, jobs, { analyze: true })
    let ran = 0
    const allRan = yield* Deferred.make<void>()
    const worker = makeNoop(() =>
      Effect.suspend(() => ++ran === jobs ? Effect.asVoid(Deferred.succeed(allRan, undefined)) : Effect.void)
    )
    const samples: Array<Sample> = []
    const start = yield* clock
    const sample = Effect.gen(function*() {
      collect?.()
      const usage = process.memoryUsage()
      samples.push({
        seconds: ((yield* clock) - start) / 1000,
        ran,
        rss: usage.rss,
        heapUsed: usage.heapUsed,
        heapTotal: usage.heapTotal,
        external: usage.external
      })
    })
    yield* sample
    const node = yield* startNode({ prefix, node: "bench-memory", queues: { default: 50 }, workers: [worker] })
    const sampler = yield* Effect.forkChild(Effect.forever(Effect.andThen(Effect.sleep(sampleEveryMs), sample)))
    const finished = yield* Deferred.await(allRan).pipe(Effect.timeoutOption("300 seconds"))
    yield* waitUntil(Effect.map(completedCount(prefix), (n) => n === jobs), { every: "50 millis", timeout: "30 seconds" })
    const wallMs = (yield* clock) - start
    yield* sample
    yield* Fiber.interrupt(sampler)
    yield* node.stop
    yield* sample
    const problems = [
      ...(Option.isSome(finished) ? [] : [`only ${ran} of ${jobs} jobs ran within 300 s`]),
      ...(ran > jobs ? [`${ran - jobs} extra runs`] : []),
      ...(yield* checkJobsTable(prefix, jobs))
    ]
    const early = at(samples, jobs, 0.1)
    const late = at(samples, jobs, 0.9)
    const rows = samples.map((s) => [
      fixed(s.seconds, 1),
      grouped(s.ran),
      megabytes(s.rss),
      megabytes(s.heapUsed),
      megabytes(s.heapTotal),
      megabytes(s.external)
    ])
    return {
      title: `Memory: one node (limit 50) draining ${grouped(jobs)} jobs, ${
        grouped(jobs / (wallMs / 1000))
      } jobs/s; samples every ${sampleEveryMs} ms${collect === undefined ? " (no --expose-gc: heap includes garbage)" : " after a full GC"}`,
      table: textTable(["s", "jobs run", "rss MB", "heap used MB", "heap total MB", "external MB"], rows),
      notes: [
        `heap used at 10% of the drain ${megabytes(early.heapUsed)} MB, at 90% ${megabytes(late.heapUsed)} MB (${
          late.heapUsed >= early.heapUsed ? "+" : ""
        }${megabytes(late.heapUsed - early.heapUsed)} MB); rss ${megabytes(early.rss)} -> ${megabytes(late.rss)} MB`
      ],
      problems
    }
  }).pipe(Effect.scoped, (body) => withSchema(prefix, body), Effect.provide(pgLayer(url, 12)))
