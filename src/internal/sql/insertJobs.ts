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

/** What `insertJobs` returns per job; the rest of the job is what was asked for. */
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

/**
 * Inserts `jobs` in one statement, each field sent as one array parameter
 * (`unnest` zips them back into rows), and returns what only the database
 * knows of each job, in input order: id, state, insertion and scheduled
 * times. Jobs due now are `available`, later ones `scheduled`. With `wake`,
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
): Effect.Effect<ReadonlyArray<InsertedRow>, SqlError> => {
  const n = jobs.length
  const args = new Array<string>(n)
  const meta = new Array<string | null>(n)
  const queue = new Array<string>(n)
  const worker = new Array<string>(n)
  const tags = new Array<string | null>(n)
  const maxAttempts = new Array<number>(n)
  const priority = new Array<number>(n)
  const scheduleIn = new Array<number | null>(n)
  // As text: the driver's binary timestamps lose a millisecond near the year 9999.
  const scheduledAt = new Array<string | null>(n)
  for (let i = 0; i < n; i++) {
    const job = jobs[i]!
    args[i] = job.args
    meta[i] = job.meta === "{}" ? null : job.meta
    queue[i] = job.queue
    worker[i] = job.worker
    tags[i] = tagsLiteral(job.tags)
    maxAttempts[i] = job.maxAttempts
    priority[i] = job.priority
    scheduleIn[i] = job.scheduleIn
    scheduledAt[i] = job.scheduledAt === null ? null : job.scheduledAt.toISOString()
  }
  const { OID } = PgTypes
  return sql<InsertedRow>`
    WITH clock AS (SELECT ${now} AS now),
    input AS (
      SELECT r.ord, r.queue, r.worker, r.args::jsonb AS args, COALESCE(r.meta::jsonb, '{}') AS meta,
             COALESCE(r.tags::text[], '{}') AS tags, r.max_attempts, r.priority,
             COALESCE(r.scheduled_at, clock.now + COALESCE(r.schedule_in_ms, 0) * interval '1 millisecond') AS at,
             clock.now AS now
      FROM clock, unnest(
        ${arrayOf(args, OID.text)}::text[], ${arrayOf(meta, OID.text)}::text[],
        ${arrayOf(queue, OID.text)}::text[], ${arrayOf(worker, OID.text)}::text[], ${arrayOf(tags, OID.text)}::text[],
        ${arrayOf(maxAttempts, OID.int2)}::int2[], ${arrayOf(priority, OID.int2)}::int2[],
        ${arrayOf(scheduleIn, OID.float8)}::float8[], ${arrayOf(scheduledAt, OID.text)}::timestamptz[]
      ) WITH ORDINALITY AS r(args, meta, queue, worker, tags, max_attempts, priority, schedule_in_ms, scheduled_at, ord)
    ),
    inserted AS (
      INSERT INTO ${table(sql, prefix, "oban_jobs")}
        (state, queue, worker, args, meta, tags, max_attempts, priority, inserted_at, scheduled_at)
      SELECT CASE WHEN at > now THEN 'scheduled' ELSE 'available' END::${table(sql, prefix, "oban_job_state")},
             queue, worker, args, meta, tags, max_attempts, priority, now, at
      FROM input
      ORDER BY ord
      RETURNING id, state, queue, inserted_at, scheduled_at
    )${wake ? sql`, notified AS (${wakeQueues(sql, prefix, "inserted WHERE state = 'available'")})` : sql.literal("")}
    SELECT inserted.id, inserted.state, inserted.inserted_at, inserted.scheduled_at
    FROM inserted${sql.literal(wake ? " CROSS JOIN notified" : "")}
  `.pipe(Effect.map(inIdOrder))
}

/**
 * The rows in id order, which is input order: ids are drawn in the order of
 * `ord`. RETURNING gives them in that order already in practice, so this
 * only checks, and sorts if it must.
 */
const inIdOrder = (rows: ReadonlyArray<InsertedRow>): ReadonlyArray<InsertedRow> => {
  for (let i = 1; i < rows.length; i++) {
    if (BigInt(rows[i]!.id) < BigInt(rows[i - 1]!.id)) {
      return [...rows].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))
    }
  }
  return rows
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
