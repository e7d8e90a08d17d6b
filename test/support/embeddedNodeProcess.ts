/**
 * docs/embedding.md's recipe in an OS process: a node held in a
 * ManagedRuntime, awaited with `oban.ready`, and stopped by a SIGTERM handler
 * that calls `runtime.dispose()`. Prints {"event":"ready"} once ready.
 *
 *   DATABASE_URL  PREFIX  NODE_NAME
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, ManagedRuntime, Redacted, References, Schema } from "effect"
import * as Config from "../../src/Config.ts"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"

const Slow = Worker.make("EmbedSlow", {
  args: Schema.Struct({ millis: Schema.Number }),
  perform: (job) => Effect.sleep(job.args.millis)
})

const PgLive = PgClient.layer({ url: Redacted.make(process.env["DATABASE_URL"]!), maxConnections: 4 })
const ObanLive = Oban.layer({
  node: process.env["NODE_NAME"]!,
  queues: { default: 2 },
  workers: [Slow],
  shutdownGracePeriod: "20 seconds"
}).pipe(
  Layer.provideMerge(Config.layer({ prefix: process.env["PREFIX"]! })),
  Layer.provideMerge(PgLive),
  Layer.provide(Layer.succeed(References.MinimumLogLevel, "Error"))
)
const runtime = ManagedRuntime.make(ObanLive)

await runtime.runPromise(Effect.flatMap(Effect.service(Oban.Oban), (oban) => oban.ready))

process.once("SIGTERM", () => {
  runtime.dispose().then(() => process.exit(0), () => process.exit(1))
})

process.stdout.write(JSON.stringify({ event: "ready" }) + "\n")
