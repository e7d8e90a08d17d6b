/**
 * Writing checked job requests: the choice of statement (one job, one batch,
 * or a batch split into chunks), the wake-up, and the jobs built from what
 * the statements return.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { Job } from "../Job.ts"
import type { EncodedRequest } from "./encodeRequest.ts"
import { insertedJob, insertedJobs } from "./jobRow.ts"
import * as Inserts from "./sql/insertJobs.ts"
import { withInlineWake } from "./waker.ts"

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

/** Consecutive runs of at most `maxStatementJobs` jobs and `maxStatementUnits` each (a larger job alone). */
const chunkJobs = (jobs: ReadonlyArray<EncodedRequest>): ReadonlyArray<ReadonlyArray<EncodedRequest>> => {
  const chunks: Array<ReadonlyArray<EncodedRequest>> = []
  let start = 0
  let units = 0
  for (let index = 0; index < jobs.length; index++) {
    const size = unitsOf(jobs[index]!)
    if (index > start && (units + size > maxStatementUnits || index - start === maxStatementJobs)) {
      chunks.push(jobs.slice(start, index))
      start = index
      units = 0
    }
    units += size
  }
  chunks.push(start === 0 ? jobs : jobs.slice(start))
  return chunks
}

/**
 * Inserts checked requests and returns their jobs in order, and whether the
 * statement woke their queues itself (else the caller wakes them after
 * commit). One job takes the single-job statement; a batch one statement up
 * to `maxStatementUnits` of text, or several inside one transaction (a
 * savepoint inside the caller's).
 */
export const insertEncoded = (
  sql: SqlClient,
  prefix: string,
  time: Fragment,
  encoded: ReadonlyArray<EncodedRequest>
): Effect.Effect<{ readonly jobs: ReadonlyArray<Job>; readonly woken: boolean }, SqlError> => {
  if (encoded.length === 1) {
    const job = encoded[0]!
    return withInlineWake(sql, (wake) =>
      Effect.map(Inserts.insertJob(sql, prefix, time, job, wake), (row) => ({
        jobs: [insertedJob(job, row.id, row.state, row.inserted_at, row.scheduled_at)],
        woken: wake
      })))
  }
  const chunks = chunkJobs(encoded)
  if (chunks.length > 1) {
    return Effect.map(
      sql.withTransaction(
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
