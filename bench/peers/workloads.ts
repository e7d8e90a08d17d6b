/**
 * The comparison's workloads for a peer queue, the same shapes as
 * effect-oban's own (bench/workloads.ts, bench/multiprocess.ts): W1 2,000
 * single inserts, W2 50,000 jobs in bulk inserts of 1,000, W3a/W3b a drain
 * of 20,000 no-op jobs (BENCH_DRAIN_JOBS) at limit 10 / 50, W3c the same drain by two OS
 * processes at limit 50 each, W4 insert-to-start latency of 500 jobs
 * inserted 20 ms apart into an idle consumer. Every drain checks that each
 * job ran exactly once and that the queue says all of them are acked.
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { analyzeBacklog, cpuMeter, drainJobs, latencyOf, type Measurement } from "../common.ts"
import { query } from "./sql.ts"
import { epochMillis, type JobData, type Peer, type PeerQueue } from "./types.ts"

const drainTimeoutMs = 120_000
const latencyJobs = 500
const latencySpacingMs = 20

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const until = async (condition: () => Promise<boolean> | boolean, everyMs: number, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > deadline) return false
    await sleep(everyMs)
  }
  return true
}

const range = (from: number, n: number): Array<number> => Array.from({ length: n }, (_, k) => from + k)

/** Each of 0..expected-1 ran exactly once, and nothing else ran. */
export const checkRuns = (ran: Iterable<number>, expected: number): Array<string> => {
  const runs = new Map<number, number>()
  let total = 0
  for (const i of ran) {
    runs.set(i, (runs.get(i) ?? 0) + 1)
    total++
  }
  const problems: Array<string> = []
  const twice = Array.from(runs).filter(([, n]) => n > 1)
  if (twice.length > 0) problems.push(`${twice.length} jobs ran more than once (e.g. job ${twice[0]![0]} ran ${twice[0]![1]} times)`)
  const missing = range(0, expected).filter((i) => !runs.has(i))
  if (missing.length > 0) problems.push(`${missing.length} jobs never ran (e.g. job ${missing[0]})`)
  if (total !== expected) problems.push(`${total} runs in total, expected ${expected}`)
  return problems
}

const insertBulk = async (queue: PeerQueue, total: number, batch: number) => {
  for (let start = 0; start < total; start += batch) {
    await queue.insertMany(range(start, Math.min(batch, total - start)).map((i) => ({ i })))
  }
}

/** Prepares a fresh schema, opens the queue, runs `body`, and always closes and drops again. */
const withQueue = async (peer: Peer, url: string, schema: string, body: (queue: PeerQueue) => Promise<Measurement>) => {
  await peer.prepare(url, schema)
  try {
    const queue = await peer.open(url, schema)
    try {
      return await body(queue)
    } finally {
      await queue.close()
    }
  } finally {
    await peer.drop(url, schema)
  }
}

const checkCount = async (queue: PeerQueue, expected: number) => {
  const n = await queue.count()
  return n === expected ? [] : [`expected ${expected} jobs in the queue, found ${n}`]
}

/** Times `insert` of `jobs` jobs, with this process's CPU and the rest of the machine's per job as the note. */
const timedInserts = async (jobs: number, insert: () => Promise<void>) => {
  const meter = cpuMeter()
  const start = performance.now()
  await insert()
  const wallMs = performance.now() - start
  return { wallMs, note: meter.stop().note(jobs) }
}

export const w1 = (peer: Peer, url: string) =>
  withQueue(peer, url, `bench_peer_${peer.key}_w1`, async (queue) => {
    const timed = await timedInserts(2_000, async () => {
      for (const i of range(0, 2_000)) await queue.insertOne({ i })
    })
    return { ...timed, problems: await checkCount(queue, 2_000) }
  })

export const w2 = (peer: Peer, url: string) =>
  withQueue(peer, url, `bench_peer_${peer.key}_w2`, async (queue) => {
    const timed = await timedInserts(50_000, () => insertBulk(queue, 50_000, 1_000))
    return { ...timed, problems: await checkCount(queue, 50_000) }
  })

/** W3a/W3b: one consumer with `limit`, timed from its start until the queue says all jobs are acked. */
export const drain = (limit: number) => (peer: Peer, url: string) =>
  withQueue(peer, url, `bench_peer_${peer.key}_w3`, async (queue) => {
    await insertBulk(queue, drainJobs, 1_000)
    if (analyzeBacklog) await query(url, "ANALYZE")
    const ran: Array<number> = []
    const start = performance.now()
    const meter = cpuMeter()
    const consumer = await queue.consume({ limit, latency: false, onRun: (job) => void ran.push(job.i) })
    const allRan = await until(() => ran.length >= drainJobs, 5, drainTimeoutMs)
    const ranMs = performance.now() - start
    const settled = await until(() => queue.settled(drainJobs), 20, drainTimeoutMs)
    const wallMs = performance.now() - start
    const cpu = meter.stop()
    await consumer.stop()
    const problems = [
      ...(allRan ? [] : [`only ${ran.length} of ${drainJobs} jobs ran within ${drainTimeoutMs / 1000} s`]),
      ...(settled ? [] : ["the queue did not report every job acked"]),
      ...checkRuns(ran, drainJobs)
    ]
    const note = `all ran after ${(ranMs / 1000).toFixed(2)} s; ${cpu.note(drainJobs)}`
    return { wallMs: settled ? wallMs : Number.NaN, note, problems }
  })

const childPath = fileURLToPath(new URL("./child.ts", import.meta.url))

interface Child {
  readonly ready: Promise<void>
  readonly ran: Promise<ReadonlyArray<number>>
  readonly send: (line: string) => void
  readonly kill: () => void
}

const spawnChild = (peer: Peer, url: string, schema: string, limit: number): Child => {
  const child = spawn(process.execPath, [childPath, peer.key, schema, String(limit)], {
    env: { ...process.env, BENCH_DATABASE_URL: url },
    stdio: ["pipe", "pipe", "inherit"]
  })
  const exited = new Promise<number | string | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)))
  let onReady = () => {}
  let onRan = (_: ReadonlyArray<number>) => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  const ran = new Promise<ReadonlyArray<number>>((resolve) => (onRan = resolve))
  createInterface({ input: child.stdout }).on("line", (line) => {
    if (line === "ready") onReady()
    else if (line.startsWith("ran ")) onRan(JSON.parse(line.slice(4)) as ReadonlyArray<number>)
  })
  const died = exited.then((code) => Promise.reject(new Error(`${peer.key} child exited (${code}) early`)))
  died.catch(() => {})
  return {
    ready: Promise.race([ready, died]),
    ran: Promise.race([ran, died]),
    send: (line) => void child.stdin.write(`${line}\n`),
    kill: () => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  }
}

/**
 * A drain of `jobs` jobs by `processes` child processes, each consuming with
 * `limit`; timed from `go` until the queue says all are acked.
 */
export const drainProcesses = (options: { readonly processes: number; readonly limit: number; readonly jobs: number }) =>
(peer: Peer, url: string) =>
  withQueue(peer, url, `bench_peer_${peer.key}_w3c`, async (queue) => {
    await insertBulk(queue, options.jobs, 1_000)
    if (analyzeBacklog) await query(url, "ANALYZE")
    const schema = `bench_peer_${peer.key}_w3c`
    const children = range(0, options.processes).map(() => spawnChild(peer, url, schema, options.limit))
    try {
      await Promise.all(children.map((child) => child.ready))
      const start = performance.now()
      for (const child of children) child.send("go")
      const settled = await until(() => queue.settled(options.jobs), 20, drainTimeoutMs)
      const wallMs = performance.now() - start
      for (const child of children) child.send("stop")
      const ran = await Promise.all(children.map((child) => child.ran))
      const problems = [
        ...(settled ? [] : [`the queue did not report every job acked within ${drainTimeoutMs / 1000} s`]),
        ...checkRuns(ran.flat(), options.jobs)
      ]
      return { wallMs: settled ? wallMs : Number.NaN, note: `jobs per process ${ran.map((r) => r.length).join("/")}`, problems }
    } finally {
      for (const child of children) child.kill()
    }
  })

/** W3c: two child processes, each consuming with `limit`. */
export const drainTwoProcesses = (limit: number) => drainProcesses({ processes: 2, limit, jobs: drainJobs })

/** W4: an idle consumer (limit 10, slow polling) and 500 single inserts 20 ms apart. */
export const latency = (peer: Peer, url: string) =>
  withQueue(peer, url, `bench_peer_${peer.key}_w4`, async (queue) => {
    const samples: Array<number> = []
    const ran: Array<number> = []
    const consumer = await queue.consume({
      limit: 10,
      latency: true,
      onRun: (job: JobData) => {
        samples.push(epochMillis() - (job.t ?? Number.NaN))
        ran.push(job.i)
      }
    })
    await sleep(500)
    const start = performance.now()
    for (const i of range(0, latencyJobs)) {
      const wait = start + i * latencySpacingMs - performance.now()
      if (wait > 0) await sleep(wait)
      await queue.insertOne({ i, t: epochMillis() })
    }
    const allRan = await until(() => ran.length >= latencyJobs, 5, 15_000)
    const wallMs = performance.now() - start
    await consumer.stop()
    const problems = [
      ...(allRan ? [] : [`only ${ran.length} of ${latencyJobs} jobs ran within 15 s of the last insert`]),
      ...checkRuns(ran, latencyJobs)
    ]
    return { wallMs, latency: latencyOf(samples), problems }
  })
