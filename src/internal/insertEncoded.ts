/**
 * Writing checked job requests: the choice of statement (one job, one batch,
 * or a batch split into chunks; unique jobs through their own statement),
 * the wake-up, and the jobs built from what the statements return.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { Inserted } from "../Oban.ts"
import type { EncodedRequest } from "./encodeRequest.ts"
import { insertedJob, insertedJobs, jobFromRow } from "./jobRow.ts"
import * as Inserts from "./sql/insertJobs.ts"
import { requestHash, type UpsertedRow, upsertJobs } from "./sql/upsertJobs.ts"
import { groupUnique, type Slot } from "./uniqueBatch.ts"
import { withInlineWake } from "./waker.ts"
import { transaction } from "./sql/transaction.ts"

/** What an insert wrote: the jobs in request order, and the queues still to wake once it commits. */
export interface InsertResult {
  readonly jobs: ReadonlyArray<Inserted>
  readonly wake: ReadonlyArray<string>
}

/** The most JSON and tag text (in UTF-16 units) sent in one insert statement. */
const maxStatementUnits = 32 * 1024 * 1024

/**
 * The most jobs in one insert statement: its reply carries a few arrays with
 * an element per job in one message, which must stay well under the
 * driver's 16 MiB limit.
 */
const maxStatementJobs = 100_000

/** The text units a job adds to its insert statement. */
const unitsOf = (job: EncodedRequest): number => {
  let units = job.args.length + job.meta.length + job.queue.length + job.worker.length + 64
  for (const tag of job.tags) units += tag.length + 3
  return units
}

/**
 * Consecutive runs of at most `maxStatementJobs` items and `maxStatementUnits`
 * each (a larger item alone), measured on the job of each item.
 */
const chunkBy = <A>(
  items: ReadonlyArray<A>,
  jobOf: (item: A) => EncodedRequest
): ReadonlyArray<ReadonlyArray<A>> => {
  const chunks: Array<ReadonlyArray<A>> = []
  let start = 0
  let units = 0
  for (let index = 0; index < items.length; index++) {
    const size = unitsOf(jobOf(items[index]!))
    if (index > start && (units + size > maxStatementUnits || index - start === maxStatementJobs)) {
      chunks.push(items.slice(start, index))
      start = index
      units = 0
    }
    units += size
  }
  chunks.push(start === 0 ? items : items.slice(start))
  return chunks
}

const chunkJobs = (jobs: ReadonlyArray<EncodedRequest>) => chunkBy(jobs, (job) => job)

/**
 * Inserts checked requests and returns their jobs in order, and the queues
 * the caller must wake after commit (none when the statement woke them
 * itself). Requests without uniqueness take the plain statements; with any
 * unique request see `insertWithUnique`.
 */
export const insertEncoded = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  encoded: ReadonlyArray<EncodedRequest>
): Effect.Effect<InsertResult, SqlError> => {
  for (const request of encoded) {
    if (request.unique !== undefined) return insertWithUnique(sql, prefix, time, encoded)
  }
  if (encoded.length === 1) return insertOne(sql, prefix, time, encoded[0]!)
  return Effect.map(insertPlain(sql, prefix, time, encoded), ({ jobs, woken }) => ({
    jobs,
    wake: woken ? [] : dueQueues(jobs)
  }))
}

/**
 * One job without uniqueness: the single-job statement, which wakes the
 * job's queue itself when it can (see `withInlineWake`). The path of every
 * `Oban.insert` of an ordinary job, so it maps the statement's row once.
 */
const insertOne = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  job: EncodedRequest
): Effect.Effect<InsertResult, SqlError> =>
  withInlineWake(sql, (woken) =>
    Effect.map(Inserts.insertJob(sql, prefix, time, job, woken), (rows) => {
      const row = rows[0]!
      const inserted = insertedJob(job, row.id, row.state, row.inserted_at, row.scheduled_at)
      return { jobs: [inserted], wake: woken || inserted.state !== "available" ? [] : [inserted.queue] }
    }))

/** The queues of the jobs inserted available. */
const dueQueues = (jobs: ReadonlyArray<Inserted>): ReadonlyArray<string> => {
  const queues = new Set<string>()
  for (const job of jobs) if (job.state === "available") queues.add(job.queue)
  return [...queues]
}

/**
 * Inserts a batch of requests without uniqueness and returns their jobs in
 * order, and whether the statement woke their queues itself: one statement
 * up to `maxStatementUnits` of text, or several inside one transaction (a
 * savepoint inside the caller's).
 */
const insertPlain = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  encoded: ReadonlyArray<EncodedRequest>
): Effect.Effect<{ readonly jobs: ReadonlyArray<Inserted>; readonly woken: boolean }, SqlError> => {
  const chunks = chunkJobs(encoded)
  if (chunks.length > 1) {
    return Effect.map(
      transaction(sql, 
        Effect.forEach(chunks, (chunk) =>
          Effect.map(Inserts.insertJobs(sql, prefix, time, chunk, false), (batch) => insertedJobs(chunk, batch)))
      ),
      (parts) => ({ jobs: parts.flat(), woken: false })
    )
  }
  return withInlineWake(sql, (wake) =>
    Effect.map(Inserts.insertJobs(sql, prefix, time, encoded, wake), (batch) => ({
      jobs: insertedJobs(encoded, batch),
      woken: wake
    })))
}

/** One `upsertJobs` statement for a group of slots. */
const upsertGroup = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  group: ReadonlyArray<Slot>,
  wake: boolean
): Effect.Effect<ReadonlyArray<UpsertedRow>, SqlError> =>
  upsertJobs(sql, prefix, time, group.map((slot) => slot.request), group[0]!.request.unique!.replace, wake)

/**
 * Inserts a mix of plain and unique requests. Unique requests are merged by
 * key (`groupUnique`) and go through `upsertJobs`, one statement per run of
 * keys (in key order) that replace the same fields, cut at
 * `maxStatementUnits` like plain batches; the plain ones through the plain
 * statements. A single statement wakes its queues itself when it can (see
 * `withInlineWake`);
 * several must run in one transaction, which the caller opens (it also
 * covers the decoding of the jobs' stored args), so the call stays all or
 * nothing. A conflict wakes nothing; a replaced
 * `scheduledAt` that makes a job due wakes its queue.
 */
const insertWithUnique = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  encoded: ReadonlyArray<EncodedRequest>
): Effect.Effect<InsertResult, SqlError> => {
  // Runs in key order, each cut like a plain batch (one jsonb input holds at most 256 MiB); still in key order.
  const groups = groupUnique(encoded).flatMap((run) => chunkBy(run, (slot) => slot.request))
  const plainPositions: Array<number> = []
  for (let position = 0; position < encoded.length; position++) {
    if (encoded[position]!.unique === undefined) plainPositions.push(position)
  }
  // Unique requests are merged by hash: within the call, a hash names one slot.
  const slotOf = new Map<string, Slot>()
  for (const group of groups) for (const slot of group) slotOf.set(slot.request.unique!.hash, slot)
  const jobs: Array<Inserted> = new Array(encoded.length)
  const wake = new Set<string>()
  const place = (rows: ReadonlyArray<UpsertedRow>, woken: boolean) => {
    for (const row of rows) {
      const job: Inserted = { ...jobFromRow(row), conflict: row.conflict }
      const slot = slotOf.get(requestHash(row.unique_key))!
      jobs[slot.position] = job
      for (const duplicate of slot.duplicates) jobs[duplicate] = { ...job, conflict: true }
      if (row.wakes && !woken) wake.add(row.queue)
    }
  }
  const result = Effect.sync((): InsertResult => ({ jobs, wake: [...wake] }))
  if (plainPositions.length === 0 && groups.length === 1) {
    return withInlineWake(sql, (woken) =>
      Effect.andThen(Effect.map(upsertGroup(sql, prefix, time, groups[0]!, woken), (rows) => place(rows, woken)), result))
  }
  const plain = plainPositions.length === 0
    ? Effect.void
    : Effect.map(insertEncoded(sql, prefix, time, plainPositions.map((position) => encoded[position]!)), (inserted) => {
      inserted.jobs.forEach((job, index) => {
        jobs[plainPositions[index]!] = job
      })
      for (const queue of inserted.wake) wake.add(queue)
    })
  const unique = Effect.forEach(
    groups,
    (group) => Effect.map(upsertGroup(sql, prefix, time, group, false), (rows) => place(rows, false)),
    { discard: true }
  )
  // Several statements: the caller (`insertRequests`) runs such a call in one transaction.
  return Effect.andThen(Effect.andThen(plain, unique), result)
}
