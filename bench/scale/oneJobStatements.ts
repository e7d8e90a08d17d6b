/**
 * `BENCH_SCALE=onejob npm run bench:scale`: what the database spends executing
 * a statement that writes one job, the shape of `Oban.insert` and of a claim
 * at low load, with no round trip or commit in the figure: each is run
 * 10,000 times (BENCH_ONEJOB_STATEMENTS) in a PL/pgSQL loop, and the loop's
 * time divided by its statements. Side by side, in rounds that each start with the next table:
 *
 * - the jobs table at the latest migration;
 * - the same table at migration 18, whose statement trigger of updates still
 *   built the name of the setting it reads in its WHEN clause, which
 *   PostgreSQL plans again for every statement (migration 19 made it a constant);
 * - the same table at migration 17, where its one-column checks were table
 *   CHECK constraints, which PostgreSQL parses again for every statement that
 *   writes the table (migration 18 made them domains);
 * - the raw-SQL queue's table of the peers' benchmark (bench/peers/raw.ts):
 *   a serial key, the args, a claim column, two indexes, no checks.
 *
 * The insert is `Oban.insert`'s statement without its `pg_notify` (a loop
 * inside one transaction would only queue one notification); the claim is
 * the update a claim makes to its job, found by id: in one transaction a
 * `SKIP LOCKED` scan would step over every job the loop claimed before.
 * Rounds: BENCH_ONEJOB_ROUNDS (default 5) after one warm-up.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { pgLayer } from "../common.ts"
import { envInt, fixed, median, ratio, textTable } from "./report.ts"
import {
  alternatingRounds,
  createJobsSchema,
  createRawQueueSchema,
  createSchemas,
  createTimingLoop,
  jobsTable,
  rawSql
} from "./statementTables.ts"

type Table = "latest" | "migration 18" | "migration 17" | typeof rawSql
const tables: ReadonlyArray<readonly [Table, string]> = [
  ["latest", "bench_onejob_latest"],
  ["migration 18", "bench_onejob_m18"],
  ["migration 17", "bench_onejob_m17"],
  [rawSql, "bench_onejob_raw"]
]

const migrationOf: Record<Exclude<Table, typeof rawSql>, number | undefined> = {
  latest: undefined,
  "migration 18": 18,
  "migration 17": 17
}

/** Effect-oban's jobs table at the migration compared, or the raw-SQL queue's table (without its insert trigger). */
const createSchema = (table: Table, schema: string) =>
  table === rawSql ? createRawQueueSchema(schema) : createJobsSchema(schema, migrationOf[table])

const insertText = (table: Table, schema: string): string =>
  table === rawSql
    ? `INSERT INTO "${schema}".jobs (args) VALUES (jsonb_build_object('i', i)) RETURNING id INTO r`
    : `INSERT INTO "${schema}".oban_jobs
         (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
       VALUES ('available', 'default', 'Noop', jsonb_build_object('i', i), '{}', '{}', 20, 0, now(), now())
       RETURNING id, state, inserted_at, scheduled_at INTO r`

const claimText = (table: Table, schema: string): string =>
  table === rawSql
    ? `UPDATE "${schema}".jobs SET claimed_by = 'bench' WHERE id = first + i - 1 RETURNING id INTO r`
    : `UPDATE "${schema}".oban_jobs
       SET state = 'executing', attempt = attempt + 1, attempted_at = now(), attempted_by = ARRAY['bench', 'p']
       WHERE id = first + i - 1
       RETURNING id INTO r`

/** A function that runs `statement` `n` times and returns µs per statement (the loop's time). */
const createLoop = (table: Table, schema: string, name: string, statement: string) =>
  createTimingLoop(schema, name, {
    declare: "r record; first bigint;",
    setup: `SELECT min(id) INTO first FROM ${jobsTable(table, schema)}`,
    statement
  })

/** One round on one table: `n` inserts, then `n` one-job claims of the jobs just inserted; µs per statement. */
const roundOn = (table: Table, schema: string, n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`TRUNCATE ${jobsTable(table, schema)}`)
    const [inserted] = yield* sql.unsafe<{ readonly us: number }>(`SELECT "${schema}".insert_loop(${n}) AS us`)
    yield* sql.unsafe(`ANALYZE ${jobsTable(table, schema)}`)
    const [claimed] = yield* sql.unsafe<{ readonly us: number }>(`SELECT "${schema}".claim_loop(${n}) AS us`)
    return { insert: inserted!.us, claim: claimed!.us }
  })

export const oneJobStatements = (url: string) =>
  Effect.gen(function*() {
    const n = envInt("BENCH_ONEJOB_STATEMENTS", 10_000)
    const rounds = envInt("BENCH_ONEJOB_ROUNDS", 5)
    yield* createSchemas(tables, createSchema)
    for (const [table, schema] of tables) {
      yield* createLoop(table, schema, "insert_loop", insertText(table, schema))
      yield* createLoop(table, schema, "claim_loop", claimText(table, schema))
    }
    const measured = yield* alternatingRounds(tables, rounds, (table, schema) => roundOn(table, schema, n))
    const medianOf = (table: Table, statement: "insert" | "claim") =>
      median(measured.get(table)!.map((round) => round[statement]))
    const row = (table: Table) => [
      table,
      fixed(medianOf(table, "insert"), 1),
      ratio(medianOf(rawSql, "insert") / medianOf(table, "insert")),
      fixed(medianOf(table, "claim"), 1),
      ratio(medianOf(rawSql, "claim") / medianOf(table, "claim"))
    ]
    return {
      title: `One-job statements: the database's execution time (µs per statement, ${n} in a PL/pgSQL loop, medians of ${rounds} rounds)`,
      table: textTable(["jobs table", "insert µs", "vs raw SQL", "claim µs", "vs raw SQL"], tables.map(([table]) => row(table))),
      notes: [
        "no round trip and no commit per statement: what a server busy with single inserts and claims spends on each",
        "\"vs raw SQL\" above 1 is faster than the raw-SQL queue's table"
      ],
      problems: []
    }
  }).pipe(Effect.scoped, Effect.provide(pgLayer(url, 1)))
