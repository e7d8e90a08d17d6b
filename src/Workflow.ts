/**
 * Workflows: jobs that wait for other jobs.
 *
 * A workflow is a set of named steps, each a job request, where a step may
 * depend on earlier ones. It is inserted in one call (`Oban.insertWorkflow`,
 * inside the caller's transaction like any insert). A step whose
 * dependencies have not all completed waits in the `suspended` state and
 * becomes `available` in the same transaction that completes its last
 * dependency, with the usual wake-up of its queue; the database does the
 * release, so two dependencies finishing on two nodes at the same moment
 * release their dependent exactly once.
 *
 * ```ts
 * const flow = Workflow.make("import-42")
 *   .add("fetch", Fetch.job({ url }))
 *   .add("parse", Parse.job({ part: 1 }), { deps: ["fetch"] })
 *   .add("report", Report.job({}), { deps: [{ step: "parse", onFailure: "run" }] })
 * ```
 *
 * What happens to a dependent when a dependency is discarded or cancelled
 * is its dependency's `onFailure`: `"cancel"` (the default) cancels it (and
 * its own dependents in turn, each as its policy says), `"run"` runs it
 * anyway, `"wait"` keeps it suspended until the dependency is retried and
 * completes. A job that is retried or rescued keeps its dependents waiting.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import { type InvalidJobError, InvalidResultError, InvalidWorkflowError, type MigrationError } from "./Errors.ts"
import { workflowStepOf } from "./Events.ts"
import type { Job, JobState } from "./Job.ts"
import type { Inserted } from "./Oban.ts"
import type { JobRequest } from "./Worker.ts"
import { orNotMigrated } from "./internal/notMigrated.ts"
import { stepOptionsProblem } from "./internal/stepOptions.ts"
import * as Ops from "./internal/workflowOps.ts"
import { depResults } from "./internal/sql/workflows.ts"
import { insertWorkflow } from "./internal/workflowInsert.ts"
import { decodeResult, resultCodecOf } from "./internal/recordedResult.ts"

/**
 * What a dependent does when this dependency is discarded or cancelled.
 *
 * @since 0.1.0
 */
export type OnFailure = "cancel" | "run" | "wait"

/**
 * A dependency on a step: its name, and the policy when it fails.
 *
 * @since 0.1.0
 */
export interface Dep<Step extends string = string> {
  readonly step: Step
  readonly onFailure?: OnFailure | undefined
}

/**
 * @since 0.1.0
 */
export interface StepOptions<Steps extends string> {
  /** The steps this one waits for: names, or `{ step, onFailure }`. */
  readonly deps?: ReadonlyArray<Steps | Dep<Steps>> | undefined
}

/**
 * What inserting a workflow does with a step whose name the workflow has
 * already (inserted earlier): `"fail"` refuses the whole insert with
 * `InvalidWorkflowError`; `"keep"` leaves that step as it is (its job, args
 * and dependencies), inserts the others, and returns the existing job with
 * `conflict: true`. New steps may depend on a kept one.
 *
 * @since 0.1.0
 */
export type ExistingSteps = "fail" | "keep"

/**
 * @since 0.1.0
 */
export interface WorkflowOptions {
  /** Default `"fail"` for `make`, `"keep"` for `appendTo` (a job may run again and append again). */
  readonly existingSteps?: ExistingSteps | undefined
}

/**
 * One step of a workflow, as the builder holds it.
 *
 * @since 0.1.0
 */
export interface Step {
  readonly name: string
  readonly request: JobRequest
  /** `"failed"` (used by `Batch` for its failure callback): run only if such a dependency failed. */
  readonly deps: ReadonlyArray<{ readonly step: string; readonly onFailure: OnFailure | "failed" }>
  /** What was wrong with the options `add` was given (an unknown option, deps not a list), which the insert refuses. */
  readonly invalidOptions?: string | undefined
}

/**
 * A workflow to insert: its id and its steps in the order they were added.
 * `Steps` are the names a later step may depend on (any string for a
 * workflow that extends one already running, see `appendTo`).
 *
 * @since 0.1.0
 */
export interface Workflow<Steps extends string = never> {
  readonly _tag: "Workflow"
  readonly id: string
  readonly steps: ReadonlyArray<Step>
  /** What the insert does with a step whose name the workflow has already (see `ExistingSteps`). */
  readonly existingSteps: ExistingSteps
  /**
   * A workflow with one more step. Its dependencies must be steps added
   * before it (so a workflow never has a cycle), or, for a workflow made with
   * `appendTo`, steps already inserted.
   */
  readonly add: <const Name extends string>(
    name: Name,
    request: JobRequest,
    options?: StepOptions<Steps>
  ) => Workflow<Steps | Name>
}

/** A workflow from its steps (for modules built on workflows, such as `Batch`). */
export const fromSteps = <Steps extends string>(id: string, steps: ReadonlyArray<Step>): Workflow<Steps> =>
  build(id, steps, "fail")

const build = <Steps extends string>(id: string, steps: ReadonlyArray<Step>, existingSteps: ExistingSteps): Workflow<Steps> =>
  grown(id, [...steps], steps.length, existingSteps)

/**
 * The workflow of the first `count` steps of `all`. Adding to the workflow
 * whose steps end `all` appends to it in place (no copy, so a workflow of
 * 20,000 steps is built in milliseconds, not seconds); adding to an earlier
 * one copies its steps first, so every workflow keeps its own.
 */
const grown = <Steps extends string>(
  id: string,
  all: Array<Step>,
  count: number,
  existingSteps: ExistingSteps
): Workflow<Steps> => {
  let steps: ReadonlyArray<Step> | undefined
  return {
    _tag: "Workflow",
    id,
    existingSteps,
    get steps() {
      steps ??= count === all.length ? all.slice() : all.slice(0, count)
      return steps
    },
    add: (name, request, options) => {
      const invalidOptions = stepOptionsProblem(options)
      const step: Step = invalidOptions !== undefined ? { name, request, deps: [], invalidOptions } : {
        name,
        request,
        deps: (options?.deps ?? []).map((dep) =>
          typeof dep === "string"
            ? { step: dep, onFailure: "cancel" as const }
            : { step: dep.step, onFailure: dep.onFailure ?? "cancel" }
        )
      }
      const target = count === all.length ? all : all.slice(0, count)
      target.push(step)
      return grown(id, target, count + 1, existingSteps)
    }
  }
}

/**
 * An empty workflow. Without an id, a random UUID. Step names are unique
 * within a workflow id, so reusing an id that still has jobs fails on the
 * first repeated name. `Steps` are names a step may depend on without
 * adding them first: `make<string>(id)` adds to a workflow already inserted
 * (its steps are looked up by name, see `appendTo`); with
 * `existingSteps: "keep"`, a step whose name is taken is kept as it is
 * instead (see `ExistingSteps`).
 *
 * @since 0.1.0
 */
export const make = <Steps extends string = never>(id?: string, options?: WorkflowOptions): Workflow<Steps> =>
  build<Steps>(id ?? globalThis.crypto.randomUUID(), [], existingStepsOf(options, "fail"))

const existingStepsOf = (options: WorkflowOptions | undefined, fallback: ExistingSteps): ExistingSteps =>
  options?.existingSteps ?? fallback

/**
 * Where a job stands in its workflow (its `meta.workflow`), if it belongs to one.
 *
 * @since 0.1.0
 */
export interface Membership {
  readonly id: string
  readonly step: string
  readonly deps: ReadonlyArray<{ readonly step: string; readonly onFailure: OnFailure | "failed" }>
  /** Set on a job cancelled because a dependency failed: that dependency. */
  readonly cancelledBy?: { readonly id: number; readonly state: string; readonly step: string } | undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The workflow a job belongs to, read from its `meta.workflow`.
 *
 * @since 0.1.0
 */
export const membership = (job: Pick<Job, "meta">): Option.Option<Membership> => {
  const member = workflowStepOf(job.meta)
  if (member === undefined) return Option.none()
  // A workflow step's `meta.workflow` is an object: `workflowStepOf` read its id and step from it.
  const workflow = job.meta["workflow"] as Record<string, unknown>
  const deps = Array.isArray(workflow["deps"]) ? workflow["deps"].filter(isRecord) : []
  const cancelledBy = workflow["cancelled_by"]
  return Option.some({
    id: member.id,
    step: member.step,
    deps: deps.map((dep) => ({ step: String(dep["step"]), onFailure: dep["on_failure"] as OnFailure | "failed" })),
    cancelledBy: isRecord(cancelledBy)
      ? { id: Number(cancelledBy["id"]), state: String(cancelledBy["state"]), step: String(cancelledBy["step"]) }
      : undefined
  })
}

/**
 * The step name of a workflow job (`meta.workflow.step`), or `""` for a job
 * outside workflows.
 *
 * @since 0.1.0
 */
export const stepOf = (job: Pick<Job, "meta">): string =>
  Option.match(membership(job), { onNone: () => "", onSome: (member) => member.step })

/**
 * A workflow that adds steps to the workflow of a running job: its new steps
 * may depend on any step already inserted (by name), including the running
 * job's own. A step whose name the workflow has already is kept as it is
 * (`existingSteps: "keep"`, the default here): a job that appended, failed
 * and runs again appends the same steps again without error, and adds only
 * those it did not add before. Fails with `InvalidWorkflowError` when the job
 * belongs to no workflow.
 *
 * @since 0.1.0
 */
export const appendTo = (
  job: Pick<Job, "meta" | "id">,
  options?: WorkflowOptions
): Effect.Effect<Workflow<string>, InvalidWorkflowError> =>
  Effect.suspend(() => {
    const member = membership(job)
    if (Option.isNone(member)) {
      return Effect.fail(
        new InvalidWorkflowError({ workflowId: "", message: `job ${job.id} belongs to no workflow` })
      )
    }
    return Effect.succeed(build<string>(member.value.id, [], existingStepsOf(options, "keep")))
  })

/**
 * What inserting a workflow returns: its id and the job of each step.
 *
 * @since 0.1.0
 */
export interface InsertedWorkflow<Steps extends string> {
  readonly id: string
  readonly jobs: Readonly<Record<Steps, Inserted>>
}

/**
 * Inserts a workflow's steps and their dependencies, all or nothing, in the
 * caller's transaction when there is one. Steps without dependencies (or
 * whose dependencies have all completed) are `available` or `scheduled`;
 * the others `suspended`, except that a step added after one of its
 * dependencies failed is settled at once by its `onFailure` (`cancelled`
 * under `"cancel"`). The steps are returned in those states. A step whose
 * name the workflow has already fails the insert, or, with
 * `existingSteps: "keep"` (the default of `appendTo`), is kept and returned
 * as it stands with `conflict: true`.
 *
 * @since 0.1.0
 */
export const insert = <Steps extends string>(
  workflow: Workflow<Steps>
): Effect.Effect<
  InsertedWorkflow<Steps>,
  InvalidWorkflowError | InvalidJobError | MigrationError | SqlError,
  SqlClient
> =>
  Effect.map(insertWorkflow(workflow.id, workflow.steps, { existingSteps: workflow.existingSteps }), (jobs) => ({
    id: workflow.id,
    jobs: Object.fromEntries(workflow.steps.map((step, index) => [step.name, jobs[index]!])) as Record<Steps, Inserted>
  }))

/**
 * A dependency's recorded result, decoded by its worker's result schema.
 *
 * @since 0.1.0
 */
export interface Result<O> {
  readonly step: string
  readonly jobId: number
  readonly value: O
}

/**
 * What reading results needs of a worker: its name and result codec (any
 * `Worker` with a `result` schema).
 *
 * @since 0.1.0
 */
export interface ResultWorker<O> {
  readonly name: string
  readonly resultJson: Schema.Codec<O, Schema.Json> | undefined
}

/**
 * The recorded results of `job`'s dependencies run by `worker`, in the
 * order they were inserted, decoded by the worker's result schema (a fan-in
 * reads its fan-out's results this way). Dependencies that did not complete
 * (a failure under `onFailure: "run"`) are left out. Fails with
 * `InvalidResultError` when a completed dependency's stored result does not
 * decode (`reason: "decode"`) or is absent, or when `worker` records no
 * result (`reason: "missing"`).
 *
 * @since 0.1.0
 */
export const results = <O>(
  job: Pick<Job, "id">,
  worker: ResultWorker<O>
): Effect.Effect<ReadonlyArray<Result<O>>, InvalidResultError | MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const codec = yield* resultCodecOf(worker, job.id)
    const sql = plain(yield* SqlClient)
    const { prefix } = yield* Settings
    const rows = yield* orNotMigrated(prefix)(depResults(sql, prefix, job.id))
    const found: Array<Result<O>> = []
    for (const row of rows) {
      if (row.worker !== worker.name || row.state !== "completed") continue
      const id = Number(row.id)
      if (!row.has_result) {
        return yield* new InvalidResultError({
          worker: worker.name,
          jobId: id,
          reason: "missing",
          message: `job ${id} (step ${row.step}) completed without a recorded result`
        })
      }
      const value = yield* decodeResult(codec, worker, id, row.result, `the result of job ${id} (step ${row.step})`)
      found.push({ step: row.step ?? "", jobId: id, value })
    }
    return found
  })

/**
 * The recorded result of one dependency of `job`, by step name, decoded by
 * `worker`'s result schema. Fails with `InvalidResultError`
 * (`reason: "missing"`) when that step is not a completed dependency run by
 * `worker`.
 *
 * @since 0.1.0
 */
export const result = <O>(
  job: Pick<Job, "id">,
  step: string,
  worker: ResultWorker<O>
): Effect.Effect<O, InvalidResultError | MigrationError | SqlError, SqlClient> =>
  Effect.flatMap(results(job, worker), (all) => {
    const found = all.find((entry) => entry.step === step)
    return found !== undefined ? Effect.succeed(found.value) : Effect.fail(
      new InvalidResultError({
        worker: worker.name,
        jobId: job.id,
        reason: "missing",
        message: `job ${job.id} has no completed dependency "${step}" run by ${worker.name}`
      })
    )
  })

/**
 * @since 0.1.0
 */
export type WorkflowStatus = Ops.WorkflowStatus

/**
 * @since 0.1.0
 */
export type StepStatus = Ops.StepStatus

/**
 * A workflow's state: the count of its jobs per state, whether all have
 * finished, and each job with its dependencies and, when suspended, the
 * steps it still waits for (`blockedBy`). An unknown id has no jobs.
 *
 * @since 0.1.0
 */
export const status: (workflowId: string) => Effect.Effect<WorkflowStatus, MigrationError | SqlError, SqlClient> =
  Ops.status

/**
 * Cancels every job of a workflow that has not finished; executing ones are
 * interrupted on their nodes (as with `Oban.cancelJob`) and end `cancelled`
 * once stopped there (until then `executing`, with a cancel request).
 * Returns the jobs it cancelled or asked to stop, and the state each was in.
 *
 * @since 0.1.0
 */
export const cancel: (
  workflowId: string
) => Effect.Effect<ReadonlyArray<{ readonly id: number; readonly previousState: JobState }>, MigrationError | SqlError, SqlClient> =
  Ops.cancel

/**
 * Retries the failed part of a workflow: every discarded or cancelled job
 * gets another attempt (as with `Oban.retryJob`). Those without
 * dependencies become available now; the others wait again, suspended, and
 * run once their dependencies have completed (at once when they already
 * have). Returns the ids of the jobs retried.
 *
 * @since 0.1.0
 */
export const retry: (workflowId: string) => Effect.Effect<ReadonlyArray<number>, MigrationError | SqlError, SqlClient> =
  Ops.retry
