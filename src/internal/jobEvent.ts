/**
 * How a job event is built, wherever it is published: an insert, an attempt,
 * a rescue. Each names the job and, for a workflow step, its workflow and
 * step (from the job's `meta.workflow`).
 */
import type { EventKind, JobEvent, WorkflowStep } from "../Events.ts"

/** What every event says of its job. */
export interface EventSubject {
  readonly id: number
  readonly worker: string
  readonly queue: string
  readonly attempt: number
}

/** The workflow and step in a job's `meta.workflow` value; none when the value is not a workflow step's. */
export const workflowStep = (workflow: unknown): WorkflowStep | undefined => {
  if (typeof workflow !== "object" || workflow === null) return undefined
  const { id, step } = workflow as Record<string, unknown>
  return typeof id === "string" && typeof step === "string" ? { id, step } : undefined
}

/**
 * An event of `kind` about `job` at `at`; `workflow` is the job's
 * `meta.workflow` (none outside workflows).
 */
export const jobEvent = (
  kind: EventKind,
  job: EventSubject,
  workflow: unknown,
  at: Date,
  extra: Pick<JobEvent, "message" | "willRetry" | "durationMillis"> = {}
): JobEvent => {
  const member = workflowStep(workflow)
  return {
    kind,
    jobId: job.id,
    worker: job.worker,
    queue: job.queue,
    attempt: job.attempt,
    at,
    ...(member === undefined ? {} : { workflow: member }),
    ...extra
  }
}
