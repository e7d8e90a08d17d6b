/** The raw-SQL queue's table (bench/peers/raw.ts) in a schema of its own, for the scale sections that time statements on it. */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { dropSchema } from "../common.ts"
import { tableDdl } from "../peers/raw.ts"

/** Drops `schema` if it exists and creates it holding the raw-SQL queue's table and index (without its insert trigger). */
export const createRawQueueSchema = (schema: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* dropSchema(schema)
    yield* sql.unsafe(`CREATE SCHEMA "${schema}"`)
    for (const statement of tableDdl(schema)) yield* sql.unsafe(statement)
  })
