/**
 * Counts of jobs per queue and state, cheap on a table of millions:
 * the live states (available, executing, scheduled, retryable) are counted
 * exactly through their partial indexes, whose size is the backlog, not the
 * table. The other states (completed, discarded, cancelled, suspended) have
 * no index that leads with the queue, so counting them means reading them
 * all: that is done only when the table is small (fewer than `exactBelow`
 * rows by the planner's estimate) or when asked for. Otherwise they are
 * estimated from the planner's statistics (kept fresh by autovacuum's
 * ANALYZE): a queue's share of the table, less its exact live jobs, split by
 * the share of each of these states, in `oban_jobs` and in the finished table
 * (migration 0016) apart.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { JobState } from "../Job.ts"
import { type CountRow, countLive, countRest, type TableStatistics, tableStatistics } from "./sql/jobQueries.ts"

/** A count of 0 in every state: a queue without jobs. */
export const noJobs = (): Record<JobState, number> =>
  Object.fromEntries(JobState.literals.map((state) => [state, 0])) as Record<JobState, number>

export const liveStates: ReadonlyArray<JobState> = ["available", "executing", "scheduled", "retryable"]
export const restStates: ReadonlyArray<JobState> = ["completed", "discarded", "cancelled", "suspended"]

export interface RawCounts {
  readonly rows: ReadonlyArray<CountRow>
  readonly estimated: boolean
}

export const countJobs = (
  sql: SqlClient,
  prefix: string,
  options: { readonly exact: boolean; readonly exactBelow: number }
): Effect.Effect<RawCounts, SqlError> =>
  Effect.gen(function*() {
    const [live, hot, finished] = yield* Effect.all([
      countLive(sql, prefix),
      tableStatistics(sql, prefix, "oban_jobs"),
      tableStatistics(sql, prefix, "oban_jobs_finished")
    ], { concurrency: 3 })
    // A finished table not analyzed yet (a fresh migration) counts as empty: it starts empty.
    const rows = hot.rows + Math.max(0, finished.rows)
    if (options.exact || hot.rows < 0 || rows < options.exactBelow) {
      return { rows: [...live, ...(yield* countRest(sql, prefix))], estimated: false }
    }
    // The finished table holds no live job, but a queue with live jobs gets its share of it as in `oban_jobs`
    // (queues too rare for the planner's list of common values are known only from their live jobs).
    const fromFinished = finished.rows > 0 ? estimateRest(finished, live.map((row) => ({ ...row, count: 0 }))) : []
    return { rows: [...live, ...sumCounts([...estimateRest(hot, live), ...fromFinished])], estimated: true }
  })

/** Rows of the same queue and state added up. */
const sumCounts = (rows: ReadonlyArray<CountRow>): ReadonlyArray<CountRow> => {
  const sums = new Map<string, CountRow>()
  for (const row of rows) {
    const key = `${row.state}\u0000${row.queue}`
    const before = sums.get(key)
    sums.set(key, before === undefined ? row : { ...row, count: before.count + row.count })
  }
  return [...sums.values()]
}

/** The rest-state counts per queue from the planner's statistics and the exact live counts. */
export const estimateRest = (stats: TableStatistics, live: ReadonlyArray<CountRow>): ReadonlyArray<CountRow> => {
  const stateShare = new Map(stats.states.map((entry) => [entry.value, entry.frequency]))
  const restShare = restStates.reduce((sum, state) => sum + (stateShare.get(state) ?? 0), 0)
  if (restShare === 0) return []
  const liveByQueue = new Map<string, number>()
  for (const row of live) liveByQueue.set(row.queue, (liveByQueue.get(row.queue) ?? 0) + row.count)
  const common = new Map(stats.queues.map((entry) => [entry.value, entry.frequency]))
  const distinct = stats.distinctQueues >= 0 ? stats.distinctQueues : -stats.distinctQueues * stats.rows
  const uncommonShare = Math.max(0, 1 - stats.queues.reduce((sum, entry) => sum + entry.frequency, 0)) /
    Math.max(1, distinct - stats.queues.length)
  const rows: Array<CountRow> = []
  for (const queue of new Set([...common.keys(), ...liveByQueue.keys()])) {
    const total = stats.rows * (common.get(queue) ?? uncommonShare)
    const rest = Math.max(0, total - (liveByQueue.get(queue) ?? 0))
    for (const state of restStates) {
      const count = Math.round(rest * (stateShare.get(state) ?? 0) / restShare)
      if (count > 0) rows.push({ queue, state, count })
    }
  }
  return rows
}
