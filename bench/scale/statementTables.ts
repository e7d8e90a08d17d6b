/**
 * What the sections that time statements in the server (`onejob`, `batch`)
 * share: the tables they compare, each in a schema of its own (effect-oban's
 * jobs table, or the raw-SQL queue's of bench/peers/raw.ts), and their rounds.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Migrations from "../../src/Migrations.ts"
import { dropSchema } from "../common.ts"
import { tableDdl } from "../peers/raw.ts"

/** The name of the raw-SQL queue's table among the compared ones. */
export const rawSql = "raw SQL" as const

/** The jobs table in `schema`: the raw-SQL queue's, or effect-oban's. */
export const jobsTable = (table: string, schema: string): string =>
  table === rawSql ? `"${schema}".jobs` : `"${schema}".oban_jobs`

/** Drops `schema` if it exists and migrates it anew, to migration `to` (default: the latest). */
export const createJobsSchema = (schema: string, to?: number) =>
  Effect.asVoid(Effect.andThen(dropSchema(schema), Migrations.run({ prefix: schema, to })))

/** Drops `schema` if it exists and creates it holding the raw-SQL queue's table and index (without its insert trigger). */
export const createRawQueueSchema = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* dropSchema(schema)
    yield* sql.unsafe(`CREATE SCHEMA "${schema}"`)
    for (const statement of tableDdl(schema)) yield* sql.unsafe(statement)
  })

/** Creates the schema of every table with `create`; all of them are dropped when the scope closes. */
export const createSchemas = <T extends string, E, R>(
  tables: ReadonlyArray<readonly [T, string]>,
  create: (table: T, schema: string) => Effect.Effect<void, E, R>
) =>
  Effect.andThen(
    Effect.addFinalizer(() => Effect.ignore(Effect.forEach(tables, ([, schema]) => dropSchema(schema)))),
    Effect.forEach(tables, ([table, schema]) => create(table, schema), { discard: true })
  )

/**
 * `measure` on every table in a warm-up round and `rounds` measured ones,
 * each round starting with the next table (so that a drift within rounds
 * does not fall on one table); the measured results, by table.
 */
export const alternatingRounds = <T extends string, A, E, R>(
  tables: ReadonlyArray<readonly [T, string]>,
  rounds: number,
  measure: (table: T, schema: string) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const measured = new Map<T, Array<A>>(tables.map(([table]) => [table, []]))
    for (let index = 0; index <= rounds; index++) {
      for (let k = 0; k < tables.length; k++) {
        const [table, schema] = tables[(index + k) % tables.length]!
        const result = yield* measure(table, schema)
        if (index > 0) measured.get(table)!.push(result)
      }
    }
    return measured
  })

/**
 * Creates the function `"<schema>".<name>(n int)`: after `setup`, it runs
 * `statement` `n` times in a PL/pgSQL loop (the loop variable is `i`) and
 * returns the loop's time in µs per statement, or per `unitsPerStatement`
 * (the jobs of a batch).
 */
export const createTimingLoop = (
  schema: string,
  name: string,
  options: { readonly declare: string; readonly setup: string; readonly statement: string; readonly unitsPerStatement?: number }
) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.unsafe(`
    CREATE FUNCTION "${schema}".${name}(n int) RETURNS double precision LANGUAGE plpgsql AS $$
    DECLARE started timestamptz; ${options.declare}
    BEGIN
      ${options.setup};
      started := clock_timestamp();
      FOR i IN 1..n LOOP
        ${options.statement};
      END LOOP;
      RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / (n * ${options.unitsPerStatement ?? 1});
    END $$`))
