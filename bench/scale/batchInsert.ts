/**
 * `BENCH_SCALE=batch npm run bench:scale`: what the database spends executing
 * `insertAll`'s statement for a batch of 1,000 no-op jobs, per job, with no
 * round trip, no commit and no node in the figure, and the args already
 * parsed and the plan cached (both sides send them as text, parsed per
 * statement): each batch statement runs 20 times (BENCH_BATCH_STATEMENTS) in
 * a PL/pgSQL loop, and the loop's time is divided by its jobs. Side by side,
 * in rounds that each start with the next table:
 *
 * - the jobs table at the latest migration;
 * - the same table without its fetch index (the partial index that claims
 *   read, on queue, priority, scheduled_at and id): what that index costs
 *   each insert;
 * - the same table with the statement not ordering its rows by their place
 *   in the batch (ids then follow the executor's order, which the statement
 *   does not promise), and with it returning no ids: what those two cost;
 * - the raw-SQL queue's table of the peers' benchmark (bench/peers/raw.ts)
 *   and its multi-row insert.
 *
 * The statement is the shape `insertJobs` sends for jobs that share every
 * field but their args (the args as one JSON array, read in order, the ids
 * returned as one array, which `insertAll` needs), without its `pg_notify`;
 * the raw-SQL queue's insert returns nothing, as in its benchmark. This is
 * the floor under W2 of `npm run bench -- --peers`: the rest comes on top.
 * Rounds: BENCH_BATCH_ROUNDS (default 8) after one warm-up.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { pgLayer } from "../common.ts"
import { envInt, fixed, grouped, median, ratio, textTable } from "./report.ts"
import {
  alternatingRounds,
  createJobsSchema,
  createRawQueueSchema,
  createSchemas,
  createTimingLoop,
  jobsTable,
  rawSql
} from "./statementTables.ts"

type Table = "latest" | "latest, no fetch index" | "latest, no ORDER BY" | "latest, no RETURNING" | typeof rawSql
const tables: ReadonlyArray<readonly [Table, string]> = [
  ["latest", "bench_batch_latest"],
  ["latest, no fetch index", "bench_batch_nofetch"],
  ["latest, no ORDER BY", "bench_batch_unordered"],
  ["latest, no RETURNING", "bench_batch_noret"],
  [rawSql, "bench_batch_raw"]
]

const batchSize = 1_000

const createSchema = (table: Table, schema: string) =>
  table === rawSql ? createRawQueueSchema(schema) : Effect.andThen(
    createJobsSchema(schema),
    table === "latest, no fetch index"
      ? Effect.flatMap(SqlClient, (sql) => sql.unsafe(`DROP INDEX "${schema}".oban_jobs_fetch_idx`))
      : Effect.void
  )

/** The jobs table's statement; `table` leaves out its ORDER BY or its RETURNING. */
const jobsBatchText = (table: Table, schema: string): string => {
  const ordered = table !== "latest, no ORDER BY"
  const returning = table !== "latest, no RETURNING"
  return `WITH inserted AS (
         INSERT INTO "${schema}".oban_jobs
           (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
         SELECT 'available', 'default'::text, 'Noop'::text, r.args, (SELECT '{}'::text::jsonb),
                (SELECT '{}'::text::text[]), 20::int2, 0::int2, now(), now()
         FROM ROWS FROM (jsonb_array_elements(batch)) WITH ORDINALITY AS r(args, ord)
         ${ordered ? "ORDER BY r.ord" : ""}
         ${returning ? "RETURNING id" : ""}
       )
       ${returning ? `SELECT array_agg(id${ordered ? " ORDER BY id" : ""}) INTO ids FROM inserted` : "SELECT NULL INTO ids"}`
}

const batchText = (table: Table, schema: string): string =>
  table === rawSql
    ? `INSERT INTO "${schema}".jobs (args) SELECT value FROM jsonb_array_elements(batch)`
    : jobsBatchText(table, schema)

/** A function that runs the batch statement `n` times and returns µs per job (the loop's time). */
const createLoop = (table: Table, schema: string) =>
  createTimingLoop(schema, "batch_loop", {
    declare: "batch jsonb; ids bigint[];",
    setup: `SELECT jsonb_agg(jsonb_build_object('i', g)) INTO batch FROM generate_series(1, ${batchSize}) AS g`,
    statement: batchText(table, schema),
    unitsPerStatement: batchSize
  })

const roundOn = (table: Table, schema: string, n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`TRUNCATE ${jobsTable(table, schema)}`)
    const [row] = yield* sql.unsafe<{ readonly us: number }>(`SELECT "${schema}".batch_loop(${n}) AS us`)
    return row!.us
  })

export const batchInsert = (url: string) =>
  Effect.gen(function*() {
    const n = envInt("BENCH_BATCH_STATEMENTS", 20)
    const rounds = envInt("BENCH_BATCH_ROUNDS", 8)
    yield* createSchemas(tables, createSchema)
    for (const [table, schema] of tables) yield* createLoop(table, schema)
    const measured = yield* alternatingRounds(tables, rounds, (table, schema) => roundOn(table, schema, n))
    const medianOf = (table: Table) => median(measured.get(table)!)
    const row = (table: Table) => [
      table,
      fixed(medianOf(table), 2),
      fixed(Math.min(...measured.get(table)!), 2),
      ratio(medianOf(rawSql) / medianOf(table))
    ]
    return {
      title: `Batch insert: the database's execution time of a statement inserting ${grouped(batchSize)} jobs (µs per job, ${n} statements in a PL/pgSQL loop, medians of ${rounds} rounds)`,
      table: textTable(["jobs table", "µs/job", "min", "vs raw SQL"], tables.map(([table]) => row(table))),
      notes: [
        "the statement's execution only (args parsed, plan cached; no round trip, commit or node), under W2 (`insertAll` of 1,000)",
        "ours also returns and aggregates the 1,000 ids, as `insertAll` needs; raw SQL's insert returns none",
        "\"vs raw SQL\" above 1 is faster than the raw-SQL queue's table"
      ],
      problems: []
    }
  }).pipe(Effect.scoped, Effect.provide(pgLayer(url, 1)))
