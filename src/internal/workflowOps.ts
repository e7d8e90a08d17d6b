/**
 * Operations on a whole workflow (behind `Workflow.status`, `cancel`,
 * `retry` and the `Oban` service's methods): read its jobs and dependencies
 * into counts and blockers, cancel what has not finished, retry what failed.
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { MigrationError } from "../Errors.ts"
import { type JobState, terminalStates } from "../Job.ts"
import { now } from "../ObanClock.ts"
import { textProblem } from "./jsonText.ts"
import { withPrefix } from "./notMigrated.ts"
import * as Ops from "./sql/workflowOps.ts"

/** One job of a workflow as `status` shows it. */
export interface StepStatus {
  readonly id: number
  readonly step: string
  readonly state: JobState
  readonly worker: string
  readonly queue: string
  readonly deps: ReadonlyArray<{ readonly id: number; readonly step: string; readonly state: JobState | "deleted"; readonly onFailure: string }>
  /** For a suspended job: the steps it still waits for (dependencies not completed). */
  readonly blockedBy: ReadonlyArray<string>
}

/** A workflow's state: how many jobs are in each state, and each job with what blocks it. */
export interface WorkflowStatus {
  readonly id: string
  readonly total: number
  readonly counts: Readonly<Partial<Record<JobState, number>>>
  /**
   * Whether every job has finished (completed, discarded or cancelled); also
   * true when the workflow has no jobs (`total` 0: an unknown id, or one whose
   * jobs were all pruned or deleted).
   */
  readonly finished: boolean
  readonly jobs: ReadonlyArray<StepStatus>
}

const terminal = new Set<string>(terminalStates)

/**
 * Whether a workflow could have the id: one PostgreSQL cannot store (NUL, a lone surrogate) names
 * none (inserts refuse it), and asking the database would fail, or match another id.
 */
const possible = (workflowId: string): boolean => typeof workflowId === "string" && textProblem(workflowId) === undefined

/** Runs `query` for a workflow id some workflow could have; else, as for an unknown id, `none`. */
const forId = <A, E, R>(workflowId: string, none: A, query: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  possible(workflowId) ? query : Effect.succeed(none)


export const status = (workflowId: string): Effect.Effect<WorkflowStatus, MigrationError | SqlError, SqlClient> =>
  forId(workflowId, [], withPrefix((sql, prefix) => Ops.workflowJobs(sql, prefix, workflowId))).pipe(
    Effect.map((rows) => {
      const counts: Partial<Record<JobState, number>> = {}
      const jobs = rows.map((row): StepStatus => {
        const state = row.state as JobState
        counts[state] = (counts[state] ?? 0) + 1
        const deps = row.deps.map((dep) => ({
          id: Number(dep.id),
          step: dep.step ?? "",
          state: (dep.state ?? "deleted") as JobState | "deleted",
          onFailure: dep.on_failure
        }))
        return {
          id: Number(row.id),
          step: row.step ?? "",
          state,
          worker: row.worker,
          queue: row.queue,
          deps,
          blockedBy: state === "suspended"
            ? deps.filter((dep) => dep.state !== "completed" && dep.state !== "deleted").map((dep) => dep.step)
            : []
        }
      })
      return {
        id: workflowId,
        total: jobs.length,
        counts,
        finished: jobs.every((job) => terminal.has(job.state)),
        jobs
      }
    }),
    Effect.withSpan("oban.workflow.status", { attributes: { "oban.workflow.id": workflowId } }, { captureStackTrace: false })
  )

export const cancel = (
  workflowId: string
): Effect.Effect<ReadonlyArray<{ readonly id: number; readonly previousState: JobState }>, MigrationError | SqlError, SqlClient> =>
  forId(
    workflowId,
    [],
    withPrefix((sql, prefix) => Effect.flatMap(now(sql), (time) => Ops.cancelWorkflow(sql, prefix, time, workflowId)))
  ).pipe(
    Effect.map((rows) => rows.map((row) => ({ id: Number(row.id), previousState: row.previous_state as JobState }))),
    Effect.withSpan("oban.workflow.cancel", { attributes: { "oban.workflow.id": workflowId } }, { captureStackTrace: false })
  )

export const retry = (workflowId: string): Effect.Effect<ReadonlyArray<number>, MigrationError | SqlError, SqlClient> =>
  forId(
    workflowId,
    [],
    withPrefix((sql, prefix) => Effect.flatMap(now(sql), (time) => Ops.retryWorkflow(sql, prefix, time, workflowId)))
  ).pipe(
    Effect.withSpan("oban.workflow.retry", { attributes: { "oban.workflow.id": workflowId } }, { captureStackTrace: false })
  )
