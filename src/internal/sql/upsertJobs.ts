/**
 * The statement that inserts unique jobs: `INSERT ... ON CONFLICT DO UPDATE`
 * on the unique index, so that a conflict returns the existing row, locked
 * and current, even when the inserter that wrote it committed after this
 * statement's snapshot (`DO NOTHING` would return nothing, and a `SELECT`
 * after it could miss the row). Without fields to replace, the update
 * assigns the key to itself.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { ReplaceField } from "../../Worker.ts"
import { type EncodedRequest, rowJson } from "../encodeRequest.ts"
import { jobColumnsOf, type JobRow } from "../jobRow.ts"
import { uniqueKeyConflictText, wakeQueues } from "./fragments.ts"
import { qualified } from "./tables.ts"

/** A row of `upsertJobs`: the job (new or existing), its unique key, and how it went. */
export interface UpsertedRow extends JobRow {
  /** The row's unique key: its request's hash, then `:<bucket>` with a period (see `requestHash`). */
  readonly unique_key: string
  /** Whether the row existed (the insert conflicted). */
  readonly conflict: boolean
  /** Whether the row is available and new, or made due by a replaced `scheduledAt`: its queue needs a wake-up. */
  readonly wakes: boolean
}

/** The states in which a conflicting insert may replace fields: never executing, never finished. */
export const replaceableStates = ["available", "scheduled", "retryable", "suspended"] as const

const safe = `j.state IN (${replaceableStates.map((state) => `'${state}'`).join(", ")})`

/** Each replaced field as `column = <new value while safe, else the old>`. */
const assignments: Readonly<Record<ReplaceField, ReadonlyArray<string>>> = {
  args: [`args = CASE WHEN ${safe} THEN EXCLUDED.args ELSE j.args END`],
  meta: [`meta = CASE WHEN ${safe} THEN EXCLUDED.meta ELSE j.meta END`],
  tags: [`tags = CASE WHEN ${safe} THEN EXCLUDED.tags ELSE j.tags END`],
  priority: [`priority = CASE WHEN ${safe} THEN EXCLUDED.priority ELSE j.priority END`],
  // Never below the attempts already used (the table's check constraint).
  maxAttempts: [
    `max_attempts = CASE WHEN ${safe} THEN GREATEST(EXCLUDED.max_attempts, j.attempt) ELSE j.max_attempts END`
  ],
  // A waiting job is available or scheduled by its new time; retryable and suspended jobs keep their state.
  scheduledAt: [
    `scheduled_at = CASE WHEN ${safe} THEN EXCLUDED.scheduled_at ELSE j.scheduled_at END`,
    `state = CASE WHEN j.state IN ('available', 'scheduled') THEN EXCLUDED.state ELSE j.state END`
  ]
}

/** The job's columns as the RETURNING list of the upsert (the table is aliased `j`). */
export const returnedColumns = jobColumnsOf("j.")

/** The SET list of the conflict update for `replace`. */
export const setList = (replace: ReadonlyArray<ReplaceField>): string =>
  replace.length === 0 ? "unique_key = EXCLUDED.unique_key" : replace.flatMap((field) => assignments[field]).join(",\n")

/**
 * One job of the statement's input as a JSON object: its columns, its
 * position and, when unique, its key parts (else `unique_key` is null).
 */
export const inputRow = (job: EncodedRequest, ord: number): string => {
  const unique = job.unique
  return `${rowJson(job).slice(0, -1)},"ord":${ord},` +
    `"schedule_in_ms":${job.scheduleIn ?? "null"},` +
    `"scheduled_at":${job.scheduledAt === null ? "null" : JSON.stringify(job.scheduledAt.toISOString())},` +
    (unique === undefined
      ? `"unique_key":null,"period_ms":null,"unique_states":null}`
      : `"unique_key":"${unique.hash}","period_ms":${unique.periodMs ?? "null"},"unique_states":${unique.states}}`)
}

/** The statement's input: one JSON object per job, with its unique parts. */
const inputJson = (jobs: ReadonlyArray<EncodedRequest>): string => {
  let text = "["
  for (let i = 0; i < jobs.length; i++) text += (i === 0 ? "" : ",") + inputRow(jobs[i]!, i)
  return text + "]"
}

/**
 * The select list of the input CTE over `r`, the rows of `inputRecord`, and
 * `clock`: each job with its due time and its full unique key. The key
 * bucket of a period is `floor(epoch milliseconds of now / period)`.
 */
export const inputColumns = `r.ord, r.queue, r.worker, r.args, r.meta, r.tags, r.max_attempts, r.priority,
        r.unique_states, clock.now,
        COALESCE(r.scheduled_at, clock.now + COALESCE(r.schedule_in_ms, 0) * interval '1 millisecond') AS at,
        CASE WHEN r.period_ms IS NULL THEN r.unique_key
          ELSE r.unique_key || ':' || floor(extract(epoch FROM clock.now) * 1000 / r.period_ms)::bigint
        END AS unique_key`

/** The record type of an input row, for `jsonb_to_recordset(...) AS r(<inputRecord>)`. */
export const inputRecord = `ord int, queue text, worker text, args jsonb, meta jsonb, tags text[], max_attempts smallint,
        priority smallint, schedule_in_ms float8, scheduled_at timestamptz, unique_key text, period_ms numeric,
        unique_states smallint`

/** Whether a returned row conflicted (`conflict`), and whether its queue needs a wake-up (`wakes`). */
export const upsertOutcome = (replacesTime: boolean): string =>
  `j.xmax::text <> '0' AS conflict,
        j.state = 'available' AND (j.xmax::text = '0' OR ${replacesTime ? "true" : "false"}) AS wakes`

/**
 * The request hash of a unique key (the key without its period bucket):
 * unique requests are merged by hash before a statement, so within one
 * statement it names one request. Rows are matched to requests by it on the
 * client, not by a join in the statement: a join of two CTEs, whose row
 * counts the planner cannot know, is planned as a nested loop over both.
 */
export const requestHash = (uniqueKey: string): string => {
  const colon = uniqueKey.indexOf(":")
  return colon === -1 ? uniqueKey : uniqueKey.slice(0, colon)
}

/**
 * The CTE `upserted`, as SQL text: inserts the unique jobs of the CTE
 * `input` (those `where` selects) in key order, and on a conflict with the
 * unique index updates `replace` on the existing row. Returns the job's
 * columns, its unique key, and `conflict` and `wakes` (see `upsertOutcome`).
 */
export const upsertedCte = (prefix: string, replace: ReadonlyArray<ReplaceField>, where: string): string =>
  `upserted AS (
      INSERT INTO ${qualified(prefix, "oban_jobs")} AS j
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at, unique_key,
         unique_states)
      SELECT (CASE WHEN at > now THEN 'scheduled' ELSE 'available' END)::${qualified(prefix, "oban_job_state")},
             queue, worker, args, meta, tags, max_attempts, priority, now, at, unique_key, unique_states
      FROM input${where}
      ORDER BY unique_key COLLATE "C"
      ON CONFLICT ${uniqueKeyConflictText(prefix)}
      DO UPDATE SET ${setList(replace)}
      RETURNING ${returnedColumns}, j.unique_key, ${upsertOutcome(replace.includes("scheduledAt"))}
    )`

/**
 * Inserts unique jobs, at most one per key (the caller merges duplicates),
 * replacing `replace` on the rows they conflict with. A job's `unique_key`
 * is its hash, plus `:<bucket>` with a period, where the bucket is
 * `floor(epoch milliseconds of now / period)`: now is the statement's clock,
 * the same that stamps `inserted_at`. Rows are written in key order (the
 * "C" collation, i.e. the order of the hashes), so concurrent calls with
 * overlapping keys lock them in the same order and do not deadlock; a caller
 * with several statements runs them in that order too (`groupUnique`). Returns one row per job, in no
 * particular order (match them by `requestHash`). With `wake`, the
 * statement notifies the queues of the rows that `wakes`.
 */
export const upsertJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  jobs: ReadonlyArray<EncodedRequest>,
  replace: ReadonlyArray<ReplaceField>,
  wake: boolean
): Effect.Effect<ReadonlyArray<UpsertedRow>, SqlError> =>
  sql<UpsertedRow>`
    WITH clock AS (SELECT ${now} AS now),
    input AS (
      SELECT ${sql.literal(inputColumns)}
      FROM clock, jsonb_to_recordset(${inputJson(jobs)}::jsonb) AS r(${sql.literal(inputRecord)})
    ),
    ${sql.literal(upsertedCte(prefix, replace, ""))}${
    wake ? sql`, notified AS (${wakeQueues(sql, prefix, "upserted WHERE wakes")})` : sql.literal("")
  }
    SELECT upserted.* FROM upserted${sql.literal(wake ? " CROSS JOIN notified" : "")}
  `
