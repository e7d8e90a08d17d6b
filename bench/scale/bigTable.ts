/**
 * Drain throughput and fetch latency on a jobs table that already holds
 * 10 million finished jobs (BENCH_BIG_ROWS), against a freshly created
 * empty one, interleaved in the same rounds.
 *
 * The big table is built with generate_series: completed (96%), discarded
 * with an error entry (3%) and cancelled (1%) jobs of three workers and
 * queues with realistic args, finished over the last six days, then
 * VACUUM ANALYZE, as a table that has been running for a while looks. The
 * nodes keep finished jobs 7 days, so their pruner finds nothing due.
 *
 * BENCH_BIG_LAYOUT says where the finished jobs are (see `Layout`):
 * `finished` (the default) as the ack leaves them since migration 16, the
 * completed ones in `oban_jobs_finished`; `legacy` all in `oban_jobs`, as
 * in a table migrated from an older release during its first `maxAge`.
 * `finished` closes the room the bulk load leaves on the finished table's
 * pages (see `closeRoom` in bigBuild.ts; BENCH_BIG_FILL=0 leaves it).
 *
 * The empty table is created once, so both tables see the same rounds.
 * Each round, for each table: 20,000 no-op jobs are inserted; the
 * producer's fetch statement (`fetchJobs`, demand 50) is timed 100 times,
 * each inside a transaction that is rolled back so the jobs stay available;
 * then a CHECKPOINT, and one node (limit 50) drains them, timed from its
 * start until no job is waiting or running. Every drain is checked for
 * exactly-once execution.
 *
 * BENCH_BIG_KEEP=1 keeps the big schema after the run (and reuses one
 * that is there), for repeated measurements on a DATABASE_URL server (the
 * embedded one is deleted when the run ends); each layout has its own
 * (`bench_scale_big_finished`, `bench_scale_big_legacy`): drop it with
 * `DROP SCHEMA bench_scale_big_finished CASCADE` when done.
 */
import { Console, Deferred, Effect, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { now } from "../../src/ObanClock.ts"
import { fetchJobs } from "../../src/internal/sql/claims.ts"
import { checkExactlyOnce, clock, latencyOf, nothingLeft, pgLayer, startNode, stopwatch, waitUntil } from "../common.ts"
import { makeCounting } from "../workers.ts"
import { insertNoopBacklog } from "./backlog.ts"
import { bigPrefixOf, dropSchema, freshSchema, type Layout, layoutFromEnv, pgDefaults, prepareBig } from "./bigBuild.ts"
import { envInt, fixed, grouped, median, ratio, textTable } from "./report.ts"

const emptyPrefix = "bench_scale_empty"
const drainJobs = 20_000
const fetchSamples = 100
const fetchDemand = 50

/** Carries the fetch's time out of the transaction it rolls back. */
class Rollback {
  readonly ms: number
  constructor(ms: number) {
    this.ms = ms
  }
}

/** The fetch statement's time, inside a transaction that is rolled back so the jobs stay available. */
const timeFetch = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const attempt = Effect.gen(function*() {
      const clockNow = yield* now(sql)
      const [ms, fetched] = yield* stopwatch(fetchJobs(sql, prefix, clockNow, {
        queue: "default",
        demand: fetchDemand,
        startNow: fetchDemand,
        node: "bench-fetch",
        producer: crypto.randomUUID(),
        claim: crypto.randomUUID()
      }))
      if (fetched.jobs.length !== fetchDemand) return yield* Effect.die(new Error(`fetched ${fetched.jobs.length} jobs`))
      return yield* Effect.fail(new Rollback(ms))
    })
    return yield* sql.withTransaction(attempt).pipe(
      Effect.flip,
      Effect.flatMap((error) => error instanceof Rollback ? Effect.succeed(error.ms) : Effect.die(error))
    )
  })

/** Drains the inserted jobs with one node at limit 50; returns the wall time and problems. */
const drain = (prefix: string, inserted: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const { allRan, ran: ranSoFar, runs, worker } = yield* makeCounting(inserted.length)
    const start = yield* clock
    const node = yield* startNode({
      prefix,
      node: `bench-${prefix}`,
      queues: { default: 50 },
      workers: [worker],
      pruner: { maxAge: "7 days" }
    })
    const ran = yield* Deferred.await(allRan).pipe(Effect.timeoutOption("120 seconds"))
    const settled = yield* waitUntil(nothingLeft(prefix), { every: "20 millis", timeout: "60 seconds" })
    const wallMs = (yield* clock) - start
    yield* node.stop
    const [row] = yield* sql<{ done: number }>`
      SELECT count(*)::int AS done FROM ${sql(prefix)}.oban_jobs_all
      WHERE id BETWEEN ${inserted[0]!} AND ${inserted[inserted.length - 1]!} AND state = 'completed' AND attempt = 1`
    const problems = [
      ...(Option.isSome(ran) ? [] : [`only ${ranSoFar()} of ${inserted.length} jobs ran`]),
      ...(settled ? [] : ["jobs were still waiting or running"]),
      ...(row?.done === inserted.length ? [] : [`${row?.done} of ${inserted.length} completed on their first attempt`]),
      ...checkExactlyOnce(runs, inserted)
    ]
    return { wallMs: settled ? wallMs : Number.NaN, problems }
  }).pipe(Effect.scoped)

interface Round {
  readonly fetchMs: ReadonlyArray<number>
  readonly drainJobsPerSecond: number
  /** WAL written during the drain, per job: bytes and full-page images. */
  readonly walBytesPerJob: number
  readonly fullPagesPerJob: number
  /** Heap pages the 20,000 inserted jobs were written to (about 350 when they fill new pages). */
  readonly insertPages: number
  /** Autovacuums of the schema's jobs tables that ended during the drain (or the 1.5 s after it). */
  readonly autovacuums: number
  readonly problems: ReadonlyArray<string>
}

/** The distinct heap pages of `oban_jobs` that hold the jobs `inserted`. */
const pagesOf = (prefix: string, inserted: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(DISTINCT (ctid::text::point)[0])::int AS n FROM ${sql(prefix)}.oban_jobs
      WHERE id BETWEEN ${inserted[0]!} AND ${inserted[inserted.length - 1]!}`
    return row?.n ?? Number.NaN
  })

/** How many autovacuums of the schema's two jobs tables have ended so far. */
const autovacuumCount = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT coalesce(sum(autovacuum_count), 0)::int AS n FROM pg_stat_all_tables
      WHERE schemaname = ${prefix} AND relname IN ('oban_jobs', 'oban_jobs_finished')`
    return row?.n ?? Number.NaN
  })

/**
 * The server's WAL so far: its position in bytes, and the full-page images
 * counted in `pg_stat_wal` (PostgreSQL 14+). A backend adds its counts to
 * `pg_stat_wal` at most once a second, so the read waits 1.5 s: without the
 * wait a drain of one second could show none of its WAL, or the insert's.
 */
const walCounters = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* Effect.sleep("1500 millis")
  const [row] = yield* sql<{ bytes: number; fpi: number }>`
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS bytes, wal_fpi::float8 AS fpi FROM pg_stat_wal`
  return row ?? { bytes: Number.NaN, fpi: Number.NaN }
})

const measureOn = (prefix: string) =>
  Effect.gen(function*() {
    const inserted = yield* insertNoopBacklog(prefix, drainJobs)
    const insertPages = yield* pagesOf(prefix, inserted)
    const fetchMs: Array<number> = []
    for (let i = 0; i < fetchSamples; i++) fetchMs.push(yield* timeFetch(prefix))
    // Every drain starts right after a checkpoint, so each page's first change writes a full-page image in
    // every round, as it does after each of a busy server's checkpoints, not only when one happens to fall in it.
    yield* (yield* SqlClient).unsafe("CHECKPOINT")
    const walBefore = yield* walCounters
    const vacuumsBefore = yield* autovacuumCount(prefix)
    const drained = yield* drain(prefix, inserted)
    const walAfter = yield* walCounters
    const vacuumsAfter = yield* autovacuumCount(prefix)
    const round: Round = {
      fetchMs,
      drainJobsPerSecond: inserted.length / (drained.wallMs / 1000),
      walBytesPerJob: (walAfter.bytes - walBefore.bytes) / inserted.length,
      fullPagesPerJob: (walAfter.fpi - walBefore.fpi) / inserted.length,
      insertPages,
      autovacuums: vacuumsAfter - vacuumsBefore,
      problems: drained.problems
    }
    return round
  })

const measureLayout = (layout: Layout) =>
  Effect.gen(function*() {
    const bigPrefix = bigPrefixOf(layout)
    const rows = envInt("BENCH_BIG_ROWS", 10_000_000)
    const rounds = envInt("BENCH_BIG_ROUNDS", 6)
    const built = yield* prepareBig(layout, rows)
    yield* freshSchema(emptyPrefix)
    const results = new Map<string, Array<Round>>([[emptyPrefix, []], [bigPrefix, []]])
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [emptyPrefix, bigPrefix] : [bigPrefix, emptyPrefix]
      for (const prefix of order) {
        const measured = yield* measureOn(prefix)
        results.get(prefix)!.push(measured)
        yield* Console.error(
          `big round ${round + 1}/${rounds} ${prefix}: fetch p50 ${fixed(latencyOf(measured.fetchMs).p50, 2)} ms, drain ${
            grouped(measured.drainJobsPerSecond)
          } jobs/s, WAL ${grouped(measured.walBytesPerJob)} B/job, ${fixed(measured.fullPagesPerJob, 2)} FPI/job${
            measured.problems.length > 0 ? ` FAILED ${measured.problems.join("; ")}` : ""
          }`
        )
      }
    }
    const summary = (prefix: string) => {
      const list = results.get(prefix)!
      const fetch = latencyOf(list.flatMap((round) => round.fetchMs))
      return {
        fetch,
        drain: median(list.map((round) => round.drainJobsPerSecond)),
        wal: median(list.map((round) => round.walBytesPerJob)),
        fpi: median(list.map((round) => round.fullPagesPerJob))
      }
    }
    const perRound = Array.from({ length: rounds }, (_, i) => {
      const [e, b] = [results.get(emptyPrefix)![i]!, results.get(bigPrefix)![i]!]
      return [
        `${i + 1}`,
        fixed(latencyOf(e.fetchMs).p50, 2),
        fixed(latencyOf(b.fetchMs).p50, 2),
        grouped(e.drainJobsPerSecond),
        grouped(b.drainJobsPerSecond),
        ratio(b.drainJobsPerSecond / e.drainJobsPerSecond),
        `${grouped(e.walBytesPerJob)} / ${grouped(b.walBytesPerJob)}`,
        `${fixed(e.fullPagesPerJob, 2)} / ${fixed(b.fullPagesPerJob, 2)}`,
        `${grouped(e.insertPages)} / ${grouped(b.insertPages)}`,
        `${e.autovacuums} / ${b.autovacuums}`
      ]
    })
    const empty = summary(emptyPrefix)
    const big = summary(bigPrefix)
    const table = textTable(["measure", "empty table", `${grouped(rows)} finished`, "big / empty"], [
      ["drain, 1 node limit 50 (jobs/s, median)", grouped(empty.drain), grouped(big.drain), ratio(big.drain / empty.drain)],
      ["fetch of 50, p50 (ms)", fixed(empty.fetch.p50, 2), fixed(big.fetch.p50, 2), ratio(big.fetch.p50 / empty.fetch.p50)],
      ["fetch of 50, p95 (ms)", fixed(empty.fetch.p95, 2), fixed(big.fetch.p95, 2), ratio(big.fetch.p95 / empty.fetch.p95)],
      ["fetch of 50, p99 (ms)", fixed(empty.fetch.p99, 2), fixed(big.fetch.p99, 2), ratio(big.fetch.p99 / empty.fetch.p99)],
      ["drain WAL per job (bytes, median)", grouped(empty.wal), grouped(big.wal), ratio(big.wal / empty.wal)],
      ["drain full-page images per job (median)", fixed(empty.fpi, 3), fixed(big.fpi, 3), ratio(big.fpi / empty.fpi)]
    ])
    return {
      title: `Big table, layout ${layout}: ${grouped(rows)} finished jobs (${built}) vs an empty table, ${rounds} interleaved rounds`,
      table,
      notes: [
        "",
        textTable(
          [
            "round",
            "fetch p50 empty",
            "fetch p50 big",
            "drain empty",
            "drain big",
            "big / empty",
            "WAL B/job",
            "full pages/job",
            "insert pages",
            "autovacuums"
          ],
          perRound
        ),
        "WAL columns: empty / big, written by the whole server during the drain, which starts after a CHECKPOINT (other sessions included)",
        "insert pages: heap pages the round's inserted jobs went to; autovacuums: of the table's schema, ended during the drain",
        `autovacuum settings of the jobs tables: ${pgDefaults ? "PostgreSQL's defaults (BENCH_PG_DEFAULTS=1)" : "migrations 6 and 16"}`,
        `fetch: ${fetchSamples} timed fetches of ${fetchDemand} per round and table, each rolled back; drain: ${
          grouped(drainJobs)
        } no-op jobs a round`
      ],
      problems: [...results].flatMap(([prefix, list]) =>
        list.flatMap((round, i) => round.problems.map((problem) => `${prefix} round ${i + 1}: ${problem}`))
      )
    }
  }).pipe(
    Effect.ensuring(Effect.ignore(dropSchema(emptyPrefix))),
    Effect.ensuring(process.env["BENCH_BIG_KEEP"] === "1" ? Effect.void : Effect.ignore(dropSchema(bigPrefixOf(layout))))
  )

export const bigTable = (url: string) =>
  layoutFromEnv.pipe(Effect.flatMap(measureLayout), Effect.provide(pgLayer(url, 12)))
