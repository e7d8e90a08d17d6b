/**
 * The pruner under a sustained load: 10,000 jobs/s (BENCH_PRUNE_RATE)
 * inserted with `insertAll` in batches of 1,000, drained by one node
 * (limit 50) in this process, for 90 s (BENCH_PRUNE_SECONDS). The node
 * prunes with its defaults except a retention of 10 s instead of 5 minutes,
 * so a steady state is reached within the run. Every 5 s a sample counts
 * the finished rows, and those older than the retention (overdue for
 * pruning). Keeping pace means the overdue count stays bounded: at most
 * about one pruner interval of finished jobs, never growing with time.
 */
import { Console, Duration, Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../../src/Oban.ts"
import * as Pruner from "../../src/Pruner.ts"
import { clock, pgLayer, range, startNode, withSchema } from "../common.ts"
import { makeNoop, Noop } from "../workers.ts"
import { envInt, fixed, grouped, textTable } from "./report.ts"

const prefix = "bench_scale_prune"
const batch = 1_000
const maxAgeSeconds = 10
const sampleEverySeconds = 5

interface Sample {
  readonly seconds: number
  readonly inserted: number
  readonly ran: number
  readonly available: number
  readonly finished: number
  readonly overdue: number
  readonly oldestSeconds: number
}

/** Finished rows, those past the retention, and the age of the oldest, read through the pruning indexes. */
const countFinished = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ available: number; finished: number; overdue: number; oldest: number | null }>`
    WITH cutoff AS (SELECT now() - ${maxAgeSeconds} * interval '1 second' AS at)
    SELECT
      (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs WHERE state = 'available') AS available,
      (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs WHERE state IN ('completed', 'cancelled', 'discarded')) AS finished,
      (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs, cutoff WHERE state = 'completed' AND completed_at < cutoff.at)
        + (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs, cutoff WHERE state = 'discarded' AND discarded_at < cutoff.at)
        + (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs, cutoff WHERE state = 'cancelled' AND cancelled_at < cutoff.at)
        AS overdue,
      (SELECT extract(epoch FROM now() - min(completed_at))::float8 FROM ${sql(prefix)}.oban_jobs WHERE state = 'completed')
        AS oldest`
  return row!
})

export const prunerUnderLoad = (url: string) =>
  Effect.gen(function*() {
    const rate = envInt("BENCH_PRUNE_RATE", 10_000)
    const seconds = envInt("BENCH_PRUNE_SECONDS", 90)
    let ran = 0
    let inserted = 0
    const worker = makeNoop(() => Effect.sync(() => void ran++))
    const node = yield* startNode({
      prefix,
      node: "bench-prune",
      queues: { default: 50 },
      workers: [worker],
      pruner: { maxAge: `${maxAgeSeconds} seconds` }
    })
    const start = yield* clock
    const batchesPerSecond = rate / batch
    const inserter = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
      // Paced by the clock: a slow batch is caught up, so the rate is the target, not the batch cadence.
      const due = start + (inserted / batch / batchesPerSecond) * 1000
      const wait = due - (yield* clock)
      if (wait > 0) yield* Effect.sleep(wait)
      yield* Oban.insertAll(range(batch).map((i) => Noop.job({ i: inserted + i })))
      inserted += batch
    })))
    const samples: Array<Sample> = []
    for (let t = sampleEverySeconds; t <= seconds; t += sampleEverySeconds) {
      const wait = start + t * 1000 - (yield* clock)
      if (wait > 0) yield* Effect.sleep(wait)
      const counts = yield* countFinished
      const sample: Sample = {
        seconds: ((yield* clock) - start) / 1000,
        inserted,
        ran,
        available: counts.available,
        finished: counts.finished,
        overdue: counts.overdue,
        oldestSeconds: counts.oldest ?? 0
      }
      samples.push(sample)
      yield* Console.error(
        `prune t=${fixed(sample.seconds, 0)} s inserted ${grouped(inserted)} ran ${grouped(ran)} finished ${
          grouped(sample.finished)
        } overdue ${grouped(sample.overdue)}`
      )
    }
    yield* Fiber.interrupt(inserter)
    yield* node.stop
    const intervalSeconds = Duration.toSeconds(Pruner.defaults.interval)
    const rows = samples.map((s, i) => {
      const previous = samples[i - 1]
      const span = previous === undefined ? s.seconds : s.seconds - previous.seconds
      return [
        fixed(s.seconds, 0),
        grouped((s.inserted - (previous?.inserted ?? 0)) / span),
        grouped((s.ran - (previous?.ran ?? 0)) / span),
        grouped(s.available),
        grouped(s.finished),
        grouped(s.overdue),
        fixed(s.oldestSeconds, 1)
      ]
    })
    const last = samples[samples.length - 1]
    const half = samples.slice(Math.floor(samples.length / 2))
    const maxOverdue = Math.max(...half.map((sample) => sample.overdue))
    const bound = rate * intervalSeconds
    return {
      title: `Pruner under load: ${grouped(rate)} jobs/s inserted (insertAll x ${batch}) and drained by one node (limit 50) for ${seconds} s; retention ${maxAgeSeconds} s, pruner every ${intervalSeconds} s, ${Pruner.defaults.maxBatches} x ${grouped(Pruner.defaults.batchSize)}`,
      table: textTable(
        ["s", "inserted/s", "ran/s", "available", "finished rows", "overdue rows", "oldest finished s"],
        rows
      ),
      notes: [
        `inserted ${grouped(last?.inserted ?? 0)}, ran ${grouped(last?.ran ?? 0)}; overdue rows in the second half: at most ${
          grouped(maxOverdue)
        } (one pruner interval of load is ${grouped(bound)})`
      ],
      problems: []
    }
  }).pipe(Effect.scoped, (body) => withSchema(prefix, body), Effect.provide(pgLayer(url, 12)))
