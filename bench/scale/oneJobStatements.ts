/**
 * `BENCH_SCALE=onejob npm run bench:scale`: what the database spends executing
 * a statement that writes one job, the shape of `Oban.insert` and of a claim
 * at low load, with no round trip or commit in the figure: each is run
 * 10,000 times (BENCH_ONEJOB_STATEMENTS) in a PL/pgSQL loop, and the loop's
 * time divided by its statements. Side by side, in alternating rounds:
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
import * as Migrations from "../../src/Migrations.ts"
import { dropSchema, pgLayer } from "../common.ts"
import { createRawQueueSchema } from "./rawTable.ts"
import { envInt, fixed, median, ratio, textTable } from "./report.ts"

type Table = "latest" | "migration 18" | "migration 17" | "raw SQL"
const tables: ReadonlyArray<readonly [Table, string]> = [
  ["latest", "bench_onejob_latest"],
  ["migration 18", "bench_onejob_m18"],
  ["migration 17", "bench_onejob_m17"],
  ["raw SQL", "bench_onejob_raw"]
]

const migrationOf: Record<Exclude<Table, "raw SQL">, number | undefined> = {
  latest: undefined,
  "migration 18": 18,
  "migration 17": 17
}

/** The schemas: effect-oban's at each migration compared, and the raw-SQL queue's table (without its insert trigger). */
const setUp = Effect.forEach(tables, ([table, schema]) =>
  table === "raw SQL"
    ? createRawQueueSchema(schema)
    : Effect.asVoid(Effect.andThen(dropSchema(schema), Migrations.run({ prefix: schema, to: migrationOf[table] }))), {
  discard: true
})

const insertText = (table: Table, schema: string): string =>
  table === "raw SQL"
    ? `INSERT INTO "${schema}".jobs (args) VALUES (jsonb_build_object('i', i)) RETURNING id INTO r`
    : `INSERT INTO "${schema}".oban_jobs
         (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
       VALUES ('available', 'default', 'Noop', jsonb_build_object('i', i), '{}', '{}', 20, 0, now(), now())
       RETURNING id, state, inserted_at, scheduled_at INTO r`

const claimText = (table: Table, schema: string): string =>
  table === "raw SQL"
    ? `UPDATE "${schema}".jobs SET claimed_by = 'bench' WHERE id = first + i - 1 RETURNING id INTO r`
    : `UPDATE "${schema}".oban_jobs
       SET state = 'executing', attempt = attempt + 1, attempted_at = now(), attempted_by = ARRAY['bench', 'p']
       WHERE id = first + i - 1
       RETURNING id INTO r`

const jobsTable = (table: Table, schema: string) => table === "raw SQL" ? `"${schema}".jobs` : `"${schema}".oban_jobs`

/** A function that runs `statement` `n` times and returns µs per statement (the loop's time). */
const createLoop = (sql: SqlClient, table: Table, schema: string, name: string, statement: string) =>
  sql.unsafe(`
    CREATE FUNCTION "${schema}".${name}(n int) RETURNS double precision LANGUAGE plpgsql AS $$
    DECLARE started timestamptz; r record; first bigint;
    BEGIN
      SELECT min(id) INTO first FROM ${jobsTable(table, schema)};
      started := clock_timestamp();
      FOR i IN 1..n LOOP
        ${statement};
      END LOOP;
      RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / n;
    END $$`)

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
    const sql = yield* SqlClient
    const n = envInt("BENCH_ONEJOB_STATEMENTS", 10_000)
    const rounds = envInt("BENCH_ONEJOB_ROUNDS", 5)
    yield* Effect.addFinalizer(() => Effect.ignore(Effect.forEach(tables, ([, schema]) => dropSchema(schema))))
    yield* setUp
    for (const [table, schema] of tables) {
      yield* createLoop(sql, table, schema, "insert_loop", insertText(table, schema))
      yield* createLoop(sql, table, schema, "claim_loop", claimText(table, schema))
    }
    const measured = new Map<Table, { insert: Array<number>; claim: Array<number> }>(
      tables.map(([table]) => [table, { insert: [], claim: [] }])
    )
    for (let index = 0; index <= rounds; index++) {
      for (const [table, schema] of tables) {
        const { claim, insert } = yield* roundOn(table, schema, n)
        if (index === 0) continue
        measured.get(table)!.insert.push(insert)
        measured.get(table)!.claim.push(claim)
      }
    }
    const medianOf = (table: Table, statement: "insert" | "claim") => median(measured.get(table)![statement])
    const row = (table: Table) => [
      table,
      fixed(medianOf(table, "insert"), 1),
      ratio(medianOf("raw SQL", "insert") / medianOf(table, "insert")),
      fixed(medianOf(table, "claim"), 1),
      ratio(medianOf("raw SQL", "claim") / medianOf(table, "claim"))
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
