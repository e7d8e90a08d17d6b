/**
 * SQL of the dashboard's confirmation of a bulk action: how many jobs match
 * a filter, counted up to a cap so that asking costs at most the cap's rows.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { type Filter, filterCondition } from "../jobFilter.ts"
import { table } from "./tables.ts"

/** The jobs matching `filter`, up to `cap + 1` (more than `cap` means "more than cap"). */
export const countMatching = (
  sql: SqlClient,
  prefix: string,
  filter: Filter,
  cap: number
): Effect.Effect<number, SqlError> =>
  sql<{ readonly n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM ${table(sql, prefix, "oban_jobs_all")} AS j WHERE ${filterCondition(sql, filter)} LIMIT ${cap + 1}
    ) AS matching
  `.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
