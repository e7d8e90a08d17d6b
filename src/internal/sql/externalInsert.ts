/**
 * The statements of an insert that runs on someone else's connection (a
 * node-postgres client, an ORM's transaction): plain SQL text with `$n`
 * placeholders and text parameters, which any PostgreSQL driver can send.
 * The insert touches no session setting, so it leaves the caller's
 * transaction as it found it; the wake-up is a separate statement for the
 * caller to send after commit.
 */
import type { ReplaceField } from "../../Worker.ts"
import { wakePayload } from "./fragments.ts"
import { qualified } from "./tables.ts"
import { inputColumns, inputRecord, returnedColumns, upsertedCte } from "./upsertJobs.ts"

/** One SQL statement and its parameters, in the form every PostgreSQL driver takes. */
export interface SqlText {
  readonly text: string
  readonly values: ReadonlyArray<string>
}

/** The name of the one column the insert returns: a job as JSON text (see `externalInsert`). */
export const resultColumn = "oban_job"

/** What the insert contains: plain jobs, unique jobs (replacing `replace` on a conflict), or both. */
export interface ExternalInsertShape {
  readonly plain: boolean
  readonly unique: { readonly replace: ReadonlyArray<ReplaceField> } | undefined
}

/**
 * Inserts the jobs of `input` (a JSON array of `inputRow`s) in one statement,
 * stamped with the transaction's `now()`. Plain jobs are inserted in input
 * order, so their ids follow it; unique jobs go through the same upsert as
 * `upsertJobs` (in key order, `ON CONFLICT DO UPDATE` on the unique index).
 * Returns one row per inserted or matched job, with the single text column
 * `oban_job`: the row as JSON plus whether it conflicted and, for a unique
 * job, its `unique_key`; plain jobs are in input order by id.
 * Text, so that every driver hands it back alike.
 */
export const externalInsert = (prefix: string, input: string, shape: ExternalInsertShape): SqlText => {
  const jobs = qualified(prefix, "oban_jobs")
  const state = qualified(prefix, "oban_job_state")
  const ctes = [
    `clock AS (SELECT now() AS now)`,
    `input AS (
      SELECT ${inputColumns}
      FROM clock, jsonb_to_recordset($1::jsonb) AS r(${inputRecord})
    )`
  ]
  const results: Array<string> = []
  if (shape.plain) {
    ctes.push(
      `plain AS (
      INSERT INTO ${jobs} AS j
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
      SELECT (CASE WHEN at > now THEN 'scheduled' ELSE 'available' END)::${state},
             queue, worker, args, meta, tags, max_attempts, priority, now, at
      FROM input WHERE unique_key IS NULL
      ORDER BY ord
      RETURNING ${returnedColumns}
    )`
    )
    // No `ord`: ids follow input order, and matching rows to positions by a join would be planned as a
    // nested loop over both (the row counts of the CTEs are unknown to the planner): seconds for 5,000 jobs.
    results.push(`SELECT (to_jsonb(plain) || '{"conflict": false}'::jsonb)::text AS ${resultColumn} FROM plain`)
  }
  if (shape.unique !== undefined) {
    ctes.push(upsertedCte(prefix, shape.unique.replace, " WHERE unique_key IS NOT NULL"))
    // Rows keep `unique_key`, by which the client matches them to requests (see `requestHash`).
    results.push(`SELECT (to_jsonb(upserted) - 'wakes')::text AS ${resultColumn} FROM upserted`)
  }
  return {
    text: `WITH ${ctes.join(",\n    ")}\n    ${results.join("\n    UNION ALL\n    ")}`,
    values: [input]
  }
}

/**
 * Wakes `queues` of `prefix`: one notification per queue on the insert
 * channel, as the library's own wake-ups. Meant to run after the inserting
 * transaction committed, on its own (autocommit), so that it takes no lock
 * inside the caller's transaction and changes none of its settings.
 */
export const wakeStatement = (channel: string, queues: ReadonlyArray<string>): SqlText => ({
  text: `SELECT count(pg_notify($1, payload)) AS sent FROM jsonb_array_elements_text($2::jsonb) AS payload`,
  values: [channel, JSON.stringify(queues.map(wakePayload))]
})
