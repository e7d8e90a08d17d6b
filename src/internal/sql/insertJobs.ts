/**
 * The statements that insert jobs: one for a single job with a parameter
 * per field, and one for a batch with its args as one JSON array and each
 * other field as one parameter or an array of them. Both return only what
 * the database decides (ids, states, times); the caller builds the rest of
 * each job from its request.
 */
import * as PgTypes from "@effect/sql-pg/PgTypes"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import type { EncodedRequest } from "../encodeRequest.ts"
import { textArrayLiteral } from "./arrayLiteral.ts"
import { wakePayload, wakeQueues } from "./fragments.ts"
import { qualified, table } from "./tables.ts"

/** What `insertJob` returns; the rest of the job is what was asked for. */
export interface InsertedRow {
  readonly id: bigint | number | string
  readonly state: "available" | "scheduled"
  readonly inserted_at: Date
  readonly scheduled_at: Date
}

/** A one-dimensional array parameter of `@effect/sql-pg`, sent in its binary format. */
const arrayOf = (values: ReadonlyArray<unknown>, elementOid: number): PgTypes.Parameter =>
  Result.getOrThrow(PgTypes.array(values, elementOid))

/** What `insertJobs` returns: the jobs' ids in input order, and what the database decided for them. */
export interface InsertedBatch {
  /** The insertion time of every job. */
  readonly now: Date
  readonly ids: ReadonlyArray<bigint>
  /** Per job, whether it is `scheduled`, and its time; absent when every job was due now. */
  readonly scheduled: ReadonlyArray<boolean> | undefined
  readonly scheduledAt: ReadonlyArray<Date> | undefined
}

/**
 * One field of a batch. When every job has the same value it is sent once,
 * as a scalar; otherwise as an array with an element per job, which the
 * statement reads as column `name` of `r`.
 */
interface Field {
  readonly name: string
  readonly type: "text" | "int2" | "float8"
  readonly oid: number
  readonly values: ReadonlyArray<string | number | null>
}

const varies: unique symbol = Symbol("varies")

/** The value every element of `values` has, or `varies`. */
const sameValue = <A>(values: ReadonlyArray<A>): A | typeof varies => {
  const first = values[0]!
  for (let i = 1; i < values.length; i++) if (values[i] !== first) return varies
  return first
}

const scalarOf = (value: string | number | null, type: Field["type"]): PgTypes.Parameter =>
  type === "int2"
    ? PgTypes.int2(value as number)
    : type === "float8"
    ? PgTypes.float8(value as number | null)
    : PgTypes.text(value as string | null)

/**
 * A field as an SQL expression: its one value as a parameter, or its column
 * of the unnested arrays (then added to `arrays`), converted to `as` when
 * given. A shared value is converted once, in a scalar subquery (an
 * InitPlan): the driver prepares the statement, and under a generic plan a
 * plain cast of a parameter runs again for every row (the same meta JSON
 * parsed once per job).
 */
const fieldSql = (sql: SqlClient, field: Field, arrays: Array<Field>, as?: "jsonb" | "text[]"): Fragment => {
  const value = sameValue(field.values)
  if (value !== varies) {
    const param = sql`${scalarOf(value, field.type)}::${sql.literal(field.type)}`
    return as === undefined ? param : sql`(SELECT ${param}::${sql.literal(as)})`
  }
  arrays.push(field)
  return sql.literal(as === undefined ? `r.${field.name}` : `r.${field.name}::${as}`)
}

/** Pulls one field out of every job. */
const pluck = <A extends string | number | null>(
  jobs: ReadonlyArray<EncodedRequest>,
  get: (job: EncodedRequest) => A
): ReadonlyArray<A> => {
  const values = new Array<A>(jobs.length)
  for (let i = 0; i < jobs.length; i++) values[i] = get(jobs[i]!)
  return values
}

/** The distinct queues of `jobs`, as wake-up payloads. */
const queuePayloads = (jobs: ReadonlyArray<EncodedRequest>): ReadonlyArray<string> => {
  const queues = new Set<string>()
  for (const job of jobs) queues.add(job.queue)
  return Array.from(queues, wakePayload)
}

/** The args of `jobs` as one JSON array. */
const argsArray = (jobs: ReadonlyArray<EncodedRequest>): string => {
  let text = "["
  for (let i = 0; i < jobs.length; i++) text += i === 0 ? jobs[i]!.args : "," + jobs[i]!.args
  return text + "]"
}

/**
 * Inserts `jobs` in one statement and returns what only the database knows:
 * the ids (in input order), the insertion time, and for a batch where some
 * job has a schedule, which jobs are scheduled and when. The args travel as
 * one JSON array; every other field as one parameter when all jobs share its
 * value (the usual batch), else as an array with an element per job. The
 * arrays are read side by side (`ROWS FROM`, in order, so ids are drawn in
 * input order). Jobs due now are `available`, later ones `scheduled`. With
 * `wake`, the same statement notifies the queues that received available
 * jobs (the notification goes out when the statement's transaction
 * commits); else the caller wakes them after commit (see `waker.ts`).
 */
export const insertJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  jobs: ReadonlyArray<EncodedRequest>,
  wake: boolean
): Effect.Effect<InsertedBatch, SqlError> => {
  const { OID } = PgTypes
  const arrays: Array<Field> = []
  const field = (
    name: string,
    type: Field["type"],
    oid: number,
    values: ReadonlyArray<string | number | null>,
    as?: "jsonb" | "text[]"
  ) => fieldSql(sql, { name, type, oid, values }, arrays, as)
  const queue = field("queue", "text", OID.text, pluck(jobs, (job) => job.queue))
  const worker = field("worker", "text", OID.text, pluck(jobs, (job) => job.worker))
  const maxAttempts = field("max_attempts", "int2", OID.int2, pluck(jobs, (job) => job.maxAttempts))
  const priority = field("priority", "int2", OID.int2, pluck(jobs, (job) => job.priority))
  const meta = field("meta", "text", OID.text, pluck(jobs, (job) => job.meta), "jsonb")
  const tags = field("tags", "text", OID.text, pluck(jobs, (job) => textArrayLiteral(job.tags)), "text[]")
  const scheduleIn = pluck(jobs, (job) => job.scheduleIn)
  const scheduledAt = pluck(jobs, (job) => job.scheduledAt === null ? null : job.scheduledAt.toISOString())
  const hasSchedule = sameValue(scheduleIn) !== null || sameValue(scheduledAt) !== null
  const at = hasSchedule
    ? sql`COALESCE(${field("scheduled_at", "text", OID.text, scheduledAt)}::timestamptz, ${now} + COALESCE(${
      field("schedule_in_ms", "float8", OID.float8, scheduleIn)
    }, 0) * interval '1 millisecond')`
    : now
  const functions = [
    sql`jsonb_array_elements(${argsArray(jobs)}::jsonb)`,
    ...arrays.map((array) => sql`unnest(${arrayOf(array.values, array.oid)}::${sql.literal(array.type)}[])`)
  ]
  const names = ["args", ...arrays.map((array) => array.name), "ord"].join(", ")
  const wakeUp = !wake
    ? sql.literal("")
    : hasSchedule
    ? sql`, notified AS (${wakeQueues(sql, prefix, "inserted WHERE state = 'available'")})`
    : sql`, notified AS (
        SELECT count(pg_notify(${channel(prefix, "insert")}, payload)) AS sent
        FROM unnest(${arrayOf(queuePayloads(jobs), OID.text)}::text[]) AS payload
      )`
  return sql<{
    readonly now: Date
    readonly ids: ReadonlyArray<bigint>
    readonly scheduled: ReadonlyArray<boolean> | null
    readonly scheduled_at: ReadonlyArray<Date> | null
  }>`
    WITH inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
      SELECT ${
    hasSchedule
      ? sql`CASE WHEN ${at} > ${now} THEN 'scheduled' ELSE 'available' END::${table(sql, prefix, "oban_job_state")}`
      : sql.literal("'available'")
  },
             ${queue}, ${worker}, r.args, ${meta}, ${tags}, ${maxAttempts}, ${priority}, ${now}, ${at}
      FROM ROWS FROM (${sql.csv(functions)}) WITH ORDINALITY AS r(${sql.literal(names)})
      ORDER BY r.ord
      RETURNING ${sql.literal(hasSchedule ? "id, state, queue, scheduled_at" : "id")}
    )${wakeUp}
    SELECT ${now} AS now, array_agg(id ORDER BY id) AS ids, ${
    sql.literal(
      hasSchedule
        ? "array_agg(state = 'scheduled' ORDER BY id) AS scheduled, array_agg(scheduled_at ORDER BY id) AS scheduled_at"
        : "NULL::bool[] AS scheduled, NULL::timestamptz[] AS scheduled_at"
    )
  }
    FROM inserted${sql.literal(wake ? " CROSS JOIN notified" : "")}
  `.pipe(Effect.map(([row]) => ({
    now: row!.now,
    ids: row!.ids,
    scheduled: row!.scheduled ?? undefined,
    scheduledAt: row!.scheduled_at ?? undefined
  })))
}

/**
 * `fragment` as SQL text for a statement built by hand, its parameters
 * appended to `params` and numbered after those already there. "Now" is a
 * literal (`now()`) or one parameter (`ObanClock`'s effect mode), nothing else.
 */
const inlineFragment = (fragment: Fragment, params: Array<unknown>): string => {
  let text = ""
  for (const segment of fragment.segments) {
    if (segment._tag === "Literal" && segment.params === undefined) text += segment.value
    else if (segment._tag === "Parameter") text += `$${params.push(segment.value)}`
    else throw new Error(`insertJob: unexpected ${segment._tag} segment in "now"`)
  }
  return text
}

/** When a job is due, as SQL text: now, now plus its delay, or its time (parameters appended to `params`). */
const dueAt = (now: string, job: EncodedRequest, params: Array<unknown>): string =>
  job.scheduledAt !== null
    ? `$${params.push(PgTypes.text(job.scheduledAt.toISOString()))}::timestamptz`
    : job.scheduleIn !== null
    ? `${now} + $${params.push(PgTypes.float8(job.scheduleIn))} * interval '1 millisecond'`
    : now

/** The statement's text around its values, which depend only on the prefix and the clock's "now" and due time. */
const insertJobText = (prefix: string, now: string, at: string, state: string, woken: string): string =>
  `INSERT INTO ${qualified(prefix, "oban_jobs")}
      (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
    VALUES (${state}::${qualified(prefix, "oban_job_state")}, $1, $2, $3::jsonb, $4::jsonb, $5::text[], $6, $7, ${now}, ${at})
    RETURNING id, state, inserted_at, scheduled_at${woken}`

const wokenText = (channel: number, payload: number): string =>
  `, CASE WHEN state = 'available' THEN pg_notify($${channel}, $${payload}) END AS woken`

/**
 * The texts of a job due now on the database clock (its "now" a literal),
 * with and without its wake-up, per prefix: the same string object each time, so neither it nor
 * its hash (the driver looks its prepared statement up by it) is computed
 * again on every insert.
 */
const dueNowTexts = new Map<string, { readonly now: string; readonly quiet: string; readonly waking: string }>()

const dueNowText = (prefix: string, now: string, wake: boolean): string => {
  let texts = dueNowTexts.get(prefix)
  if (texts === undefined || texts.now !== now) {
    texts = {
      now,
      quiet: insertJobText(prefix, now, now, "'available'", ""),
      waking: insertJobText(prefix, now, now, "'available'", wokenText(8, 9))
    }
    if (dueNowTexts.size >= 1000) dueNowTexts.clear()
    dueNowTexts.set(prefix, texts)
  }
  return wake ? texts.waking : texts.quiet
}


/**
 * Inserts one job with a parameter per field: for a single job this is
 * cheaper, for the driver and the server, than arrays of one element, and a
 * job due now needs no comparison of times. With `wake`, the same statement
 * notifies the job's queue when it is available. The text is put together
 * directly rather than from fragments (and kept for a job due now on the
 * database clock, the usual case): this statement runs once per
 * `Oban.insert`, and the fragments cost more to build and compile than the
 * statement costs the server. Returns the statement's rows: the one job's.
 */
export const insertJob = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  job: EncodedRequest,
  wake: boolean
): Effect.Effect<ReadonlyArray<InsertedRow>, SqlError> => {
  const params: Array<unknown> = [
    PgTypes.text(job.queue),
    PgTypes.text(job.worker),
    PgTypes.text(job.args),
    PgTypes.text(job.meta),
    PgTypes.text(textArrayLiteral(job.tags)),
    PgTypes.int2(job.maxAttempts),
    PgTypes.int2(job.priority)
  ]
  const nowText = inlineFragment(now, params)
  let text: string
  if (params.length === 7 && job.scheduledAt === null && job.scheduleIn === null) {
    text = dueNowText(prefix, nowText, wake)
    if (wake) params.push(channel(prefix, "insert"), wakePayload(job.queue))
  } else {
    const at = dueAt(nowText, job, params)
    const state = at === nowText ? "'available'" : `CASE WHEN ${at} > ${nowText} THEN 'scheduled' ELSE 'available' END`
    const woken = wake ? wokenText(params.push(channel(prefix, "insert")), params.push(wakePayload(job.queue))) : ""
    text = insertJobText(prefix, nowText, at, state, woken)
  }
  return sql.unsafe<InsertedRow>(text, params)
}
