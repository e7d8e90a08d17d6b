/**
 * A node in its own OS process, for tests that kill and restart processes.
 * Configured by environment variables; prints one JSON line per event on
 * stdout ({"event":"leader","value":true}, {"event":"ready"}), and shuts down
 * gracefully on SIGTERM.
 *
 *   DATABASE_URL  PREFIX  NODE_NAME  QUEUES (JSON)  JOB_MS (on JOB_MS_NODE only, when set)
 *   LEASE_TTL_MS  LEASE_RENEW_MS  CRON  GRACE_MS  POOL (pool size, default 10)
 *   JOB_DB_MS (each job also holds a pooled connection this long with pg_sleep)
 *   HEARTBEAT_MS  RESCUE_AFTER_MS  RESCUE_INTERVAL_MS  RECORD_CLAIM=1 (runs has a claim column)
 *   PRUNE_MS (the pruner's interval)  HELD_MS (the uninterruptible step of HeldTimed and HeldLast, default 1500)
 *   AFTER_MS (how long HeldLast goes on after its step)  HELD_TIMEOUT_MS (HeldLast's timeout, none by default)
 *   LOG_LEVEL (default Error)
 *   TEARDOWN=default runs under NodeRuntime.runMain's own teardown (else Oban.teardown)
 *   THREADS (a pool of that many threads, and the thread workers ThreadBusy and ThreadPreloaded of threadWorkers.ts)
 *   ISOLATION=process (with THREADS: the pool's slots are child processes)
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, References, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cron from "../../src/Cron.ts"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"
import { Busy, Preloaded } from "./threadWorkers.ts"

const env = (name: string): string | undefined => process.env[name]
const prefix = env("PREFIX")!
const node = env("NODE_NAME")!
const slowNode = env("JOB_MS_NODE")
const jobMillis = slowNode === undefined || slowNode === node ? Number(env("JOB_MS") ?? "0") : 0
const jobDbMillis = Number(env("JOB_DB_MS") ?? "0")
const recordClaim = env("RECORD_CLAIM") === "1"
const optionalMillis = (name: string) => env(name) === undefined ? undefined : Number(env(name))

const say = (event: string, value?: unknown) =>
  Effect.sync(() => process.stdout.write(JSON.stringify({ event, node, value }) + "\n"))

/** Records each run in `<prefix>.runs`, then works for JOB_MS; a job with a negative `n` kills its process (SIGKILL). */
export const Record = Worker.make("Record", {
  args: Schema.Struct({ n: Schema.Int }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      if (job.args.n < 0) {
        // A poison job: it kills its node, as the OOM killer or a native crash would. Its run is recorded
        // with whether it was claimed ahead (its row still shows the attempt before this one).
        const [row] = yield* sql<{ attempt: number }>`SELECT attempt FROM ${sql(prefix)}.oban_jobs WHERE id = ${job.id}`
        const ahead = row !== undefined && row.attempt < job.attempt
        yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${ahead ? `${node}:ahead` : node})`
        process.kill(process.pid, "SIGKILL")
      }
      if (recordClaim) {
        yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node, claim) VALUES (${job.id}, ${node}, ${job.attemptedBy?.[2] ?? null})`
      } else {
        yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${node})`
      }
      if (jobDbMillis > 0) yield* sql`SELECT pg_sleep(${jobDbMillis / 1000})`
      if (jobMillis > 0) yield* Effect.sleep(jobMillis)
    })
})

/**
 * Records its run, then sleeps 1.5 s (HELD_MS) inside `Effect.uninterruptible`, past its timeout of
 * 300 ms: the timeout fires in a step it cannot interrupt.
 */
export const HeldTimed = Worker.make("HeldTimed", {
  args: Schema.Struct({}),
  timeout: "300 millis",
  maxAttempts: 3,
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${node})`
      yield* Effect.uninterruptible(Effect.sleep(Number(env("HELD_MS") ?? "1500")))
    })
})

/**
 * Sleeps HELD_MS (default 1500) inside `Effect.uninterruptible` and records its run at the end of that
 * step, with no timeout; then, with AFTER_MS, sleeps that long more, interruptibly.
 */
export const HeldLast = Worker.make("HeldLast", {
  args: Schema.Struct({}),
  // With HELD_TIMEOUT_MS, a timeout (longer than the step): perform then runs in a fiber raced against it.
  ...(env("HELD_TIMEOUT_MS") === undefined ? {} : { timeout: Number(env("HELD_TIMEOUT_MS")) }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* Effect.uninterruptible(Effect.andThen(
        Effect.sleep(Number(env("HELD_MS") ?? "1500")),
        sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${node})`
      ))
      const after = env("AFTER_MS")
      if (after !== undefined) yield* Effect.sleep(Number(after))
    })
})

const leaseTtl = env("LEASE_TTL_MS")
const leaseRenew = env("LEASE_RENEW_MS")
const cron = env("CRON")
const threads = env("THREADS")

const ObanLive = Oban.layer({
  prefix,
  node,
  queues: JSON.parse(env("QUEUES") ?? "{}"),
  workers: threads === undefined ? [Record, HeldTimed, HeldLast] : [Record, HeldTimed, HeldLast, Busy, Preloaded],
  ...(threads === undefined ? {} : {
    threads: { size: Number(threads), ...(env("ISOLATION") === "process" ? { isolation: "process" as const } : {}) }
  }),
  pollInterval: "500 millis",
  ...(env("GRACE_MS") === undefined ? {} : { shutdownGracePeriod: Number(env("GRACE_MS")) }),
  ...(env("HEARTBEAT_MS") === undefined ? {} : { heartbeatInterval: Number(env("HEARTBEAT_MS")) }),
  ...(env("PRUNE_MS") === undefined ? {} : { pruner: { interval: Number(env("PRUNE_MS")) } }),
  ...(env("RESCUE_AFTER_MS") === undefined ? {} : {
    rescuer: { rescueAfter: optionalMillis("RESCUE_AFTER_MS"), interval: optionalMillis("RESCUE_INTERVAL_MS") }
  }),
  ...(leaseTtl === undefined ? {} : { leader: { ttl: Number(leaseTtl), renewInterval: Number(leaseRenew ?? 1000) } }),
  ...(cron === undefined ? {} : { crontab: [Cron.entry(cron, Record, { n: 0 }, { name: "test-cron" })] })
})

const Report = Layer.effectDiscard(Effect.gen(function*() {
  const oban = yield* Oban.Oban
  yield* Effect.forkScoped(Stream.runForEach(oban.leadership, (value) => say("leader", value)))
  yield* say("ready")
}))

const PgLive = PgClient.layer({
  url: Redacted.make(env("DATABASE_URL")!),
  maxConnections: Number(env("POOL") ?? "10"),
  applicationName: `test-node ${node}`
})

Layer.launch(Report.pipe(Layer.provideMerge(ObanLive), Layer.provide(PgLive))).pipe(
  Effect.provideService(References.MinimumLogLevel, (env("LOG_LEVEL") ?? "Error") as "Error"),
  env("TEARDOWN") === "default" ? NodeRuntime.runMain : NodeRuntime.runMain({ teardown: Oban.teardown })
)
