/**
 * The rescuer's run: every orphan rescued, a batch at a time, with its
 * events and its log line. `Rescuer.runOnce` runs it with its checked
 * options; the CLI's `jobs rescue` with each producer's own `rescueAfter`.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { publish } from "../Events.ts"
import { now } from "../ObanClock.ts"
import type { Result } from "../Rescuer.ts"
import { jobEvent } from "./jobEvent.ts"
import { rescueLine } from "./rescueLine.ts"
import { type RescuedRow, rescueOrphans } from "./sql/maintenance.ts"
import { plain } from "./sql/plain.ts"
import { transaction } from "./sql/transaction.ts"

const outcomes: Record<RescuedRow["state"], string> = {
  available: "made available",
  discarded: "discarded",
  cancelled: "cancelled, as requested while it ran"
}

/** A batch that `confirm` withdrew (rolled back), and how many jobs it would have rescued. */
class Withdrawn extends Data.TaggedError("Withdrawn")<{ readonly rows: number }> {}

/**
 * One batch: the statement alone, or, with `confirm`, the statement and then
 * the check in one transaction, rolled back when the check says no
 * (`withdrawn`: the jobs it would have rescued).
 */
const rescueBatch = (
  sql: SqlClient,
  statement: Effect.Effect<ReadonlyArray<RescuedRow>, SqlError>,
  confirm: Effect.Effect<boolean> | undefined
): Effect.Effect<ReadonlyArray<RescuedRow> | { readonly withdrawn: number }, SqlError> =>
  confirm === undefined ? statement : transaction(
    sql,
    Effect.flatMap(statement, (rows) =>
      // Asked outside the transaction's connection: it is about this process, not the rows.
      Effect.flatMap(Effect.updateContext(confirm, (context: Context.Context<never>) => Context.omit(sql.transactionService)(context)), (ok) =>
        ok ? Effect.succeed(rows) : Effect.fail(new Withdrawn({ rows: rows.length }))))
  ).pipe(Effect.catchTag("Withdrawn", ({ rows }) => Effect.succeed({ withdrawn: rows })))

/**
 * Rescues the jobs of producers silent for `afterMillis` (or, with
 * `"reported"`, for their own node's `rescueAfter`), but those in `spared`;
 * see `Rescuer.runOnce` for `confirm`.
 */
export const rescueRun = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly afterMillis: number | "reported"
  /** Removes rows dead for longer; undefined removes none (the CLI: a cluster's own `forgetAfter` is not known there). */
  readonly forgetAfterMillis: number | undefined
  readonly batchSize: number
  readonly spared: ReadonlyArray<string>
  readonly confirm?: Effect.Effect<boolean> | undefined
}): Effect.Effect<Result, SqlError> =>
  Effect.gen(function*() {
    const { afterMillis: after, batchSize, forgetAfterMillis: forgetAfter, spared } = options
    const sql = plain(options.sql)
    let rescued = 0
    let discarded = 0
    let cancelled = 0
    while (true) {
      const statement = rescueOrphans(sql, options.prefix, yield* now(sql), after, forgetAfter, batchSize, spared)
      const batch = yield* rescueBatch(sql, statement, options.confirm)
      if ("withdrawn" in batch) {
        const message = `a rescue of ${batch.withdrawn} job(s) was rolled back: this node stopped leading, or its process ` +
          "did not run, between deciding to rescue and rescuing; the next run decides again"
        yield* batch.withdrawn > 0 ? Effect.logWarning(message) : Effect.logDebug(message)
        break
      }
      const at = new Date(yield* Clock.currentTimeMillis)
      yield* publish(batch.map((row) =>
        jobEvent("rescued", row, row.workflow, at, {
          message: `node ${row.lost_node ?? "(unknown)"} stopped heart-beating; job ${outcomes[row.state]}`
        })
      ))
      for (const row of batch) {
        if (row.state === "available") rescued++
        else if (row.state === "discarded") discarded++
        else cancelled++
      }
      if (batch.length < batchSize) break
    }
    if (rescued + discarded + cancelled > 0) yield* Effect.logWarning(rescueLine({ rescued, discarded, cancelled }))
    return { rescued, discarded, cancelled }
  })
