/**
 * Jobs a producer claimed ahead of its free slots, started as slots free up
 * (in the order claimed: a job of higher priority that arrives later waits
 * behind at most about a second of work),
 * so a busy queue of short jobs costs one claim statement per batch instead
 * of one per finished job. Claiming ahead happens only while the queue's jobs
 * are short (an average under `shortJobMillis`), and only about a second of
 * work (at most 1,000 jobs, and at least `limit` below that): a node never
 * hoards long jobs that an idle node could run. Never for a queue with
 * cluster-wide limits: a job claimed ahead would hold global capacity, or
 * count against a rate window, before it starts.
 *
 * One claim takes at most `maxClaim` jobs (more only when more slots than
 * that are free: they all start at once), half of what may wait here. When a
 * claim comes back full and there is room for another, the producer sends
 * that one before starting the batch it got, so the claim and the batch
 * overlap instead of taking turns (short jobs run faster than a claim comes
 * back).
 */
import type { Job } from "../Job.ts"

/** Jobs shorter than this on average are claimed ahead. */
export const shortJobMillis = 100

/** Claim ahead about this much work (at the average job's duration)... */
const aheadMillis = 1_000

/** ...but never more jobs than this... */
const maxAhead = 1_000

/** ...claimed at most this many at a time (a statement's worth; half of `maxAhead`, so two overlap). */
export const maxClaim = 500

/** Taken jobs left at the front of the array before it is cut down (see `make`). */
const compactAfter = 64

export interface ClaimBuffer {
  /**
   * How many more jobs to claim now, given the slots in use; 0 when a claim is
   * not worth it yet. With `claimAhead` false, only the free slots (for a
   * queue with cluster-wide limits).
   */
  readonly demand: (limit: number, running: number, claimAhead?: boolean) => number
  /**
   * Adds the jobs of a fetch behind those already waiting (first in, first
   * out, so the jobs a fetch meant to start at once are the ones that do),
   * with the ids of those claimed ahead.
   */
  readonly add: (jobs: ReadonlyArray<Job>, ahead: ReadonlySet<number>) => void
  /** Takes up to `n` jobs to start. */
  readonly take: (n: number) => ReadonlyArray<Job>
  /** Takes every waiting job (to give them back), saying which were claimed ahead. */
  readonly takeAll: () => ReadonlyArray<{ readonly job: Job; readonly ahead: boolean }>
  /** Drops a job (it was cancelled): the job and whether it was claimed ahead, if it was here. */
  readonly forget: (id: number) => { readonly job: Job; readonly ahead: boolean } | undefined
  /** The ids of the waiting jobs. */
  readonly ids: () => ReadonlyArray<number>
  readonly size: () => number
  /** Records how long a finished job took. */
  readonly recordDuration: (millis: number) => void
}

export const make = (): ClaimBuffer => {
  // The waiting jobs are `waiting[head..]`: taking from the front moves `head` (no `shift` per
  // job); the array is cut down to the waiting jobs once the taken ones are most of it.
  let waiting: Array<Job> = []
  let head = 0
  const claimedAhead = new Set<number>()
  // Unknown until a job has finished: nothing is claimed ahead before that.
  let averageMillis = Number.POSITIVE_INFINITY

  const count = () => waiting.length - head
  const compact = () => {
    if (head === waiting.length) {
      waiting.length = 0
      head = 0
    } else if (head >= compactAfter && head * 2 >= waiting.length) {
      waiting = waiting.slice(head)
      head = 0
    }
  }

  // Enough to keep the slots busy for about `aheadMillis`, at least `limit` and at most `maxAhead`.
  const ahead = (limit: number) =>
    averageMillis >= shortJobMillis
      ? 0
      : Math.min(maxAhead, Math.max(limit, Math.floor((limit * aheadMillis) / Math.max(averageMillis, 1))))

  return {
    demand: (limit, running, claimAhead = true) => {
      const free = limit - running
      const size = count()
      if (!claimAhead) return Math.max(0, free - size)
      const pipeline = limit + ahead(limit)
      const want = pipeline - running - size
      if (want <= 0) return 0
      // One claim's worth, or every free slot when there are more of those (they all start at once).
      const claim = Math.min(want, Math.max(maxClaim, free))
      // Idle slots with nothing waiting: claim at once. Otherwise wait until a quarter of the
      // pipeline (running plus waiting) is empty, so each claim is worth a round trip, while
      // what is left covers the claim's own round trip (refilling at half empty, short jobs
      // ran out while the claim was on its way).
      if (free > 0 && size === 0) return claim
      return want >= Math.max(1, Math.min(maxClaim, Math.ceil(pipeline / 4))) ? claim : 0
    },
    add: (jobs, ahead) => {
      waiting.push(...jobs)
      for (const id of ahead) claimedAhead.add(id)
    },
    take: (n) => {
      if (n <= 0 || head === waiting.length) return []
      const jobs = n === 1 ? [waiting[head]!] : waiting.slice(head, head + n)
      head += jobs.length
      for (const job of jobs) claimedAhead.delete(job.id)
      compact()
      return jobs
    },
    takeAll: () => {
      const all = waiting.slice(head).map((job) => ({ job, ahead: claimedAhead.has(job.id) }))
      waiting = []
      head = 0
      claimedAhead.clear()
      return all
    },
    forget: (id) => {
      const index = waiting.findIndex((job, at) => at >= head && job.id === id)
      if (index === -1) return undefined
      const [job] = waiting.splice(index, 1)
      const ahead = claimedAhead.delete(id)
      return { job: job!, ahead }
    },
    ids: () => waiting.slice(head).map((job) => job.id),
    size: count,
    recordDuration: (millis) => {
      averageMillis = Number.isFinite(averageMillis) ? averageMillis * 0.9 + millis * 0.1 : millis
    }
  }
}
