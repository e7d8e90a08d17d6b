/**
 * The demo's live status: jobs per queue and state, and throughput, redrawn
 * in place on a terminal or printed as lines elsewhere (CI).
 */
import { Console, Effect } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"

const states = ["available", "scheduled", "executing", "retryable", "completed", "cancelled", "discarded"] as const

export interface Snapshot {
  readonly byQueue: Record<string, Record<string, number>>
  readonly completed: number
  readonly pending: number
}

export const snapshot = (sql: SqlClient, prefix: string) =>
  Effect.map(
    sql<{ queue: string; state: string; n: number }>`
      SELECT queue, state::text, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY queue, state`,
    (rows): Snapshot => {
      const byQueue: Record<string, Record<string, number>> = {}
      let completed = 0
      let pending = 0
      for (const row of rows) {
        byQueue[row.queue] = { ...byQueue[row.queue], [row.state]: row.n }
        if (row.state === "completed") completed += row.n
        if (["available", "scheduled", "executing", "retryable"].includes(row.state)) pending += row.n
      }
      return { byQueue, completed, pending }
    }
  )

export const render = (snap: Snapshot, jobsPerSecond: number, elapsedSeconds: number): string => {
  const header = ["queue".padEnd(10), ...states.map((s) => s.padStart(10))].join(" ")
  const lines = Object.keys(snap.byQueue).sort().map((queue) =>
    [queue.padEnd(10), ...states.map((s) => String(snap.byQueue[queue]![s] ?? 0).padStart(10))].join(" ")
  )
  return [
    `effect-oban demo   t=${elapsedSeconds.toFixed(1)}s   ${Math.round(jobsPerSecond)} jobs/s   pending=${snap.pending}`,
    header,
    ...lines
  ].join("\n")
}

export const show = (text: string, live: boolean) =>
  live ? Console.log(`\x1b[H\x1b[2J${text}`) : Console.log(`${text}\n`)
