/**
 * The pruner under a sustained load of 10,000 jobs/s (BENCH_PRUNE_RATE) for
 * 90 s (BENCH_PRUNE_SECONDS). Every 100 ms a loader inserts a tenth of a
 * second's jobs (available, with an insert notification) in one statement,
 * and one node (limit 50) in this process drains them. One node on this
 * 2-core machine drains fewer than 10,000 jobs/s, so the loader also writes
 * finished rows directly for whatever the drain is short of, into
 * `oban_jobs_finished` as the ack moves them: the pruner sees finished jobs
 * arrive at the full rate either way, in both of the tables it prunes. The node prunes with its
 * defaults except a retention of 10 s instead of 5 minutes, so the steady
 * state comes within the run. Every 5 s a sample counts the finished rows
 * and those older than the retention (overdue). Keeping pace means the
 * overdue count stays bounded (about one pruner interval of load at most)
 * and does not grow with time.
 */
import { Console, Duration, Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { channel } from "../../src/Config.ts"
import * as Pruner from "../../src/Pruner.ts"
import { clock, pgLayer, startNode, withSchema } from "../common.ts"
import { makeNoop } from "../workers.ts"
import { envInt, fixed, grouped, textTable } from "./report.ts"

const prefix = "bench_scale_prune"
const tickMs = 100
const maxAgeSeconds = 10
const sampleEverySeconds = 5

interface Sample {
  readonly seconds: number
  readonly inserted: number
  readonly ran: number
  readonly written: number
  readonly finished: number
  readonly overdue: number
  readonly oldestSeconds: number
}

/** Inserts `n` available no-op jobs and wakes the queue. */
const insertAvailable = (n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`
      WITH inserted AS (
        INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args)
        SELECT 'available', 'default', 'BenchNoop', jsonb_build_object('i', i) FROM generate_series(1, ${n}) AS i
        RETURNING 1
      )
      SELECT pg_notify(${channel(prefix, "insert")}, json_build_object('queue', 'default')::text)
      FROM (SELECT count(*) FROM inserted) AS c`
  })

/**
 * Writes `n` jobs that finished just now, as the ack of a drain would have
 * left them: moved to `oban_jobs_finished`, with ids from `oban_jobs`'s identity.
 */
const insertFinished = (n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`
      INSERT INTO ${sql(prefix)}.oban_jobs_finished (
        id, state, queue, worker, args, attempt, attempted_at, completed_at, attempted_by)
      SELECT nextval(pg_get_serial_sequence(${`"${prefix}".oban_jobs`}, 'id')), 'completed', 'default', 'BenchNoop',
             jsonb_build_object('i', i), 1, now(), now(), ARRAY['bench-loader', 'direct', md5(i::text)]
      FROM generate_series(1, ${n}) AS i`
  })

/** Finished rows, those past the retention, and the age of the oldest, read through the pruning indexes. */
const countFinished = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ finished: number; overdue: number; oldest: number | null }>`
    WITH cutoff AS (SELECT now() - ${maxAgeSeconds} * interval '1 second' AS at)
    SELECT
      (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs_all WHERE state IN ('completed', 'cancelled', 'discarded')) AS finished,
      (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs_all, cutoff WHERE state = 'completed' AND completed_at < cutoff.at)
        + (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs_all, cutoff WHERE state = 'discarded' AND discarded_at < cutoff.at)
        + (SELECT count(*)::int FROM ${sql(prefix)}.oban_jobs_all, cutoff WHERE state = 'cancelled' AND cancelled_at < cutoff.at)
        AS overdue,
      (SELECT extract(epoch FROM now() - min(completed_at))::float8 FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'completed')
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
    let written = 0
    const loader = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
      // Paced by the clock: a slow tick is caught up, so the rate is the target's, not the tick's.
      const wait = start + ((inserted / rate) * 1000 + tickMs) - (yield* clock)
      if (wait > 0) yield* Effect.sleep(wait)
      const due = Math.round((((yield* clock) - start) / 1000) * rate)
      const insert = Math.max(0, due - inserted)
      if (insert > 0) yield* insertAvailable(insert)
      inserted += insert
      const short = due - ran - written
      if (short > 0) yield* insertFinished(short)
      written += Math.max(0, short)
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
        written,
        finished: counts.finished,
        overdue: counts.overdue,
        oldestSeconds: counts.oldest ?? 0
      }
      samples.push(sample)
      yield* Console.error(
        `prune t=${fixed(sample.seconds, 0)} s inserted ${grouped(inserted)} ran ${grouped(ran)} written ${grouped(written)} finished ${
          grouped(sample.finished)
        } overdue ${grouped(sample.overdue)}`
      )
    }
    yield* Fiber.interrupt(loader)
    yield* node.stop
    const intervalSeconds = Duration.toSeconds(Pruner.defaults.interval)
    const rows = samples.map((s, i) => {
      const previous = samples[i - 1]
      const span = previous === undefined ? s.seconds : s.seconds - previous.seconds
      return [
        fixed(s.seconds, 0),
        grouped((s.inserted - (previous?.inserted ?? 0)) / span),
        grouped((s.ran - (previous?.ran ?? 0)) / span),
        grouped((s.written - (previous?.written ?? 0)) / span),
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
      title: `Pruner under load: ${grouped(rate)} jobs/s inserted and drained by one node (limit 50), finished rows topped up to the rate for ${seconds} s; retention ${maxAgeSeconds} s, pruner every ${intervalSeconds} s, ${Pruner.defaults.maxBatches} x ${grouped(Pruner.defaults.batchSize)}`,
      table: textTable(
        ["s", "inserted/s", "ran/s", "written finished/s", "finished rows", "overdue rows", "oldest finished s"],
        rows
      ),
      notes: [
        `inserted ${grouped(last?.inserted ?? 0)}, ran ${grouped(last?.ran ?? 0)}, written finished ${grouped(last?.written ?? 0)}; overdue rows in the second half: at most ${
          grouped(maxOverdue)
        } (one pruner interval of load is ${grouped(bound)})`
      ],
      problems: []
    }
  }).pipe(Effect.scoped, (body) => withSchema(prefix, body), Effect.provide(pgLayer(url, 12)))
