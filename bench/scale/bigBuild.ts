/**
 * The two tables of the scale benchmark (bench/scale/bigTable.ts): the big
 * one of finished jobs, built with generate_series in one of two layouts
 * (BENCH_BIG_LAYOUT), and the empty one it is compared with.
 */
import { Console, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../../src/Migrations.ts"
import { stopwatch } from "../common.ts"
import { fixed, grouped } from "./report.ts"

/**
 * Where the big table's finished jobs are. `finished`: the steady state of an
 * install that started at migration 16, where the ack has moved every bare
 * completion into `oban_jobs_finished` and left the discarded and cancelled
 * jobs in `oban_jobs`. `legacy`: every finished job in `oban_jobs`, as in a
 * table migrated from an older release, until the pruner has removed the
 * rows written before the upgrade.
 */
export type Layout = "finished" | "legacy"

/** BENCH_BIG_LAYOUT, `finished` when unset. */
export const layoutFromEnv = Effect.suspend(() => {
  const value = process.env["BENCH_BIG_LAYOUT"] ?? "finished"
  return value === "finished" || value === "legacy"
    ? Effect.succeed<Layout>(value)
    : Effect.die(new Error(`BENCH_BIG_LAYOUT must be finished or legacy, not ${value}`))
})

type JobTable = "oban_jobs" | "oban_jobs_finished"
type FinishedState = "completed" | "discarded" | "cancelled"
const jobTables: ReadonlyArray<JobTable> = ["oban_jobs", "oban_jobs_finished"]

/** The table each finished state goes into, per layout. */
const placement: Record<Layout, ReadonlyArray<readonly [JobTable, ReadonlyArray<FinishedState>]>> = {
  finished: [["oban_jobs_finished", ["completed"]], ["oban_jobs", ["discarded", "cancelled"]]],
  legacy: [["oban_jobs", ["completed", "discarded", "cancelled"]]]
}

/** The big table's schema: one per layout, so that BENCH_BIG_KEEP reuses the right one. */
export const bigPrefixOf = (layout: Layout) => `bench_scale_big_${layout}`
const chunk = 1_000_000

/** Drops a benchmark schema and everything in it. */
export const dropSchema = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)
  })

/**
 * BENCH_PG_DEFAULTS=1 puts PostgreSQL's default autovacuum settings back on
 * the jobs tables (undoing migrations 6 and 16), to show what they cost.
 */
export const pgDefaults = process.env["BENCH_PG_DEFAULTS"] === "1"

const migrate = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* Migrations.run({ prefix })
    if (pgDefaults) {
      yield* sql.unsafe(`ALTER TABLE "${prefix}".oban_jobs RESET (
        autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, vacuum_index_cleanup)`)
      yield* sql.unsafe(`ALTER TABLE "${prefix}".oban_jobs_finished RESET (
        autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
        autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold)`)
    }
  })

/** An empty schema at the latest migration. */
export const freshSchema = (prefix: string) => Effect.andThen(dropSchema(prefix), migrate(prefix))

/**
 * Rows `from`..`to` of the big table in the given states, into `target`:
 * finished jobs spread over the last six days, oldest first. Row `i` has id
 * `i` in whichever table it goes to, as ids from `oban_jobs`'s identity.
 */
const insertFinished = (
  prefix: string,
  target: JobTable,
  states: ReadonlyArray<FinishedState>,
  from: number,
  to: number,
  total: number
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`
      INSERT INTO ${sql(prefix)}.${sql(target)} (
        id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority,
        inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by)
      OVERRIDING SYSTEM VALUE
      SELECT i, k.state::${sql(prefix)}.oban_job_state, k.queue, k.worker,
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
               ELSE 'App.GenerateReport' END AS worker) AS k
      WHERE k.state IN ${sql.in(states)}`
  })

/**
 * Closes the room a bulk load leaves at the end of each page of the finished
 * table. A finished table written by acks is appended to in order, so a page
 * has no room left that a later, smaller job fits in, or it has been filled by
 * such a job already; the bulk load's 16 rows of ~490 bytes leave ~260 bytes
 * on every page, which the free space map would offer to the drained jobs (one
 * row each) for the first hundreds of thousands of them. One completed no-op
 * job per page, shaped as the drain's, takes that room first. Returns how many
 * of them went into the pages of the load, not at the end.
 */
const closeRoom = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`VACUUM "${prefix}".oban_jobs_finished`)
    const [pages] = yield* sql<{ n: number }>`
      SELECT relpages::int AS n FROM pg_class WHERE oid = ${`"${prefix}".oban_jobs_finished`}::regclass`
    const [filled] = yield* sql<{ n: number }>`
      WITH filler AS (
        INSERT INTO ${sql(prefix)}.oban_jobs_finished (
          id, state, queue, worker, args, attempt, attempted_at, completed_at, attempted_by)
        SELECT nextval(pg_get_serial_sequence(${`"${prefix}".oban_jobs`}, 'id')), 'completed', 'default', 'BenchNoop',
               jsonb_build_object('i', i), 1, now(), now(),
               ARRAY[${`bench-${prefix}`}, gen_random_uuid()::text, gen_random_uuid()::text]
        FROM generate_series(1, ${pages?.n ?? 0}) AS i
        RETURNING ctid
      )
      SELECT count(*)::int AS n FROM filler WHERE (ctid::text::point)[0] < ${pages?.n ?? 0}`
    return { rows: pages?.n ?? 0, intoOldPages: filled?.n ?? 0 }
  })

/** Finished rows in the big schema's two tables, from the statistics. */
const finishedRows = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number | null }>`
      SELECT sum(greatest(c.reltuples, 0))::float8 AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ${prefix} AND c.relname IN ${sql.in(jobTables)}`
    return row?.n ?? 0
  })

/** Rows, heap and index size of both tables. */
const sizes = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ name: string; rows: number; heap: string; indexes: string }>`
      SELECT c.relname AS name, greatest(c.reltuples, 0)::float8 AS rows,
             pg_size_pretty(pg_table_size(c.oid)) AS heap, pg_size_pretty(pg_indexes_size(c.oid)) AS indexes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ${prefix} AND c.relname IN ${sql.in(jobTables)}
      ORDER BY c.relname`
    return rows.map((row) => `${row.name} ${grouped(row.rows)} rows, ${row.heap} + ${row.indexes} indexes`).join("; ")
  })

/** Builds the big table in `layout`, or reuses one left by BENCH_BIG_KEEP=1 that has the rows. */
export const prepareBig = (layout: Layout, rows: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const prefix = bigPrefixOf(layout)
    if (process.env["BENCH_BIG_KEEP"] === "1" && (yield* finishedRows(prefix)) >= rows * 0.99) {
      yield* Console.error(`big: reusing ${prefix}`)
      yield* migrate(prefix)
      return `reused; ${yield* sizes(prefix)}`
    }
    yield* freshSchema(prefix)
    let filler = ""
    const [buildMs] = yield* stopwatch(Effect.gen(function*() {
      // The migrations' secondary indexes, dropped for the bulk insert and built again after it.
      const indexes = yield* sql<{ indexname: string; indexdef: string }>`
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = ${prefix} AND tablename IN ${sql.in(jobTables)}
          AND indexname NOT IN ('oban_jobs_pkey', 'oban_jobs_finished_pkey')`
      for (const index of indexes) yield* sql.unsafe(`DROP INDEX "${prefix}"."${index.indexname}"`)
      for (let from = 1; from <= rows; from += chunk) {
        const to = Math.min(rows, from + chunk - 1)
        for (const [target, states] of placement[layout]) yield* insertFinished(prefix, target, states, from, to, rows)
        yield* Console.error(`big (${layout}): ${grouped(to)} rows`)
      }
      yield* sql`SELECT setval(pg_get_serial_sequence(${`"${prefix}".oban_jobs`}, 'id'), ${rows})`
      if (layout === "finished" && process.env["BENCH_BIG_FILL"] !== "0") {
        const closed = yield* closeRoom(prefix)
        filler = `; ${grouped(closed.rows)} filler rows (${grouped(closed.intoOldPages)} into old pages)`
      }
      for (const index of indexes) yield* sql.unsafe(index.indexdef)
      for (const name of jobTables) yield* sql.unsafe(`VACUUM ANALYZE "${prefix}".${name}`)
    }))
    return `built in ${fixed(buildMs / 1000, 0)} s${filler}; ${yield* sizes(prefix)}`
  })
