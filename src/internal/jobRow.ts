/**
 * The raw shape of an `oban_jobs` row as `@effect/sql-pg` returns it, and its
 * mapping to the public `Job`. The SQL is ours, so the mapping is a plain
 * function on the hot path rather than a schema decode.
 */
import { ErrorKind, type Job, type JobErrorEntry, type JobState } from "../Job.ts"
import type { Inserted } from "../Oban.ts"
import type { EncodedRequest } from "./encodeRequest.ts"
import { parseJson, parseJsonObject } from "./jsonParse.ts"
import { latestErrors } from "./sql/errorEntries.ts"
import type { InsertedBatch } from "./sql/insertJobs.ts"

export interface JobRow {
  readonly id: bigint | number | string
  readonly state: string
  readonly queue: string
  readonly worker: string
  /** JSON text (`args::text`), parsed by `parseJson`: see `jsonParse.ts` for why not by the driver. */
  readonly args: string
  /** JSON text, or null where a query returns an empty meta as null. */
  readonly meta: string | null
  readonly tags: ReadonlyArray<string> | null
  /** As stored: a JSON array whose entries are `JobErrorEntry` when the library wrote them (see `errorsOf`). */
  readonly errors: ReadonlyArray<unknown> | null
  readonly attempt: number
  readonly max_attempts: number
  readonly priority: number
  readonly inserted_at: Date
  readonly scheduled_at: Date
  readonly attempted_at: Date | null
  readonly completed_at: Date | null
  readonly discarded_at: Date | null
  readonly cancelled_at: Date | null
  readonly attempted_by: ReadonlyArray<string> | null
  readonly cancel_requested_at: Date | null
}

/** The columns of a job that `Job` shows, in table order (the ones added later last). */
export type JobColumn = keyof JobRow

const jobColumnNames: ReadonlyArray<JobColumn> = [
  "id", "state", "queue", "worker", "args", "meta", "tags", "errors", "attempt", "max_attempts", "priority", "inserted_at",
  "scheduled_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at", "attempted_by", "cancel_requested_at"
]

/**
 * An array column read as a plain list: elements from index 1, in one
 * dimension, without NULLs. The driver refuses to decode an array whose first
 * index is not 1 (plain SQL makes one by assigning past the end of an empty
 * one: `tags[3] = 'x'`) or that has more than one dimension (`'{{a,b}}'`),
 * and such a row failed every statement that read it, a fetch of its queue
 * among them. Only such rows (and those holding a NULL) are rebuilt; the
 * test of the others is three calls on the array's header and elements.
 */
export const plainArray = (column: string): string =>
  `CASE WHEN array_ndims(${column}) > 1 OR array_lower(${column}, 1) <> 1 OR array_position(${column}, NULL) IS NOT NULL ` +
  `THEN ARRAY(SELECT e FROM unnest(${column}) AS e WHERE e IS NOT NULL) ELSE ${column} END`

/** How a column is read, for a row aliased `alias` (`""` or `"j."`): args and meta as JSON text, errors the latest, arrays plain. */
const columnSql = (column: JobColumn, alias: string): string =>
  column === "args" || column === "meta"
    ? `${alias}${column}::text AS ${column}`
    : column === "errors"
    ? `${latestErrors(`${alias}errors`)} AS errors`
    : column === "tags" || column === "attempted_by"
    ? `${plainArray(`${alias}${column}`)} AS ${column}`
    : `${alias}${column}`

/**
 * The columns of a job for `SELECT` and `RETURNING` lists, of a row aliased `alias`: args and meta as
 * JSON text, which `parseJson` reads exactly, and the latest `errors` entries (see `errorEntries.ts`).
 * `omit` leaves columns out; `replace` reads some another way (SQL ending in `AS <column>`).
 */
export const jobColumnsOf = (
  alias: "" | "j.",
  options: {
    readonly omit?: ReadonlyArray<JobColumn>
    readonly replace?: Partial<Record<JobColumn, string>>
  } = {}
): string =>
  jobColumnNames
    .filter((column) => options.omit === undefined || !options.omit.includes(column))
    .map((column) => options.replace?.[column] ?? columnSql(column, alias))
    .join(", ")

/** `jobColumnsOf` for an unaliased row. */
export const jobColumns = jobColumnsOf("")

/** The job of a row; `attemptOffset` is added to its attempt (a job claimed ahead runs as its next one). */
export const jobFromRow = (row: JobRow, attemptOffset = 0): Job =>
  jobOf(row, row.state as JobState, row.queue, row.attempted_by, attemptOffset)

/**
 * The job of a row claimed by a fetch, which returns neither the columns the claim itself set
 * (state, attempted_by) nor the queue it claimed from: `jobFromRow` without building the row first.
 */
export const claimedJob = (
  row: Omit<JobRow, "state" | "queue" | "attempted_by">,
  queue: string,
  attemptedBy: ReadonlyArray<string>,
  attemptOffset: number
): Job => jobOf(row, "executing", queue, attemptedBy, attemptOffset)

const jobOf = (
  row: Omit<JobRow, "state" | "queue" | "attempted_by">,
  state: JobState,
  queue: string,
  attemptedBy: Job["attemptedBy"],
  attemptOffset: number
): Job => ({
  id: Number(row.id),
  state,
  queue,
  worker: row.worker,
  args: parseJson(row.args),
  meta: row.meta === null ? {} : parseJsonObject(row.meta),
  tags: row.tags ?? [],
  errors: errorsOf(row.errors),
  attempt: Number(row.attempt) + attemptOffset,
  maxAttempts: Number(row.max_attempts),
  priority: Number(row.priority),
  insertedAt: row.inserted_at,
  scheduledAt: row.scheduled_at,
  attemptedAt: row.attempted_at,
  completedAt: row.completed_at,
  discardedAt: row.discarded_at,
  cancelledAt: row.cancelled_at,
  attemptedBy,
  cancelRequestedAt: row.cancel_requested_at
})

const noErrors: ReadonlyArray<JobErrorEntry> = Object.freeze([])

/**
 * A job's errors with each `at` in the form of `Date.toISOString` (UTC, `Z`), as every other time of a
 * job reads. The database writes them in its own JSON form (`2026-12-05T20:14:15.123456+00:00`, in the
 * session's time zone); an `at` that is no time is left as it is. The column is only known to hold a
 * JSON array: an entry of another shape (written by plain SQL, say) is read as well-formed, its JSON
 * as the message, rather than break every read of the job (and every fetch that claims it).
 */
const errorsOf = (errors: ReadonlyArray<unknown> | null): ReadonlyArray<JobErrorEntry> => {
  if (errors === null || errors.length === 0) return noErrors
  return errors.map((entry) => {
    if (!isEntry(entry)) return malformedEntry(entry)
    const time = new Date(entry.at)
    return Number.isNaN(time.getTime()) ? entry : { ...entry, at: time.toISOString() }
  })
}

const errorKinds: ReadonlySet<unknown> = new Set(ErrorKind.literals)

/** Whether a stored entry has the fields and types of `JobErrorEntry` (the optional ones too, when there). */
const isEntry = (entry: unknown): entry is JobErrorEntry => {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return false
  const fields = entry as Record<string, unknown>
  return Number.isSafeInteger(fields["attempt"]) && typeof fields["at"] === "string" && errorKinds.has(fields["kind"]) &&
    typeof fields["message"] === "string" && (fields["cause"] === undefined || typeof fields["cause"] === "string") &&
    (fields["claimedAhead"] === undefined || typeof fields["claimedAhead"] === "boolean")
}

/** An entry of another shape, as a well-formed one: what fields it has that fit, and its JSON as the message. */
const malformedEntry = (entry: unknown): JobErrorEntry => {
  const fields = typeof entry === "object" && entry !== null && !Array.isArray(entry) ? entry as Record<string, unknown> : {}
  const at = typeof fields["at"] === "string" ? new Date(fields["at"]) : undefined
  return {
    attempt: Number.isSafeInteger(fields["attempt"]) ? fields["attempt"] as number : 0,
    at: at === undefined || Number.isNaN(at.getTime()) ? "" : at.toISOString(),
    kind: errorKinds.has(fields["kind"]) ? fields["kind"] as ErrorKind : "failure",
    message: `malformed errors entry: ${(JSON.stringify(entry) ?? String(entry)).slice(0, 1_000)}`
  }
}
const noMeta: Readonly<Record<string, unknown>> = Object.freeze({})

/**
 * A job just inserted (not a conflict), from its request and what the database decided. Its
 * args are the request's own (typed by its worker; the row holds their JSON encoding); meta is
 * parsed from the JSON text that was stored. Empty errors, tags and meta are shared frozen
 * values, as the job's readonly type allows.
 */
export const insertedJob = (
  request: EncodedRequest,
  id: bigint | number | string,
  state: JobState,
  insertedAt: Date,
  scheduledAt: Date,
  /** The stored meta, when the statement added to the request's (a workflow step's membership). */
  storedMeta?: Readonly<Record<string, unknown>>
): Inserted => ({
  id: Number(id),
  state,
  queue: request.queue,
  worker: request.worker,
  args: request.value,
  meta: storedMeta ?? request.metaObject ?? (request.meta === "{}" ? noMeta : parseJsonObject(request.meta)),
  tags: request.tags,
  errors: noErrors,
  attempt: 0,
  maxAttempts: request.maxAttempts,
  priority: request.priority,
  insertedAt,
  scheduledAt,
  attemptedAt: null,
  completedAt: null,
  discardedAt: null,
  cancelledAt: null,
  attemptedBy: null,
  cancelRequestedAt: null,
  conflict: false
})

/** The jobs of a batch insert, in the order of `requests`. */
export const insertedJobs = (
  requests: ReadonlyArray<EncodedRequest>,
  batch: InsertedBatch
): ReadonlyArray<Inserted> => {
  const time = batch.now.getTime()
  const jobs: Array<Inserted> = new Array(requests.length)
  for (let i = 0; i < requests.length; i++) {
    const state = batch.scheduled?.[i] === true ? "scheduled" : "available"
    jobs[i] = insertedJob(requests[i]!, batch.ids[i]!, state, new Date(time), batch.scheduledAt?.[i] ?? new Date(time))
  }
  return jobs
}
