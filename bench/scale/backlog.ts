/**
 * A backlog of available no-op jobs written by the server itself
 * (`generate_series`), so the process that drains them has encoded nothing.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"

/** Inserts `jobs` available `BenchNoop` jobs (args `{ i }`) into `<prefix>.oban_jobs`; returns their ids in order. */
export const insertNoopBacklog = (prefix: string, jobs: number, options: { readonly analyze?: boolean } = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: string }>`
      INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args)
      SELECT 'available', 'default', 'BenchNoop', jsonb_build_object('i', i)
      FROM generate_series(1, ${jobs}) AS i
      RETURNING id::text AS id`
    if (options.analyze === true) yield* sql.unsafe(`ANALYZE "${prefix}".oban_jobs`)
    return rows.map((row) => Number(row.id))
  })
