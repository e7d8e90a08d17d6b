/**
 * W3c: the drain of `drainJobs` jobs (BENCH_DRAIN_JOBS, default 20,000) with two OS processes (bench/drainer.ts), each
 * running one node with queue limit 50. The nodes start paused; the timer
 * starts when their producers have all registered, just before a resume goes
 * out (`Oban.resumeQueue` for every node, from a control node started
 * before the timer), and stops when
 * no job is left waiting or running. Then the children are stopped with
 * SIGTERM and the ids they recorded are checked for exactly-once execution.
 */
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import {
  analyzeIfAsked,
  checkExactlyOnce,
  checkJobsTable,
  checkNoJobsLeft,
  clock,
  insertNoopJobs,
  nothingLeft,
  pgLayer,
  range,
  startNode,
  waitUntil,
  withSchema,
  type Workload
} from "./common.ts"

const drainerPath = fileURLToPath(new URL("./drainer.ts", import.meta.url))

interface Drainer {
  readonly label: string
  /** Succeeds once the child's node is running (its queue paused). */
  readonly ready: Effect.Effect<void, Error>
  /** Sends SIGTERM and waits for the child to exit; returns its exit code or signal. */
  readonly terminate: Effect.Effect<number | string | null>
}

/** Spawns a drainer; a child still running when the scope closes is killed. */
const spawnDrainer = (url: string, prefix: string, limit: number, label: string, deleteCompleted: boolean) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [drainerPath, prefix, String(limit), label, deleteCompleted ? "delete" : "keep"], {
        env: { ...process.env, BENCH_DATABASE_URL: url },
        stdio: ["ignore", "pipe", "inherit"]
      })
      const exited = new Promise<number | string | null>((resolve) => {
        child.once("exit", (code, signal) => resolve(code ?? signal))
      })
      const ready = new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stdout }).on("line", (line) => {
          if (line === "ready") resolve()
        })
        void exited.then((code) => reject(new Error(`drainer ${label} exited (${code}) before it was ready`)))
      })
      ready.catch(() => {})
      const drainer: Drainer = {
        label,
        ready: Effect.tryPromise({ try: () => ready, catch: (error) => error as Error }),
        terminate: Effect.andThen(Effect.sync(() => child.kill("SIGTERM")), Effect.promise(() => exited))
      }
      return { child, drainer }
    }),
    ({ child }) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  ).pipe(Effect.map(({ drainer }) => drainer))

/** True once `count` producers of the `default` queue have registered (they fetch only then). */
const producersRegistered = (prefix: string, count: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers WHERE queue = 'default'`
    return (row?.n ?? 0) >= count
  })

/**
 * A node of our own that runs no queue, through which the queue is resumed
 * on every node. Started before the timer: it is the benchmark's instrument,
 * as the peers' `go` line is, not part of the drain.
 */
const startControl = (prefix: string) => startNode({ prefix, node: "bench-control", queues: {}, workers: [] })

const jobsRecordedByChildren = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ job_id: bigint | number }>`SELECT job_id FROM ${sql(prefix)}.bench_runs`
    const runs = new Map<number, number>()
    for (const row of rows) {
      const id = Number(row.job_id)
      runs.set(id, (runs.get(id) ?? 0) + 1)
    }
    return runs
  })

/** How many jobs each node ran, e.g. `10021/9979`. */
const split = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ node: string | null; n: number }>`
      SELECT attempted_by[1] AS node, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY 1 ORDER BY 1`
    return rows.map((row) => row.n).join("/")
  })

/** Exactly-once across the children, exit codes, and the jobs table. */
const verify = (
  deleteCompleted: boolean,
  prefix: string,
  inserted: ReadonlyArray<number>,
  drainers: ReadonlyArray<Drainer>,
  exits: Option.Option<ReadonlyArray<number | string | null>>
) =>
  Effect.gen(function*() {
    const exitProblems = Option.match(exits, {
      onNone: () => ["a drainer did not exit within 30 s of SIGTERM"],
      onSome: (codes) => codes.flatMap((code, i) => code === 0 ? [] : [`drainer ${drainers[i]!.label} exited with ${code}`])
    })
    return [
      ...exitProblems,
      ...checkExactlyOnce(yield* jobsRecordedByChildren(prefix), inserted),
      ...(deleteCompleted ? yield* checkNoJobsLeft(prefix) : yield* checkJobsTable(prefix, inserted.length))
    ]
  })

export const w3c = (options: {
  readonly processes: number
  readonly limit: number
  readonly jobs: number
  /** Run the nodes with `deleteCompleted`. */
  readonly deleteCompleted?: boolean
}): Workload => ({
  name: `W3c drain, ${options.processes} processes`,
  jobs: options.jobs,
  run: (url) =>
    Effect.gen(function*() {
      const prefix = "bench_w3c"
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE ${sql(prefix)}.bench_runs (job_id bigint NOT NULL)`
      const inserted = yield* insertNoopJobs(options.jobs, 1_000)
      yield* analyzeIfAsked
      const drainers = yield* Effect.forEach(
        range(options.processes),
        (i) => spawnDrainer(url, prefix, options.limit, `${i + 1}`, options.deleteCompleted ?? false)
      )
      yield* Effect.forEach(drainers, (drainer) => drainer.ready, { concurrency: "unbounded", discard: true }).pipe(
        Effect.timeout("120 seconds")
      )
      yield* waitUntil(producersRegistered(prefix, options.processes), { every: "20 millis", timeout: "10 seconds" })
      const control = yield* startControl(prefix)
      const start = yield* clock
      yield* control.oban.resumeQueue("default")
      const finished = yield* waitUntil(nothingLeft(prefix), { every: "20 millis", timeout: "120 seconds" })
      const wallMs = (yield* clock) - start
      yield* control.stop
      const exits = yield* Effect.forEach(drainers, (drainer) => drainer.terminate, { concurrency: "unbounded" }).pipe(
        Effect.timeoutOption("30 seconds")
      )
      const problems = [
        ...(finished ? [] : ["jobs were still waiting or running 120 s after the start"]),
        ...(yield* verify(options.deleteCompleted ?? false, prefix, inserted, drainers, exits))
      ]
      return {
        wallMs: finished ? wallMs : Number.NaN,
        note: `${options.processes} nodes, limit ${options.limit} each; jobs per node ${yield* split(prefix)}`,
        problems
      }
    }).pipe(Effect.scoped, (body) => withSchema("bench_w3c", body), Effect.provide(pgLayer(url, 5)))
})
