/**
 * Runs a bulk action over every job matching a filter, one bounded batch per
 * short transaction, and adds up what changed.
 *
 * A retry or reschedule can move a job into a state where its unique key is
 * held by another job (or by another job of the same batch); the unique index
 * then refuses the whole batch. That batch is gone through again one job at a
 * time, and the jobs the index refuses are skipped and reported, so one such
 * job never stops the rest. Inside a caller's transaction each batch runs in
 * a savepoint, so a refused batch rolls back alone instead of aborting the
 * caller's transaction.
 */
import { Effect, Option } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { now } from "../ObanClock.ts"
import { batchIds, type BulkAction, type ChangedRow, maxJobId, runBatch } from "./sql/bulkJobs.ts"

export interface BulkOutcome {
  readonly changed: number
  readonly skipped: ReadonlyArray<{ readonly id: number; readonly reason: string }>
  readonly batches: number
}

const isUniqueViolation = (error: SqlError): boolean => error.reason._tag === "UniqueViolation"

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
    const skipped: Array<{ readonly id: number; readonly reason: string }> = []
    let after = 0
    let changed = 0
    let batches = 0
    const batch = (condition: Fragment, limit: number) => {
      const run = Effect.flatMap(now(sql), (time) =>
        runBatch(sql, prefix, { now: time, action: options.action, condition, after, upTo, limit }))
      return inTransaction ? sql.withTransaction(run) : run
    }
    while (true) {
      const result = yield* batch(options.condition, options.batchSize).pipe(
        Effect.catchIf(isUniqueViolation, () =>
          Effect.gen(function*() {
            const ids = yield* batchIds(sql, prefix, { ...options, after, upTo, limit: options.batchSize })
            const rows: Array<ChangedRow> = []
            for (const id of ids) {
              const one = yield* batch(sql`${options.condition} AND j.id = ${id}`, 1).pipe(
                Effect.catchIf(isUniqueViolation, (error) =>
                  Effect.sync(() => {
                    skipped.push({ id, reason: `unique key held by another job (${error.reason.message})` })
                    return { changed: [], last: id }
                  }))
              )
              rows.push(...one.changed)
            }
            return { changed: rows, last: ids.at(-1) }
          }))
      )
      if (result.last === undefined) break
      batches++
      changed += result.changed.length
      after = result.last
      if (options.onBatch !== undefined && result.changed.length > 0) yield* options.onBatch(result.changed)
    }
    return { changed, skipped, batches }
  })
