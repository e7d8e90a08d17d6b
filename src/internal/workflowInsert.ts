/**
 * The insert path of `Workflow.insert` / `Oban.insertWorkflow`: check the
 * steps, encode their requests like any insert, then in one transaction (a
 * savepoint inside the caller's) write the jobs, lock the already inserted
 * steps the new ones depend on, write the dependency edges, and settle the
 * new dependents of already finished steps. Events go out after commit.
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "../Config.ts"
import { type InvalidJobError, InvalidWorkflowError, type MigrationError } from "../Errors.ts"
import { type JobState, terminalStates } from "../Job.ts"
import type { Inserted } from "../Oban.ts"
import { now } from "../ObanClock.ts"
import type { ExistingSteps, Step } from "../Workflow.ts"
import { encodeRequests } from "./encodeRequest.ts"
import { type PublishInserted, withInsertedEvents } from "./insertedEvents.ts"
import { insertedJob, jobFromRow } from "./jobRow.ts"
import { parseJsonObject } from "./jsonParse.ts"
import { textProblem } from "./jsonText.ts"
import { orNotMigrated } from "./notMigrated.ts"
import { unreadOption } from "./requestFields.ts"
import * as Sql from "./sql/workflows.ts"
import { currentTraceparent, withInsertSpan } from "./telemetry.ts"
import { transaction } from "./sql/transaction.ts"

/**
 * Whether a step's request is unique. Whatever is no readable request (not an
 * object, a `unique` that throws, options that threw in `job`) is left to the
 * request's own checks, which refuse it naming the field.
 */
const declaresUnique = (request: unknown): boolean => {
  if (typeof request !== "object" || request === null || unreadOption(request) !== undefined) return false
  try {
    return (request as { readonly unique?: unknown }).unique !== undefined
  } catch {
    return false
  }
}

/** Checks step names and dependencies; returns the names of already inserted steps depended on. */
const checkSteps = (workflowId: string, steps: ReadonlyArray<Step>): ReadonlyArray<string> | InvalidWorkflowError => {
  const refuse = (step: string, message: string) => new InvalidWorkflowError({ workflowId, step, message })
  if (typeof workflowId !== "string" || workflowId.length === 0 || workflowId.length > 255) {
    return new InvalidWorkflowError({ workflowId: String(workflowId), message: "a workflow id is 1 to 255 characters" })
  }
  const idProblem = textProblem(workflowId)
  if (idProblem !== undefined) return new InvalidWorkflowError({ workflowId, message: `the workflow id ${idProblem}` })
  const all = new Set(steps.map((step) => step.name))
  const seen = new Set<string>()
  const external = new Set<string>()
  for (const step of steps) {
    if (typeof step.name !== "string" || step.name.length === 0 || step.name.length > 255) {
      return refuse(String(step.name), "a step name is 1 to 255 characters")
    }
    const nameProblem = textProblem(step.name)
    if (nameProblem !== undefined) return refuse(step.name, `the step name ${nameProblem}`)
    if (seen.has(step.name)) return refuse(step.name, `step "${step.name}" is added twice`)
    if (step.invalidOptions !== undefined) return refuse(step.name, `step "${step.name}": ${step.invalidOptions}`)
    if (declaresUnique(step.request)) {
      return refuse(step.name, "a unique job cannot be a workflow step (a conflict would join another job to it); for a worker with a default unique, pass { unique: false } in the step's job options")
    }
    const named = new Set<string>()
    for (const dep of step.deps) {
      if (named.has(dep.step)) return refuse(step.name, `step "${step.name}" names its dependency "${dep.step}" twice`)
      named.add(dep.step)
      if (!["cancel", "run", "wait", "failed"].includes(dep.onFailure)) {
        return refuse(step.name, `onFailure must be "cancel", "run" or "wait", got ${JSON.stringify(dep.onFailure)}`)
      }
      if (dep.step === step.name) return refuse(step.name, `step "${step.name}" depends on itself`)
      const depProblem = typeof dep.step === "string" ? textProblem(dep.step) : "is not a string"
      if (depProblem !== undefined) return refuse(step.name, `the name of a dependency of step "${step.name}" ${depProblem}`)
      if (all.has(dep.step) && !seen.has(dep.step)) {
        return refuse(step.name, `step "${step.name}" depends on "${dep.step}", which must be added before it`)
      }
      if (!all.has(dep.step)) external.add(dep.step)
    }
    seen.add(step.name)
  }
  return [...external]
}

const takenMessage = (workflowId: string) => `a step name of this workflow is already taken in workflow "${workflowId}"`

/**
 * The refusal of a step name taken in the workflow already (the insert's unique violation: no other
 * statement of a workflow insert can have one), naming the step: read after the insert's transaction
 * (or savepoint) rolled back, as the failed statement left it unusable. Should that read fail too, the
 * refusal says what it can without the name.
 */
const namingTaken = (
  sql: SqlClient,
  prefix: string,
  workflowId: string,
  /** The names the insert meant to write (not those it kept). */
  names: ReadonlyArray<string>
): Effect.Effect<InvalidWorkflowError> =>
  Sql.findSteps(sql, prefix, workflowId, names, false).pipe(
    Effect.map((rows) => {
      const taken = rows[0]?.step
      return taken === undefined
        ? new InvalidWorkflowError({ workflowId, message: takenMessage(workflowId) })
        : new InvalidWorkflowError({
          workflowId,
          step: taken,
          message: `step "${taken}" is in workflow "${workflowId}" already (a step name is the workflow's once)`
        })
    }),
    Effect.orElseSucceed(() => new InvalidWorkflowError({ workflowId, message: takenMessage(workflowId) }))
  )

export const insertWorkflow = (
  workflowId: string,
  steps: ReadonlyArray<Step>,
  options: {
    /** The traceparent for the jobs, when the caller read it (else the current span's). */
    readonly traced?: { readonly traceparent: string | undefined } | undefined
    /** What to do with a step whose name the workflow has already; default `"fail"`. */
    readonly existingSteps?: ExistingSteps | undefined
  } = {}
): Effect.Effect<
  ReadonlyArray<Inserted>,
  InvalidWorkflowError | InvalidJobError | MigrationError | SqlError,
  SqlClient
> =>
  Effect.gen(function*() {
    const external = checkSteps(workflowId, steps)
    if (external instanceof InvalidWorkflowError) return yield* external
    if (steps.length === 0) return []
    const settings = yield* Settings
    const traceparent = options.traced === undefined ? yield* currentTraceparent : options.traced.traceparent
    const encoded = yield* encodeRequests(steps.map((step) => step.request), settings, traceparent, (i) => i)
    const sql = plain(yield* SqlClient)
    const time = yield* now(sql)
    const migrated = orNotMigrated(settings.prefix)
    const keepExisting = options.existingSteps === "keep"
    // The steps the insert kept (read in its transaction): a conflict names one of the others.
    let keptNames: ReadonlySet<string> = new Set()
    const write = Effect.gen(function*() {
      // The steps already inserted that this insert names, held (`FOR SHARE`) against a change of state until
      // it commits: with `keep`, those it keeps as they are (the others are inserted); and the dependencies
      // inserted earlier. Locked in one statement, in id order, as a node's outcome write locks the rows it
      // finishes: in two (the kept ones, then the dependencies) they could meet it in a lock cycle.
      const names = steps.map((step) => step.name)
      const held = keepExisting
        ? yield* migrated(Sql.readSteps(sql, settings.prefix, workflowId, [...names, ...external]))
        : []
      const kept = new Map(held.filter((row) => !external.includes(row.step)).map((row) => [row.step, row]))
      keptNames = new Set(kept.keys())
      const existing = keepExisting
        ? held.filter((row) => external.includes(row.step))
        : external.length === 0
        ? []
        : yield* migrated(Sql.findSteps(sql, settings.prefix, workflowId, external))
      const fresh = steps.flatMap((step, index) => kept.has(step.name) ? [] : [index])
      const rows: ReadonlyArray<Sql.WorkflowRow> = fresh.map((index) => ({
        request: encoded[index]!,
        suspended: steps[index]!.deps.length > 0,
        workflow: {
          id: workflowId,
          step: steps[index]!.name,
          deps: steps[index]!.deps.map((dep) => ({ step: dep.step, on_failure: dep.onFailure }))
        }
      }))
      const inserted = rows.length === 0 ? [] : yield* migrated(Sql.insertWorkflowJobs(sql, settings.prefix, time, workflowId, rows))
      const ids = new Map(fresh.map((index, at) => [steps[index]!.name, Number(inserted[at]!.id)]))
      for (const row of kept.values()) ids.set(row.step, Number(row.id))
      for (const row of existing) ids.set(row.step, Number(row.id))
      const missing = external.filter((name) => !existing.some((row) => row.step === name))
      if (missing.length > 0) {
        return yield* new InvalidWorkflowError({
          workflowId,
          step: missing[0]!,
          message: `no step "${missing[0]}" in workflow "${workflowId}" (never inserted, or pruned)`
        })
      }
      // A kept step keeps the dependencies it has; only the inserted ones get theirs.
      const edges = fresh.flatMap((index) =>
        steps[index]!.deps.map((dep) => ({ job: ids.get(steps[index]!.name)!, dep: ids.get(dep.step)!, onFailure: dep.onFailure }))
      )
      yield* migrated(Sql.insertEdges(sql, settings.prefix, edges))
      // A dependency that finished already counts at once: the new steps may be released (available) or
      // cancelled by now, and are returned (and announced) as they are. One still waiting or running
      // (the usual append to a chain with a backlog) releases nothing yet.
      const finished = [...existing, ...kept.values()].filter((row) => terminalStates.includes(row.state as JobState))
      if (finished.length === 0 || inserted.length === 0) return { fresh, inserted, kept }
      yield* migrated(Sql.releaseDependents(sql, settings.prefix, time, finished.map((row) => Number(row.id))))
      const current = new Map(
        (yield* migrated(Sql.stepsNow(sql, settings.prefix, inserted.map((row) => Number(row.id)))))
          .map((row) => [Number(row.id), row])
      )
      return {
        fresh,
        kept,
        inserted: inserted.map((row) => {
          const now = current.get(Number(row.id))
          return now === undefined ? row : { ...row, ...now, id: row.id }
        })
      }
    })
    // Announced inside the transaction: the ids are known before its COMMIT (see `withInsertedEvents`).
    const announced = (publishInserted: PublishInserted) =>
      transaction(
        sql,
        Effect.flatMap(write, ({ fresh, inserted, kept }) => {
          const added = inserted.map((row: Sql.InsertedWorkflowRow & { readonly cancelled_at?: Date | null }, at): Inserted => {
            const job = insertedJob(encoded[fresh[at]!]!, row.id, row.state, row.inserted_at, row.scheduled_at, parseJsonObject(row.meta))
            return row.cancelled_at == null ? job : { ...job, cancelledAt: row.cancelled_at }
          })
          // Every step in the order given: a kept one as it stands, with `conflict: true`.
          const byIndex = new Map(fresh.map((index, at) => [index, added[at]!]))
          const jobs = steps.map((step, index) =>
            byIndex.get(index) ?? { ...jobFromRow(kept.get(step.name)!), conflict: true }
          )
          return Effect.as(publishInserted(added), jobs)
        })
      ).pipe(Effect.catch((error) =>
        error._tag === "SqlError" && error.reason._tag === "UniqueViolation"
          ? Effect.flatMap(
            namingTaken(sql, settings.prefix, workflowId, steps.flatMap((step) => keptNames.has(step.name) ? [] : [step.name])),
            Effect.fail
          )
          : Effect.fail(error)
      ))
    return yield* withInsertedEvents(sql, announced, { announcesInTransaction: true })
  }).pipe(withInsertSpan("oban.workflow.insert", {
    kind: "producer",
    attributes: { "oban.workflow.id": workflowId, "oban.jobs": steps.length }
  }))
