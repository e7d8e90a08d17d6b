/**
 * The raw shape of an `oban_jobs` row as `@effect/sql-pg` returns it, and its
 * mapping to the public `Job`. The SQL is ours, so the mapping is a plain
 * function on the hot path rather than a schema decode.
 */
import type { Job, JobErrorEntry, JobState } from "../Job.ts"
import type { Inserted } from "../Oban.ts"
import type { EncodedRequest } from "./encodeRequest.ts"
import { parseJson, parseJsonObject } from "./jsonParse.ts"
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
  readonly errors: ReadonlyArray<JobErrorEntry> | null
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

/**
 * The columns of a job that `Job` shows (in table order, the ones added later last), for `SELECT`
 * and `RETURNING` lists; args and meta as JSON text, which `parseJson` reads exactly.
 */
export const jobColumns =
  "id, state, queue, worker, args::text AS args, meta::text AS meta, tags, errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, cancel_requested_at"

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
 * session's time zone); an `at` that is no time is left as it is.
 */
const errorsOf = (errors: ReadonlyArray<JobErrorEntry> | null): ReadonlyArray<JobErrorEntry> => {
  if (errors === null || errors.length === 0) return noErrors
  return errors.map((entry) => {
    const time = typeof entry.at === "string" ? new Date(entry.at) : undefined
    return time === undefined || Number.isNaN(time.getTime()) ? entry : { ...entry, at: time.toISOString() }
  })
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
