/**
 * What every open dashboard page shows live: counts per queue and state, the
 * cluster view, and completed / failed jobs per second over the last five
 * minutes. The throughput window is kept in memory and refreshed with the
 * last few seconds only, so each refresh reads the jobs of those seconds.
 */
import type { ClusterView } from "../../Cluster.ts"
import type { Counts } from "../../Jobs.ts"
import type { ThroughputRow } from "../sql/throughput.ts"

/** Seconds of throughput history each chart shows. */
export const windowSeconds = 300

export interface Series {
  readonly completed: ReadonlyArray<number>
  readonly failed: ReadonlyArray<number>
}

export interface Snapshot {
  /** The database's clock when the snapshot was taken. */
  readonly now: Date
  readonly counts: Counts
  readonly cluster: ClusterView
  /**
   * Per queue, one number per second of the window, oldest first, ending with the last whole second.
   * Maps, not objects, here and in what pages receive: a queue may be named `__proto__` or
   * `constructor`, and a browser's `JSON.parse` can misread keys with escapes (`jsonParse.ts`).
   */
  readonly throughput: ReadonlyMap<string, Series>
  /** Cluster-wide limits of the queues that have any, in words. */
  readonly limits: ReadonlyMap<string, string>
  /** Changes whenever a count does: pages reload their job lists when it changes. */
  readonly version: string
}

interface Bucket {
  completed: number
  failed: number
}

/** Per queue and second, the completed and failed jobs of the last `windowSeconds`. */
export class ThroughputWindow {
  private readonly buckets = new Map<string, Map<number, Bucket>>()
  private lastSecond: number | undefined

  /** How far back the next refresh must read: the whole window at first, then what changed since. */
  lookback(nowMillis: number, lastRefreshMillis: number | undefined): number {
    if (this.lastSecond === undefined || lastRefreshMillis === undefined) return windowSeconds
    // Acks commit a little after the time they record: re-read a few seconds already seen.
    return Math.min(windowSeconds, Math.ceil((nowMillis - lastRefreshMillis) / 1000) + 10)
  }

  /** Replaces the seconds the rows cover (all but the first, partial one) with the rows. */
  apply(rows: ReadonlyArray<ThroughputRow>, lookback: number): void {
    const now = rows[0]?.now
    if (now === undefined) return
    const nowSecond = Math.floor(now.getTime() / 1000)
    const from = nowSecond - lookback + 1
    for (const seconds of this.buckets.values()) {
      for (const second of seconds.keys()) {
        if (second >= from || second < nowSecond - windowSeconds) seconds.delete(second)
      }
    }
    for (const row of rows) {
      if (row.queue === "" || row.second < from) continue
      const seconds = this.buckets.get(row.queue) ?? new Map<number, Bucket>()
      seconds.set(row.second, { completed: row.completed, failed: row.failed })
      this.buckets.set(row.queue, seconds)
    }
    this.lastSecond = nowSecond
  }

  /** The series of every queue named, ending with the last whole second before `now`. */
  series(queues: Iterable<string>): Map<string, Series> {
    const end = (this.lastSecond ?? 0) - 1
    const out = new Map<string, Series>()
    for (const queue of new Set([...queues, ...this.buckets.keys()])) {
      const seconds = this.buckets.get(queue)
      const completed: Array<number> = []
      const failed: Array<number> = []
      for (let second = end - windowSeconds + 1; second <= end; second++) {
        const bucket = seconds?.get(second)
        completed.push(bucket?.completed ?? 0)
        failed.push(bucket?.failed ?? 0)
      }
      out.set(queue, { completed, failed })
    }
    return out
  }
}

/** A short fingerprint of the counts. */
export const countsVersion = (counts: Counts): string => {
  let hash = 0
  for (const { queue, states } of counts.queues) {
    const text = `${queue}:${Object.values(states).join(",")};`
    for (let i = 0; i < text.length; i++) hash = (Math.imul(hash, 31) + text.charCodeAt(i)) | 0
  }
  return (hash >>> 0).toString(36)
}
