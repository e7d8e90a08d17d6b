/**
 * A node in its own OS process for the workflow cluster tests. Its worker,
 * `Traced`, writes a row into `<prefix>.runs` when a perform starts (job id,
 * node, clock_timestamp()), sleeps `JOB_MS` (or, for a job whose args say
 * `hang`, an hour: the node is meant to be killed meanwhile), and stamps the
 * row's end. A job started twice leaves two rows. Prints {"event":"ready"}
 * once started; SIGTERM shuts down gracefully.
 *
 * With CHAIN_KEYS (comma-separated) and CHAIN_EACH, the process also
 * appends CHAIN_EACH jobs to each chain, one insert at a time, once a row
 * appears in `<prefix>.go` (so that all processes insert at the same time).
 *
 *   DATABASE_URL  PREFIX  NODE_NAME  JOB_MS  LIMIT  CHAIN_KEYS  CHAIN_EACH
 *   HEARTBEAT_MS  RESCUE_AFTER_MS  RESCUE_INTERVAL_MS  LEASE_TTL_MS + LEASE_RENEW_MS
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, References, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Chain from "../../src/Chain.ts"
import * as Config from "../../src/Config.ts"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"
import { livenessFromEnv } from "./livenessEnv.ts"

const env = (name: string): string | undefined => process.env[name]
const prefix = env("PREFIX")!
const node = env("NODE_NAME")!
const jobMillis = Number(env("JOB_MS") ?? "0")

/** The same name and args as in the tests, which insert its jobs. */
export const Traced = Worker.make("Traced", {
  args: Schema.Struct({ n: Schema.Int, hang: Schema.optional(Schema.String) }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${node})`
      if (job.args.hang === node) yield* Effect.sleep("1 hour")
      if (jobMillis > 0) yield* Effect.sleep(jobMillis)
      yield* sql`UPDATE ${sql(prefix)}.runs SET ended_at = clock_timestamp() WHERE job_id = ${job.id} AND node = ${node}`
    })
})

const ObanLive = Oban.layer({
  prefix,
  node,
  queues: { default: Number(env("LIMIT") ?? "10") },
  workers: [Traced],
  pollInterval: "1 second",
  pruner: false,
  ...livenessFromEnv()
})

const chainKeys = (env("CHAIN_KEYS") ?? "").split(",").filter((key) => key !== "")

/** Waits for the go row, then appends this process's jobs to every chain, interleaved. */
const insertChains = Effect.gen(function*() {
  const sql = yield* SqlClient
  while ((yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.go`)[0]!.n === 0) {
    yield* Effect.sleep("20 millis")
  }
  for (let i = 0; i < Number(env("CHAIN_EACH") ?? "0"); i++) {
    for (const key of chainKeys) yield* Chain.insert(key, [Traced.job({ n: i })])
  }
  process.stdout.write(JSON.stringify({ event: "inserted", node }) + "\n")
})

const Ready = Layer.effectDiscard(Effect.gen(function*() {
  if (chainKeys.length > 0) yield* Effect.forkScoped(Effect.orDie(insertChains.pipe(Effect.provideService(Config.Settings, { prefix, maxArgsBytes: 1024 * 1024 }))))
  process.stdout.write(JSON.stringify({ event: "ready", node }) + "\n")
}))

const PgLive = PgClient.layer({ url: Redacted.make(env("DATABASE_URL")!), maxConnections: 6, applicationName: `workflow ${node}` })

Layer.launch(Ready.pipe(Layer.provideMerge(ObanLive), Layer.provide(PgLive))).pipe(
  Effect.provideService(References.MinimumLogLevel, "Error"),
  NodeRuntime.runMain({ teardown: Oban.teardown })
)
