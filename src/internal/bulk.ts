/**
 * Runs a bulk action over every job matching a filter, one bounded batch per
 * short transaction, and adds up what changed.
 *
 * The jobs an action covers are those that match when it starts: their ids
 * are read first (in pages, before any job changes), then each batch changes
 * those of its ids that still match. Reading the filter again batch after
 * batch would let the action chase its own effects: a cancel of the
 * executing jobs frees slots, the nodes claim waiting jobs, and a later batch
 * finds them executing too, so the whole backlog ends up cancelled.
 *
 * A retry or reschedule can move a job into a state where its unique key is
 * held by another job (or by another job of the same batch); the unique index
 * then refuses the whole batch. That batch is gone through again one job at a
 * time, and the jobs the index refuses are skipped and reported, so one such
 * job never stops the rest. Inside a caller's transaction each batch runs in
 * a savepoint, so a refused batch rolls back alone instead of aborting the
 * caller's transaction.
 *
 * A retry leaves `suspended` jobs alone and retries workflow steps one at a
 * time through the single-job `retryJob`, which puts a step whose
 * dependencies have not all completed back to `suspended` instead of
 * running it.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { now } from "../ObanClock.ts"
import { batchIds, type BulkAction, type ChangedRow, maxJobId, runBatch, workflowSteps } from "./sql/bulkJobs.ts"
import * as Jobs from "./sql/jobs.ts"
import { transaction } from "./sql/transaction.ts"

export interface BulkOutcome {
  readonly changed: number
  /**
   * Of `changed`, the running jobs whose cancel is only requested (a cancel only): they stay
   * `executing` until their nodes have stopped them, then end `cancelled`.
   */
  readonly requested: number
  readonly skipped: ReadonlyArray<{ readonly id: number; readonly reason: string }>
  readonly batches: number
}

const isUniqueViolation = (error: SqlError): boolean => error.reason._tag === "UniqueViolation"

/** Ids read per statement when collecting the jobs an action covers. */
const idPage = 10_000

export const runBulk = (
  sql: SqlClient,
  prefix: string,
  options: {
    readonly action: BulkAction
    readonly condition: Fragment
    readonly batchSize: number
    /** Called with each batch's changed jobs after it committed (a node stops the cancelled jobs it runs). */
    readonly onBatch?: ((rows: ReadonlyArray<ChangedRow>) => Effect.Effect<void>) | undefined
  }
): Effect.Effect<BulkOutcome, SqlError> =>
  Effect.gen(function*() {
    const upTo = yield* maxJobId(sql, prefix)
    // Outside a transaction each statement is its own; inside one, a refused statement would abort
    // the caller's transaction and every statement after it, so each runs in a savepoint.
    const inTransaction = Option.isSome(yield* Effect.serviceOption(sql.transactionService))
    // The jobs that match now, before the first batch changes anything.
    const ids: Array<number> = []
    while (true) {
      const page = yield* batchIds(sql, prefix, { ...options, after: ids.at(-1) ?? 0, upTo, limit: idPage })
      ids.push(...page)
      if (page.length < idPage) break
    }
    const skipped: Array<{ readonly id: number; readonly reason: string }> = []
    let changed = 0
    let requested = 0
    let batches = 0
    /** Inside a caller's transaction, a savepoint: a refused statement then rolls back alone. */
    const own = <A>(effect: Effect.Effect<A, SqlError>) => inTransaction ? transaction(sql, effect) : effect
    /** `effect` for job `id`; when the unique index refuses it, the job is skipped and reported. */
    const orSkip = <A>(id: number, effect: Effect.Effect<A, SqlError>, none: A) =>
      Effect.catchIf(effect, isUniqueViolation, () =>
        Effect.map(Jobs.uniqueKeyHolder(sql, prefix, id), (holder) => {
          // The holder may have left its key's states since the refusal: then it is not named.
          skipped.push({ id, reason: `unique key held by ${holder === undefined ? "another job" : `job ${holder}`}` })
          return none
        }))
    const batch = (chunk: ReadonlyArray<number>) =>
      own(Effect.flatMap(now(sql), (time) =>
        runBatch(sql, prefix, {
          now: time,
          action: options.action,
          condition: sql`${options.condition} AND j.id = ANY(${`{${chunk.join(",")}}`}::bigint[])`,
          after: chunk[0]! - 1,
          upTo: chunk.at(-1)!,
          limit: chunk.length
        }))).pipe(Effect.map((result) => result.changed))
    /** A bulk retry's workflow steps, one at a time through `retryJob` (which may suspend them again). */
    const retrySteps = (chunk: ReadonlyArray<number>) =>
      Effect.gen(function*() {
        const rows: Array<ChangedRow> = []
        for (const { id, state } of yield* workflowSteps(sql, prefix, options.action, chunk)) {
          const retried = yield* orSkip(id, own(Effect.flatMap(now(sql), (time) => Jobs.retryJob(sql, prefix, time, id))), undefined)
          if (retried !== undefined) rows.push({ id, previous_state: state, state: retried.state, node: null })
        }
        return rows
      })
    for (let start = 0; start < ids.length; start += options.batchSize) {
      const chunk = ids.slice(start, start + options.batchSize)
      const steps = options.action._tag === "retry" ? yield* retrySteps(chunk) : []
      // A batch the unique index refuses is gone through again one job at a time.
      const plain = yield* Effect.catchIf(batch(chunk), isUniqueViolation, () =>
        Effect.map(Effect.forEach(chunk, (id) => orSkip(id, batch([id]), [])), (parts) => parts.flat()))
      const rows = [...plain, ...steps]
      batches++
      changed += rows.length
      if (options.action._tag === "cancel") requested += rows.filter((row) => row.state === "executing").length
      if (options.onBatch !== undefined && rows.length > 0) yield* options.onBatch(rows)
    }
    return { changed, requested, skipped, batches }
  })
