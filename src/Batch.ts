/**
 * Batches: jobs inserted together, with callback jobs that run once the
 * batch is done. Built on workflows: each callback is a step that depends
 * on every job of the batch, so it is released exactly once, in the
 * transaction that finishes the batch's last job, even when the last two
 * jobs finish on two nodes at the same moment.
 *
 * - `onCompleted`: runs when every job completed; cancelled as soon as one
 *   is discarded or cancelled.
 * - `onFailure`: runs once every job has finished, if at least one was
 *   discarded or cancelled; cancelled (with `meta.workflow.skipped`) if all
 *   completed.
 * - `onFinished`: runs once every job has finished, however.
 *
 * A batch with no jobs is done at once: `onCompleted` and `onFinished` run,
 * and `onFailure` is not inserted (no job can fail).
 *
 * A callback reads the batch's counts with `Batch.counts(job)`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import type { InvalidJobError, InvalidWorkflowError, MigrationError } from "./Errors.ts"
import type { Job, JobState } from "./Job.ts"
import type { Inserted } from "./Oban.ts"
import type { JobRequest } from "./Worker.ts"
import * as Workflow from "./Workflow.ts"
import { orNotMigrated } from "./internal/notMigrated.ts"
import { depStateCounts } from "./internal/sql/workflows.ts"

/**
 * A batch to insert: its id, its jobs and its callbacks.
 *
 * @since 0.1.0
 */
export interface Batch {
  readonly _tag: "Batch"
  readonly id: string
  readonly jobs: ReadonlyArray<JobRequest>
  readonly callbacks: Readonly<Partial<Record<Callback, JobRequest>>>
  /** The batch with more jobs. */
  readonly add: (...requests: ReadonlyArray<JobRequest>) => Batch
  /** Runs `request` when every job completed. */
  readonly onCompleted: (request: JobRequest) => Batch
  /** Runs `request` once every job finished, if any was discarded or cancelled. */
  readonly onFailure: (request: JobRequest) => Batch
  /** Runs `request` once every job finished. */
  readonly onFinished: (request: JobRequest) => Batch
}

/**
 * @since 0.1.0
 */
export type Callback = "completed" | "failure" | "finished"

const build = (id: string, jobs: ReadonlyArray<JobRequest>, callbacks: Batch["callbacks"]): Batch => ({
  _tag: "Batch",
  id,
  jobs,
  callbacks,
  add: (...requests) => build(id, [...jobs, ...requests], callbacks),
  onCompleted: (request) => build(id, jobs, { ...callbacks, completed: request }),
  onFailure: (request) => build(id, jobs, { ...callbacks, failure: request }),
  onFinished: (request) => build(id, jobs, { ...callbacks, finished: request })
})

/**
 * An empty batch; without an id, a random UUID. The batch is a workflow
 * with that id: its jobs are steps `job-0`, `job-1`, ..., its callbacks
 * `on-completed`, `on-failure` and `on-finished`.
 *
 * @since 0.1.0
 */
export const make = (id?: string): Batch => build(id ?? globalThis.crypto.randomUUID(), [], {})

const policies: Record<Callback, "cancel" | "failed" | "run"> = { completed: "cancel", failure: "failed", finished: "run" }

/** The workflow a batch is inserted as. */
export const toWorkflow = (batch: Batch): Workflow.Workflow<string> => {
  const names = batch.jobs.map((_, index) => `job-${index}`)
  const steps: Array<Workflow.Step> = batch.jobs.map((request, index) => ({ name: names[index]!, request, deps: [] }))
  for (const callback of ["completed", "failure", "finished"] as const) {
    const request = batch.callbacks[callback]
    // With no jobs, nothing failed: the failure callback would otherwise wait on nothing and run.
    if (request === undefined || (callback === "failure" && names.length === 0)) continue
    steps.push({ name: `on-${callback}`, request, deps: names.map((step) => ({ step, onFailure: policies[callback] })) })
  }
  return Workflow.fromSteps(batch.id, steps)
}

/**
 * What inserting a batch returns: its id, its jobs in order, and its callbacks.
 *
 * @since 0.1.0
 */
export interface InsertedBatch {
  readonly id: string
  readonly jobs: ReadonlyArray<Inserted>
  readonly callbacks: Readonly<Partial<Record<Callback, Inserted>>>
}

/**
 * Inserts a batch, all or nothing, in the caller's transaction when there is one.
 *
 * @since 0.1.0
 */
export const insert = (
  batch: Batch
): Effect.Effect<InsertedBatch, InvalidWorkflowError | InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.map(Workflow.insert(toWorkflow(batch)), (inserted) => {
    const jobs = inserted.jobs as Readonly<Record<string, Inserted>>
    const callbacks: Partial<Record<Callback, Inserted>> = {}
    for (const callback of ["completed", "failure", "finished"] as const) {
      const job = jobs[`on-${callback}`]
      if (job !== undefined) callbacks[callback] = job
    }
    return { id: batch.id, jobs: batch.jobs.map((_, index) => jobs[`job-${index}`]!), callbacks }
  })

/**
 * The states of a batch's jobs, as its callback sees them: how many are in
 * each state, and the total.
 *
 * @since 0.1.0
 */
export interface Counts {
  readonly total: number
  readonly completed: number
  readonly discarded: number
  readonly cancelled: number
  /** Jobs not finished yet (none when an `onFailure` or `onFinished` callback runs). */
  readonly pending: number
  readonly byState: Readonly<Partial<Record<JobState, number>>>
}

/**
 * The counts of the batch whose callback `job` is (the states of the jobs
 * it waited for).
 *
 * @since 0.1.0
 */
export const counts = (job: Pick<Job, "id">): Effect.Effect<Counts, MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = plain(yield* SqlClient)
    const { prefix } = yield* Settings
    const rows = yield* orNotMigrated(prefix)(depStateCounts(sql, prefix, job.id))
    const byState: Partial<Record<JobState, number>> = {}
    let total = 0
    for (const row of rows) {
      byState[row.state as JobState] = row.n
      total += row.n
    }
    const completed = byState.completed ?? 0
    const discarded = byState.discarded ?? 0
    const cancelled = byState.cancelled ?? 0
    return { total, completed, discarded, cancelled, pending: total - completed - discarded - cancelled, byState }
  })
