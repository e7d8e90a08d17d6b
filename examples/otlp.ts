/**
 * How to export effect-oban's traces, metrics and logs with OTLP (the
 * snippet in docs/observability.md). Type-checked, not run by the tests:
 * it needs a collector at OTLP_URL.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"
import { Otlp, OtlpSerialization } from "effect/observability"
import { Oban, Worker } from "../src/index.ts"

const Hello = Worker.make("Hello", { args: Schema.Struct({}), perform: () => Effect.log("hello") })

const Observability = Otlp.layer({
  baseUrl: process.env["OTLP_URL"] ?? "http://localhost:4318",
  resource: { serviceName: "jobs-worker" }
}).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(NodeHttpClient.layerUndici))

const PgLive = PgClient.layer({ url: Redacted.make(process.env["DATABASE_URL"] ?? "postgres://localhost/app") })

const ObanLive = Oban.layer({ queues: { default: 10 }, workers: [Hello] })

export const main = Layer.launch(ObanLive.pipe(Layer.provide(PgLive), Layer.provide(Observability)))

if (process.argv[1]?.endsWith("otlp.ts")) NodeRuntime.runMain(main, { teardown: Oban.teardown })
