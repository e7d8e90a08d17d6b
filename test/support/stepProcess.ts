/**
 * A node in its own OS process for the workflow-cancel fault tests, started
 * the documented way (`Layer.launch(...).pipe(NodeRuntime.runMain({ teardown:
 * Oban.teardown }))`), so SIGTERM shuts it down gracefully. Prints
 * {"event":"ready"} once started.
 *
 * Its worker, `CancelStep`, inserts a row into `<prefix>.runs` when a perform
 * starts (a job started twice leaves two rows), then by its `mode`:
 * - `quick`: returns at once;
 * - `hold`: waits until interrupted, stamps `interrupted_at`, then cleans up
 *   for CLEANUP_MS (as a worker closing a connection does) before it stops;
 * - `stubborn`: ignores interrupts for STUBBORN_MS (an uninterruptible
 *   region), then waits until interrupted and stamps `interrupted_at`.
 * Whenever the perform ends, `ended_at` is stamped.
 *
 *   DATABASE_URL  PREFIX  NODE_NAME  GRACE_MS  CLEANUP_MS  STUBBORN_MS
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, References, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"

const env = (name: string): string | undefined => process.env[name]
const prefix = env("PREFIX")!
const node = env("NODE_NAME")!
const cleanupMillis = Number(env("CLEANUP_MS") ?? "0")
const stubbornMillis = Number(env("STUBBORN_MS") ?? "0")

/** How a step behaves once started (see the module comment). */
export const StepMode = Schema.Literals(["quick", "hold", "stubborn"])

/** Stamps `column` of the job's run rows now. */
const stamp = (jobId: number, column: "interrupted_at" | "ended_at") =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`UPDATE ${sql(prefix)}.runs SET ${sql(column)} = clock_timestamp() WHERE job_id = ${jobId}`).pipe(Effect.orDie)

/** The same name and args as in the tests, which insert its jobs. */
export const CancelStep = Worker.make("CancelStep", {
  args: Schema.Struct({ mode: StepMode }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, ${node})`
      if (job.args.mode === "quick") return
      const ignoring = job.args.mode === "stubborn" ? Effect.uninterruptible(Effect.sleep(stubbornMillis)) : Effect.void
      yield* Effect.andThen(ignoring, Effect.never).pipe(
        Effect.onInterrupt(() =>
          Effect.andThen(
            stamp(job.id, "interrupted_at"),
            job.args.mode === "hold" ? Effect.sleep(cleanupMillis) : Effect.void
          )
        )
      )
    }).pipe(Effect.ensuring(stamp(job.id, "ended_at")))
})

const ObanLive = Oban.layer({
  prefix,
  node,
  queues: { default: 5 },
  workers: [CancelStep],
  pollInterval: "200 millis",
  pruner: false,
  ...(env("GRACE_MS") === undefined ? {} : { shutdownGracePeriod: Number(env("GRACE_MS")) })
})

const Ready = Layer.effectDiscard(Effect.sync(() => process.stdout.write(JSON.stringify({ event: "ready", node }) + "\n")))

const PgLive = PgClient.layer({ url: Redacted.make(env("DATABASE_URL")!), maxConnections: 6, applicationName: `step ${node}` })

Layer.launch(Ready.pipe(Layer.provideMerge(ObanLive), Layer.provide(PgLive))).pipe(
  Effect.provideService(References.MinimumLogLevel, (env("LOG_LEVEL") ?? "Error") as "Error"),
  NodeRuntime.runMain({ teardown: Oban.teardown })
)
