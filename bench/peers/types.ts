/**
 * What the comparison benchmark (`npm run bench -- --peers`) needs from each
 * job queue it drives: prepare a fresh namespace, insert one or many jobs,
 * consume them with a concurrency limit, and say when every job is acked.
 *
 * Every job carries its own number `i` (and, for the latency workload, the
 * time `t` just before its insert), so the benchmark can check exactly-once
 * execution from what the handlers saw, whatever ids the queue assigns.
 */

/** The payload of every benchmark job. */
export interface JobData {
  readonly i: number
  /** Epoch milliseconds just before the insert (latency workload only). */
  readonly t?: number
}

export interface ConsumeOptions {
  /** At most this many jobs run at once in this process. */
  readonly limit: number
  /** True for the latency workload: make idle polling slow, so only notifications wake the consumer. */
  readonly latency: boolean
  /** Called once for every job the queue hands to a handler. */
  readonly onRun: (job: JobData) => void
}

export interface Consumer {
  /** Stops consuming gracefully (running jobs finish and are acked) and waits for it. */
  readonly stop: () => Promise<void>
}

/** One connection to a prepared queue namespace. */
export interface PeerQueue {
  readonly insertOne: (job: JobData) => Promise<void>
  /** Inserts the jobs with the library's bulk insert (one call). */
  readonly insertMany: (jobs: ReadonlyArray<JobData>) => Promise<void>
  readonly consume: (options: ConsumeOptions) => Promise<Consumer>
  /** How many jobs the namespace holds in any state (for the insert workloads). */
  readonly count: () => Promise<number>
  /** True when `expected` jobs are acked and none is left waiting or running. */
  readonly settled: (expected: number) => Promise<boolean>
  readonly close: () => Promise<void>
}

export interface Peer {
  /** The name in the result table. */
  readonly name: string
  /** The short name used by BENCH_PEERS and by the child processes. */
  readonly key: string
  /** How the library is configured here, for the notes under the table. */
  readonly setup: string
  /** Runs the drain workloads only (a variant whose inserts are another peer's). */
  readonly drainsOnly?: boolean
  /** Drops and recreates the namespace `schema` with the library's own migrations. */
  readonly prepare: (url: string, schema: string) => Promise<void>
  readonly open: (url: string, schema: string) => Promise<PeerQueue>
  readonly drop: (url: string, schema: string) => Promise<void>
}

/** Epoch milliseconds with sub-millisecond precision. */
export const epochMillis = (): number => performance.timeOrigin + performance.now()
