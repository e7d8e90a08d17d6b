/**
 * SQL of the dashboard's queue limits: every queue's cluster-wide limits
 * (global concurrency, rate, partitions) from `oban_queues`, in one read of
 * that small table.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { fromRow, type LimitsRow, type QueueLimits } from "../queueLimits.ts"
import { limitsObject } from "./queues.ts"
import { table } from "./tables.ts"

export const allQueueLimits = (
  sql: SqlClient,
  prefix: string
): Effect.Effect<ReadonlyArray<{ readonly queue: string; readonly limits: QueueLimits }>, SqlError> =>
  sql<{ readonly name: string; readonly limits: LimitsRow }>`
    SELECT q.name, ${limitsObject(sql, "q")} AS limits FROM ${table(sql, prefix, "oban_queues")} AS q ORDER BY q.name
  `.pipe(Effect.map((rows) => rows.map((row) => ({ queue: row.name, limits: fromRow(row.limits) }))))

const partitionText = (partition: QueueLimits["partition"]): string =>
  partition === undefined ? "" : partition.by === "worker" ? " per worker" : ` per args.${partition.key}`

/** The limits in a few words, e.g. "global 10 per worker, 100 per 1 s"; empty when unlimited. */
export const describeLimits = (limits: QueueLimits): string => {
  const parts: Array<string> = []
  if (limits.global !== undefined) parts.push(`global ${limits.global}${partitionText(limits.partition)}`)
  if (limits.rate !== undefined) {
    const period = limits.rate.periodMillis % 1000 === 0 ? `${limits.rate.periodMillis / 1000} s` : `${limits.rate.periodMillis} ms`
    parts.push(`${limits.rate.limit} per ${period}${partitionText(limits.rate.partition)}`)
  }
  return parts.join(", ")
}
