/**
 * A node in its own OS process for the cluster-wide limits tests. Its one
 * worker, `Spanned`, writes a row into `<prefix>.spans` when a perform starts
 * and stamps its end when it ends (database clock), so the test can tell how
 * many jobs ran at once. Prints {"event":"ready"} once started; SIGTERM shuts
 * down gracefully.
 *
 *   DATABASE_URL  PREFIX  NODE_NAME  QUEUES (JSON, passed to Oban.layer as is)
 *   JOB_MS (each job's duration)  SLOW_NODE + SLOW_MS (jobs on that node take SLOW_MS instead)
 *   HEARTBEAT_MS  RESCUE_AFTER_MS  RESCUE_INTERVAL_MS  LEASE_TTL_MS + LEASE_RENEW_MS
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, References, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"
import { livenessFromEnv } from "./livenessEnv.ts"

const env = (name: string): string | undefined => process.env[name]
const prefix = env("PREFIX")!
const node = env("NODE_NAME")!
const jobMillis = env("SLOW_NODE") === node ? Number(env("SLOW_MS")) : Number(env("JOB_MS") ?? "0")

/** The same name and args as in the tests, which insert its jobs. */
export const Spanned = Worker.make("Spanned", {
  args: Schema.Struct({ n: Schema.Int, accountId: Schema.String }),
  queue: "limited",
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.spans (job_id, account, node) VALUES (${job.id}, ${job.args.accountId}, ${node})`
      if (jobMillis > 0) yield* Effect.sleep(jobMillis)
      yield* sql`UPDATE ${sql(prefix)}.spans SET ended_at = clock_timestamp() WHERE job_id = ${job.id} AND node = ${node}`
    })
})

const ObanLive = Oban.layer({
  prefix,
  node,
  queues: JSON.parse(env("QUEUES") ?? "{}"),
  workers: [Spanned],
  pollInterval: "500 millis",
  pruner: false,
  ...livenessFromEnv()
})

const Ready = Layer.effectDiscard(Effect.sync(() => process.stdout.write(JSON.stringify({ event: "ready", node }) + "\n")))

const PgLive = PgClient.layer({ url: Redacted.make(env("DATABASE_URL")!), maxConnections: 6, applicationName: `limits ${node}` })

Layer.launch(Ready.pipe(Layer.provideMerge(ObanLive), Layer.provide(PgLive))).pipe(
  Effect.provideService(References.MinimumLogLevel, "Error"),
  NodeRuntime.runMain({ teardown: Oban.teardown })
)
