/**
 * A node warns at start about crontab entries whose jobs it would claim but
 * could not run: their queue runs on the node, their worker does not. Its
 * start line also names the workers whose own queue it does not run.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer, Logger, References, Schema } from "effect"
import { Cron, Oban, Worker } from "effect-oban"
import { unrunnableCronEntries } from "../src/internal/cronWorkers.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("cron_workers")

const Registered = Worker.make("Registered", { args: Schema.Struct({}), perform: () => Effect.void })
const Forgotten = Worker.make("Forgotten", { args: Schema.Struct({}), perform: () => Effect.void })
const Elsewhere = Worker.make("Elsewhere", { args: Schema.Struct({}), queue: "reports", perform: () => Effect.void })

const crontab = [
  Cron.entry("* * * * *", Registered, {}),
  Cron.entry("*/5 * * * *", Forgotten, {}),
  // Its queue does not run on the node: a scheduler node may insert jobs that other nodes run.
  Cron.entry("0 * * * *", Elsewhere, {})
]

/** Builds a node's layer and closes it again, returning every line it logged on the way. */
const startLogs = <A, E, R>(node: Layer.Layer<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<{ readonly level: string; readonly text: string }> = []
    const capture = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel, text: Array.isArray(message) ? message.join(" ") : String(message) })
    })
    yield* Layer.build(node).pipe(
      Effect.scoped,
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      Effect.provideService(References.MinimumLogLevel, "All")
    )
    return lines
  })

describe("crontab entries a node cannot run", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("are those of its queues whose worker it lacks, and the node warns about each at start", () =>
      Effect.gen(function*() {
        const found = unrunnableCronEntries(crontab, new Set(["Registered"]), new Set(["default"]))
        assert.deepStrictEqual(found.map((entry) => entry.name), ["Forgotten:*/5 * * * *"])

        const lines = yield* startLogs(Oban.layer({
          queues: { default: 1 },
          workers: [Registered],
          crontab,
          node: "cron-node",
          pruner: false
        }))
        const warnings = lines.filter((line) => line.level === "Warn" && line.text.includes("cron entry"))
          .map((line) => line.text)
        assert.deepStrictEqual(warnings, [
          `cron entry "Forgotten:*/5 * * * *" inserts Forgotten jobs into queue "default", which node cron-node runs ` +
          "without that worker: each of them it claims fails as unknown_worker; add Forgotten to the node's workers"
        ])
      }))

    it.effect("the start line names the workers whose queue the node does not run (not a warning)", () =>
      Effect.gen(function*() {
        const start = (withElsewhere: boolean) =>
          startLogs(Oban.layer({
            queues: { default: 1 },
            workers: withElsewhere ? [Registered, Elsewhere] : [Registered],
            node: "queues-node",
            pruner: false
          }))
        const started = (yield* start(true)).filter((line) => line.text.startsWith("node queues-node running queues"))
        assert.deepStrictEqual(started, [{
          level: "Info",
          text: "node queues-node running queues default(1); workers of queues it does not run: Elsewhere (reports)"
        }])
        assert.deepStrictEqual(
          (yield* start(false)).filter((line) => line.text.startsWith("node queues-node")).map((line) => line.text),
          ["node queues-node running queues default(1)"]
        )
      }))
  })
})
