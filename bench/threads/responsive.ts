/**
 * Workload 2 of `npm run bench:threads`: while one node's CPU-bound queue is
 * busy (main thread or threads), a second process inserts a no-op "ping" every
 * `everyMs` into the node's `ping` queue (limit 10). Measured: each ping's
 * insert-to-start latency (in the node), and from triggers on `oban_producers`
 * and `oban_peers`, every heartbeat and lease renewal the node wrote, with the
 * server's clock: their worst gap shows how late the blocked node was. Jobs
 * with a `rescued` errors entry would mean the node looked dead.
 */
import { Deferred, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { spawn } from "node:child_process"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { checkExactlyOnce, type Latency, latencyOf, pgLayer, startNode, waitUntil, withSchema } from "../common.ts"
import { cpuQueue, type HashWork, makePing, pingQueue } from "./cpu.ts"
import { insertHashJobs, limitOf, type Variant, workerOf } from "./drain.ts"

const inserterPath = fileURLToPath(new URL("./inserter.ts", import.meta.url))

/** The node's schedule in this workload: short, so that a few seconds show several beats. */
export const heartbeatMs = 1_000
export const leaseRenewMs = 1_000

export interface ResponsiveResult {
  readonly variant: Variant
  readonly pings: number
  readonly latency: Latency
  /** Worst gap between two heartbeats of one producer, and between two lease renewals (ms, server clock). */
  readonly heartbeatGapMs: number
  readonly leaseGapMs: number
  /** The worst delay of the node's event loop while the pings ran (ms, `monitorEventLoopDelay`). */
  readonly loopDelayMs: number
  readonly rescued: number
  readonly cpuJobsDone: number
  readonly problems: ReadonlyArray<string>
}

/** Spawns the inserter; resolves `ready` when it is connected; `go` starts it; `done` when it has inserted all. */
const spawnInserter = (url: string, prefix: string, pings: number, everyMs: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [inserterPath, prefix, String(pings), String(everyMs)], {
        env: { ...process.env, BENCH_DATABASE_URL: url },
        stdio: ["pipe", "pipe", "inherit"]
      })
      const exited = new Promise<number | string | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)))
      const said = (word: string) =>
        new Promise<void>((resolve, reject) => {
          createInterface({ input: child.stdout }).on("line", (line) => line === word && resolve())
          void exited.then((code) => reject(new Error(`the inserter exited (${code}) before it said ${word}`)))
        })
      const ready = said("ready")
      const done = said("done")
      ready.catch(() => {})
      done.catch(() => {})
      return {
        child,
        ready: Effect.tryPromise({ try: () => ready, catch: (error) => error as Error }),
        go: Effect.sync(() => void child.stdin.write("go\n")),
        done: Effect.tryPromise({ try: () => done, catch: (error) => error as Error })
      }
    }),
    ({ child }) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  )

/** A side table and triggers that record every write of a heartbeat or a lease, with the server's clock. */
const recordBeats = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const schema = `"${prefix}"`
    yield* sql.unsafe(`CREATE TABLE ${schema}.bench_beats (kind text NOT NULL, key text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`)
    yield* sql.unsafe(`CREATE FUNCTION ${schema}.bench_beat() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ${schema}.bench_beats (kind, key) VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0]);
        RETURN NULL;
      END $$`)
    yield* sql.unsafe(`CREATE TRIGGER bench_beat AFTER INSERT OR UPDATE ON ${schema}.oban_producers
      FOR EACH ROW EXECUTE FUNCTION ${schema}.bench_beat('id')`)
    yield* sql.unsafe(`CREATE TRIGGER bench_beat AFTER INSERT OR UPDATE ON ${schema}.oban_peers
      FOR EACH ROW EXECUTE FUNCTION ${schema}.bench_beat('name')`)
  })

/** The server's clock, to bound the window of the pings. */
const serverNow = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ now: Date }>`SELECT clock_timestamp() AS now`
  return row!.now
})

/** The worst gap (ms) between consecutive writes of one row, per table, for writes that ended a gap inside the window. */
const worstGaps = (prefix: string, from: Date, to: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ kind: string; gap: number | null }>`
      SELECT kind, max(gap)::float8 AS gap FROM (
        SELECT kind, at, extract(epoch FROM at - lag(at) OVER (PARTITION BY kind, key ORDER BY at)) * 1000 AS gap
        FROM ${sql(prefix)}.bench_beats
      ) AS g WHERE at > ${from} AND at <= ${to} GROUP BY kind`
    const gap = (kind: string) => rows.find((row) => row.kind === kind)?.gap ?? Number.NaN
    return { heartbeat: gap("oban_producers"), lease: gap("oban_peers") }
  })

/** Completed jobs of the CPU-bound queue. */
const cpuCompleted = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE queue = ${cpuQueue} AND state = 'completed'`
    return row?.n ?? 0
  })

const rescuedCount = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE errors::text LIKE '%stopped heart-beating%'`
    return row?.n ?? 0
  })

export const responsive = (url: string, variant: Variant, options: {
  readonly cpuJobs: number
  readonly work: HashWork
  readonly pings: number
  readonly everyMs: number
}) => {
  const prefix = `bench_threads_ping_${variant.idle === true ? "idle" : variant.size ?? 0}`
  return withSchema(
    prefix,
    Effect.scoped(Effect.gen(function*() {
      yield* recordBeats(prefix)
      yield* insertHashJobs(variant, options.cpuJobs, options.work)
      const inserter = yield* spawnInserter(url, prefix, options.pings, options.everyMs)
      yield* inserter.ready

      const latencies: Array<number> = []
      const runs = new Map<number, number>()
      const allRan = yield* Deferred.make<void>()
      const ping = makePing((id, ms) =>
        Effect.suspend(() => {
          runs.set(id, (runs.get(id) ?? 0) + 1)
          latencies.push(ms)
          return latencies.length === options.pings ? Effect.asVoid(Deferred.succeed(allRan, undefined)) : Effect.void
        })
      )
      const node = yield* startNode({
        prefix,
        node: "bench-threads",
        queues: { [cpuQueue]: limitOf(variant), [pingQueue]: 10 },
        workers: [workerOf(variant), ping],
        ...(variant.size === undefined ? {} : { threads: { size: variant.size } }),
        heartbeatInterval: `${heartbeatMs} millis`,
        leader: { ttl: "5 seconds", renewInterval: `${leaseRenewMs} millis` },
        rescuer: { rescueAfter: "5 seconds", interval: "1 second" },
        shutdownGracePeriod: "1 second"
      })
      // The CPU-bound queue is busy (and the threads up) once a few of its jobs are done.
      if (options.cpuJobs > 0) yield* waitUntil(Effect.map(cpuCompleted(prefix), (n) => n >= 2 * limitOf(variant)), { every: "20 millis", timeout: "60 seconds" })
      const cpuBefore = yield* cpuCompleted(prefix)
      const loop = monitorEventLoopDelay({ resolution: 5 })
      loop.enable()
      const from = yield* serverNow
      yield* inserter.go
      yield* inserter.done
      const finished = yield* Deferred.await(allRan).pipe(Effect.timeout("60 seconds"), Effect.isSuccess)
      loop.disable()
      const to = yield* serverNow
      const cpuJobsDone = (yield* cpuCompleted(prefix)) - cpuBefore
      const rescued = yield* rescuedCount(prefix)
      yield* node.stop
      const gaps = yield* worstGaps(prefix, from, to)
      const sql = yield* SqlClient
      const pingIds = (yield* sql<{ id: number }>`
        SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all WHERE queue = ${pingQueue}`).map((row) => row.id)
      const problems = [
        ...(finished ? [] : [`only ${latencies.length} of ${options.pings} pings ran within 60 s`]),
        ...checkExactlyOnce(runs, pingIds),
        ...(rescued > 0 ? [`${rescued} of the node's own jobs were rescued`] : [])
      ]
      const result: ResponsiveResult = {
        variant,
        pings: latencies.length,
        latency: latencyOf(latencies),
        heartbeatGapMs: gaps.heartbeat,
        leaseGapMs: gaps.lease,
        loopDelayMs: loop.max / 1e6,
        rescued,
        cpuJobsDone,
        problems
      }
      return result
    }))
  ).pipe(Effect.provide(pgLayer(url, 10)))
}
