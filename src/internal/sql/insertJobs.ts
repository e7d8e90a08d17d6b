/**
 * The statements that insert jobs: one for a single job with a parameter
 * per field, and one for a batch with an array parameter per field, which
 * `unnest` zips back into rows. Both return only what the database decides
 * (id, state, times); the caller builds the rest of each job from its
 * request.
 */
import { PgTypes } from "@effect/sql-pg"
import { Effect, Result } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import type { EncodedRequest } from "../encodeRequest.ts"
import { wakeQueues } from "./fragments.ts"
import { table } from "./tables.ts"

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

/** A `text[]` literal of `tags` (NULL for none): each element quoted, so any text reads back as it was. */
const tagsLiteral = (tags: ReadonlyArray<string>): string | null =>
  tags.length === 0 ? null : `{${tags.map((tag) => `"${tag.replace(/["\\]/g, "\\$&")}"`).join(",")}}`

/** What `insertJobs` returns: the jobs' ids in input order, and what the database decided for them. */
export interface InsertedBatch {
  /** The insertion time of every job. */
  readonly now: Date
  readonly ids: ReadonlyArray<bigint>
  /** Per job, whether it is `scheduled`, and its time; absent when every job was due now. */
  readonly scheduled: ReadonlyArray<boolean> | undefined
  readonly scheduledAt: ReadonlyArray<Date> | undefined
}

/** Which optional fields any job of a batch has: the statement leaves out the others. */
interface Shape {
  readonly meta: boolean
  readonly tags: boolean
  readonly schedule: boolean
}

const shapeOf = (jobs: ReadonlyArray<EncodedRequest>): Shape => {
  let meta = false
  let tags = false
  let schedule = false
  for (const job of jobs) {
    meta ||= job.meta !== "{}"
    tags ||= job.tags.length > 0
    schedule ||= job.scheduleIn !== null || job.scheduledAt !== null
  }
  return { meta, tags, schedule }
}

/** The distinct queues of `jobs`, as wake-up payloads. */
const queuePayloads = (jobs: ReadonlyArray<EncodedRequest>): ReadonlyArray<string> => {
  const queues = new Set<string>()
  for (const job of jobs) queues.add(job.queue)
  return Array.from(queues, (queue) => JSON.stringify({ queue }))
}

/**
 * Inserts `jobs` in one statement, each field sent as one array parameter
 * (`unnest` zips them back into rows, in order, so ids are drawn in input
 * order), and returns what only the database knows: the ids, the insertion
 * time, and for a batch with scheduled jobs which ones are scheduled and
 * when. Fields no job of the batch has (meta, tags, a schedule) are not
 * sent. Jobs due now are `available`, later ones `scheduled`. With `wake`,
 * the same statement notifies the queues that received available jobs (the
 * notification goes out when the statement's transaction commits); else the
 * caller wakes them after commit (see `waker.ts`).
 */
export const insertJobs = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  jobs: ReadonlyArray<EncodedRequest>,
  wake: boolean
): Effect.Effect<InsertedBatch, SqlError> => {
  const shape = shapeOf(jobs)
  const n = jobs.length
  const args = new Array<string>(n)
  const queue = new Array<string>(n)
  const worker = new Array<string>(n)
  const maxAttempts = new Array<number>(n)
  const priority = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    const job = jobs[i]!
    args[i] = job.args
    queue[i] = job.queue
    worker[i] = job.worker
    maxAttempts[i] = job.maxAttempts
    priority[i] = job.priority
  }
  const { OID } = PgTypes
  const columns = [
    sql`${arrayOf(args, OID.text)}::text[]`,
    sql`${arrayOf(queue, OID.text)}::text[]`,
    sql`${arrayOf(worker, OID.text)}::text[]`,
    sql`${arrayOf(maxAttempts, OID.int2)}::int2[]`,
    sql`${arrayOf(priority, OID.int2)}::int2[]`
  ]
  const names = ["args", "queue", "worker", "max_attempts", "priority"]
  if (shape.meta) {
    columns.push(sql`${arrayOf(jobs.map((job) => job.meta), OID.text)}::text[]`)
    names.push("meta")
  }
  if (shape.tags) {
    columns.push(sql`${arrayOf(jobs.map((job) => tagsLiteral(job.tags)), OID.text)}::text[]`)
    names.push("tags")
  }
  if (shape.schedule) {
    columns.push(sql`${arrayOf(jobs.map((job) => job.scheduleIn), OID.float8)}::float8[]`)
    columns.push(sql`${arrayOf(jobs.map((job) => job.scheduledAt?.toISOString() ?? null), OID.text)}::timestamptz[]`)
    names.push("schedule_in_ms", "scheduled_at")
  }
  const at = shape.schedule
    ? sql.literal("COALESCE(r.scheduled_at, clock.now + COALESCE(r.schedule_in_ms, 0) * interval '1 millisecond')")
    : sql.literal("clock.now")
  const wakeUp = !wake
    ? sql.literal("")
    : shape.schedule
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
    WITH clock AS (SELECT ${now} AS now),
    inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
      SELECT ${
    shape.schedule
      ? sql`CASE WHEN ${at} > clock.now THEN 'scheduled' ELSE 'available' END::${table(sql, prefix, "oban_job_state")}`
      : sql.literal("'available'")
  },
             r.queue, r.worker, r.args::jsonb, ${sql.literal(shape.meta ? "r.meta::jsonb" : "'{}'")},
             ${sql.literal(shape.tags ? "COALESCE(r.tags::text[], '{}')" : "'{}'")},
             r.max_attempts, r.priority, clock.now, ${at}
      FROM clock, unnest(${sql.csv(columns)}) WITH ORDINALITY AS r(${sql.literal(names.join(", "))}, ord)
      ORDER BY r.ord
      RETURNING id, state, queue, scheduled_at
    )${wakeUp}
    SELECT (SELECT now FROM clock) AS now, array_agg(id ORDER BY id) AS ids, ${
    sql.literal(
      shape.schedule
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

/** When a job is due, as SQL: now, now plus its delay, or its time. */
const dueAt = (sql: SqlClient, now: Fragment, job: EncodedRequest): Fragment =>
  job.scheduledAt !== null
    ? sql`${PgTypes.text(job.scheduledAt.toISOString())}::timestamptz`
    : job.scheduleIn !== null
    ? sql`${now} + ${PgTypes.float8(job.scheduleIn)} * interval '1 millisecond'`
    : now

/**
 * Inserts one job with a parameter per field: for a single job this is
 * cheaper, for the driver and the server, than arrays of one element, and a
 * job due now needs no comparison of times. With `wake`, the same statement
 * notifies the job's queue when it is available.
 */
export const insertJob = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  job: EncodedRequest,
  wake: boolean
): Effect.Effect<InsertedRow, SqlError> => {
  const at = dueAt(sql, now, job)
  const state = at === now ? sql.literal("'available'") : sql`CASE WHEN ${at} > ${now} THEN 'scheduled' ELSE 'available' END`
  return sql<InsertedRow>`
    INSERT INTO ${table(sql, prefix, "oban_jobs")}
      (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
    VALUES (
      ${state}::${table(sql, prefix, "oban_job_state")}, ${PgTypes.text(job.queue)}, ${PgTypes.text(job.worker)},
      ${PgTypes.text(job.args)}::jsonb, ${PgTypes.text(job.meta)}::jsonb, ${PgTypes.text(tagsLiteral(job.tags) ?? "{}")}::text[],
      ${PgTypes.int2(job.maxAttempts)}, ${PgTypes.int2(job.priority)}, ${now}, ${at}
    )
    RETURNING id, state, inserted_at, scheduled_at${
    wake
      ? sql`, CASE WHEN state = 'available' THEN pg_notify(${channel(prefix, "insert")}, ${
        JSON.stringify({ queue: job.queue })
      }) END AS woken`
      : sql.literal("")
  }
  `.pipe(Effect.map((rows) => rows[0]!))
}
