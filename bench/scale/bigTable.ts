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
 * The empty table is created once, so both tables see the same rounds.
 * Each round, for each table: 20,000 no-op jobs are inserted; the
 * producer's fetch statement (`fetchJobs`, demand 50) is timed 100 times,
 * each inside a transaction that is rolled back so the jobs stay available;
 * then one node (limit 50) drains them, timed from its start until no job
 * is waiting or running. Every drain is checked for exactly-once execution.
 *
 * BENCH_BIG_KEEP=1 keeps the big schema after the run (and reuses one
 * that is there), for repeated measurements; drop it with
 * `DROP SCHEMA bench_scale_big CASCADE` when done.
 */
import { Console, Deferred, Effect, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../../src/Migrations.ts"
import { now } from "../../src/ObanClock.ts"
import { fetchJobs } from "../../src/internal/sql/claims.ts"
import { checkExactlyOnce, clock, latencyOf, nothingLeft, pgLayer, startNode, stopwatch, waitUntil } from "../common.ts"
import { makeCounting } from "../workers.ts"
import { envInt, fixed, grouped, median, ratio, textTable } from "./report.ts"

const bigPrefix = "bench_scale_big"
const emptyPrefix = "bench_scale_empty"
const drainJobs = 20_000
const fetchSamples = 100
const fetchDemand = 50
const chunk = 1_000_000

const dropSchema = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)
  })

/**
 * BENCH_PG_DEFAULTS=1 puts PostgreSQL's default autovacuum settings back on
 * the jobs tables (undoing migration 6), to show what they cost.
 */
const pgDefaults = process.env["BENCH_PG_DEFAULTS"] === "1"

const migrate = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* Migrations.run({ prefix })
    if (pgDefaults) {
      yield* sql.unsafe(`ALTER TABLE "${prefix}".oban_jobs RESET (
        autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, vacuum_index_cleanup)`)
    }
  })

const freshSchema = (prefix: string) => Effect.andThen(dropSchema(prefix), migrate(prefix))

/** Rows `from`..`to` of the big table: finished jobs spread over the last six days, oldest first. */
const insertFinished = (from: number, to: number, total: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`
      INSERT INTO ${sql(bigPrefix)}.oban_jobs (
        state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority,
        inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by)
      SELECT k.state::${sql(bigPrefix)}.oban_job_state, k.queue, k.worker,
             jsonb_build_object('user_id', i, 'email', 'user' || i || '@example.com', 'template', 'welcome_v2',
                                'locale', 'en-US', 'request_id', md5(i::text)),
             jsonb_build_object('trace_id', md5((i * 7)::text)),
             ARRAY[k.queue],
             CASE WHEN k.state = 'discarded' THEN jsonb_build_array(jsonb_build_object(
               'attempt', 20, 'at', t.at, 'kind', 'error',
               'message', 'SMTP 550: mailbox unavailable for user' || i)) ELSE '[]'::jsonb END,
             CASE WHEN k.state = 'discarded' THEN 20 WHEN k.state = 'cancelled' THEN 0 ELSE 1 END,
             20, 0, t.at, t.at, t.at + interval '5 milliseconds',
             CASE WHEN k.state = 'completed' THEN t.at + interval '25 milliseconds' END,
             CASE WHEN k.state = 'discarded' THEN t.at + interval '25 milliseconds' END,
             CASE WHEN k.state = 'cancelled' THEN t.at + interval '25 milliseconds' END,
             ARRAY['web-' || (i % 8), md5((i % 64)::text), md5(i::text)]
      FROM generate_series(${from}::bigint, ${to}::bigint) AS i,
        LATERAL (SELECT now() - interval '6 days' + (i::double precision / ${total}) * interval '6 days' AS at) AS t,
        LATERAL (SELECT
          CASE WHEN i % 100 < 3 THEN 'discarded' WHEN i % 100 = 3 THEN 'cancelled' ELSE 'completed' END AS state,
          CASE WHEN i % 10 < 6 THEN 'default' WHEN i % 10 < 9 THEN 'mailers' ELSE 'reports' END AS queue,
          CASE WHEN i % 10 < 6 THEN 'App.ProcessPayment' WHEN i % 10 < 9 THEN 'App.SendEmail'
               ELSE 'App.GenerateReport' END AS worker) AS k`
  })

const finishedRows = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ n: number | null }>`
    SELECT c.reltuples::bigint::float8 AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${bigPrefix} AND c.relname = 'oban_jobs'`
  return row?.n ?? 0
})

/** Builds the big table, or reuses one left by BENCH_BIG_KEEP=1 that has the rows. */
const prepareBig = (rows: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    if (process.env["BENCH_BIG_KEEP"] === "1" && (yield* finishedRows) >= rows * 0.99) {
      yield* Console.error(`big: reusing ${bigPrefix}`)
      yield* migrate(bigPrefix)
      return "reused"
    }
    yield* freshSchema(bigPrefix)
    const [buildMs] = yield* stopwatch(Effect.gen(function*() {
      // The migrations' secondary indexes, dropped for the bulk insert and built again after it.
      const indexes = yield* sql<{ indexname: string; indexdef: string }>`
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = ${bigPrefix} AND tablename = 'oban_jobs' AND indexname <> 'oban_jobs_pkey'`
      for (const index of indexes) yield* sql.unsafe(`DROP INDEX "${bigPrefix}"."${index.indexname}"`)
      for (let from = 1; from <= rows; from += chunk) {
        yield* insertFinished(from, Math.min(rows, from + chunk - 1), rows)
        yield* Console.error(`big: ${grouped(Math.min(rows, from + chunk - 1))} rows`)
      }
      for (const index of indexes) yield* sql.unsafe(index.indexdef)
      yield* sql.unsafe(`VACUUM ANALYZE "${bigPrefix}".oban_jobs`)
    }))
    const [size] = yield* sql<{ table: string; indexes: string }>`
      SELECT pg_size_pretty(pg_table_size(${`"${bigPrefix}".oban_jobs`}::regclass)) AS table,
             pg_size_pretty(pg_indexes_size(${`"${bigPrefix}".oban_jobs`}::regclass)) AS indexes`
    return `built in ${fixed(buildMs / 1000, 0)} s; table ${size?.table}, indexes ${size?.indexes}`
  })

const insertAvailable = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: number }>`
      INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args)
      SELECT 'available', 'default', 'BenchNoop', jsonb_build_object('i', i)
      FROM generate_series(1, ${drainJobs}) AS i
      RETURNING id::int AS id`
    return rows.map((row) => row.id)
  })

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
  readonly problems: ReadonlyArray<string>
}

/** The server's WAL counters (PostgreSQL 14+): bytes and full-page images written so far. */
const walCounters = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ bytes: number; fpi: number }>`
    SELECT wal_bytes::float8 AS bytes, wal_fpi::float8 AS fpi FROM pg_stat_wal`
  return row ?? { bytes: Number.NaN, fpi: Number.NaN }
})

const measureOn = (prefix: string) =>
  Effect.gen(function*() {
    const inserted = yield* insertAvailable(prefix)
    const fetchMs: Array<number> = []
    for (let i = 0; i < fetchSamples; i++) fetchMs.push(yield* timeFetch(prefix))
    const walBefore = yield* walCounters
    const drained = yield* drain(prefix, inserted)
    const walAfter = yield* walCounters
    const round: Round = {
      fetchMs,
      drainJobsPerSecond: inserted.length / (drained.wallMs / 1000),
      walBytesPerJob: (walAfter.bytes - walBefore.bytes) / inserted.length,
      fullPagesPerJob: (walAfter.fpi - walBefore.fpi) / inserted.length,
      problems: drained.problems
    }
    return round
  })

export const bigTable = (url: string) =>
  Effect.gen(function*() {
    const rows = envInt("BENCH_BIG_ROWS", 10_000_000)
    const rounds = envInt("BENCH_BIG_ROUNDS", 6)
    const built = yield* prepareBig(rows)
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
          } jobs/s${measured.problems.length > 0 ? ` FAILED ${measured.problems.join("; ")}` : ""}`
        )
      }
    }
    const summary = (prefix: string) => {
      const list = results.get(prefix)!
      const fetch = latencyOf(list.flatMap((round) => round.fetchMs))
      return { fetch, drain: median(list.map((round) => round.drainJobsPerSecond)) }
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
        `${fixed(e.fullPagesPerJob, 2)} / ${fixed(b.fullPagesPerJob, 2)}`
      ]
    })
    const empty = summary(emptyPrefix)
    const big = summary(bigPrefix)
    const table = textTable(["measure", "empty table", `${grouped(rows)} finished`, "big / empty"], [
      ["drain, 1 node limit 50 (jobs/s, median)", grouped(empty.drain), grouped(big.drain), ratio(big.drain / empty.drain)],
      ["fetch of 50, p50 (ms)", fixed(empty.fetch.p50, 2), fixed(big.fetch.p50, 2), ratio(big.fetch.p50 / empty.fetch.p50)],
      ["fetch of 50, p95 (ms)", fixed(empty.fetch.p95, 2), fixed(big.fetch.p95, 2), ratio(big.fetch.p95 / empty.fetch.p95)],
      ["fetch of 50, p99 (ms)", fixed(empty.fetch.p99, 2), fixed(big.fetch.p99, 2), ratio(big.fetch.p99 / empty.fetch.p99)]
    ])
    return {
      title: `Big table: ${grouped(rows)} finished jobs (${built}) vs an empty table, ${rounds} interleaved rounds`,
      table,
      notes: [
        "",
        textTable(
          ["round", "fetch p50 empty", "fetch p50 big", "drain empty", "drain big", "big / empty", "WAL B/job", "full pages/job"],
          perRound
        ),
        "WAL columns: empty / big, written by the whole server during the drain (other sessions included)",
        `autovacuum settings of the jobs tables: ${pgDefaults ? "PostgreSQL's defaults (BENCH_PG_DEFAULTS=1)" : "migration 6"}`,
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
    Effect.ensuring(process.env["BENCH_BIG_KEEP"] === "1" ? Effect.void : Effect.ignore(dropSchema(bigPrefix))),
    Effect.provide(pgLayer(url, 12))
  )
