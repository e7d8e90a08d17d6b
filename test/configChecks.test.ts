/**
 * Configuration checks and node-scoped queue commands, as typed failures:
 * a heartbeat no shorter than the rescuer's `rescueAfter` fails the layer
 * with `InvalidConfigError` on `heartbeatInterval`, and pausing, resuming or
 * scaling with `scope: "node"` a queue the node does not run fails with
 * `UnknownQueueError` (an error the caller can catch, not a defect).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { producersRegistered, startNode } from "./support/node.ts"

const prefix = uniquePrefix("auditcfg")
const Noop = Worker.make("Noop", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

describe("audit: config and node-scoped queue commands", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("a heartbeat of 30 s with rescueAfter 10 s fails the layer on heartbeatInterval", () =>
      Effect.gen(function*() {
        const error = yield* Layer.build(
          Oban.layer({
            prefix,
            workers: [Noop],
            queues: { default: 1 },
            heartbeatInterval: "30 seconds",
            rescuer: { rescueAfter: "10 seconds" }
          })
        ).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(error._tag, "InvalidConfigError")
        if (error._tag === "InvalidConfigError") {
          assert.strictEqual(error.field, "heartbeatInterval")
          // Both values, and the variables that set them, for a node configured from its environment.
          assert.strictEqual(
            error.message,
            "heartbeatInterval (30s) must be shorter than rescuer.rescueAfter (10s), or live producers would look dead " +
              "(set in code, or by OBAN_HEARTBEAT_INTERVAL and OBAN_RESCUE_AFTER with Oban.layerConfig)"
          )
        }
        // Equal is refused too: a heartbeat exactly as long as rescueAfter can miss it.
        const equal = yield* Layer.build(
          Oban.layer({ prefix, workers: [Noop], heartbeatInterval: "10 seconds", rescuer: { rescueAfter: "10 seconds" } })
        ).pipe(Effect.scoped, Effect.flip)
        assert.deepStrictEqual([equal._tag, (equal as { field?: string }).field], ["InvalidConfigError", "heartbeatInterval"])
        // Nothing was started: no producer registered.
        const sql = yield* SqlClient
        const producers = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers`
        assert.strictEqual(producers[0]!.n, 0)
        // The same intervals the right way round build.
        yield* Layer.build(
          Oban.layer({ prefix, workers: [Noop], heartbeatInterval: "5 seconds", rescuer: { rescueAfter: "10 seconds" } })
        ).pipe(Effect.scoped)
      }))

    it.effect("pause, resume and scale with scope node on a queue the node does not run fail with UnknownQueueError", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        // "elsewhere" runs on node b only; node a runs "here" only.
        const a = yield* startNode({ prefix, node: "audit-a", queues: { here: 2 }, workers: [Noop], pruner: false })
        const b = yield* startNode({ prefix, node: "audit-b", queues: { elsewhere: 3 }, workers: [Noop], pruner: false })
        yield* producersRegistered(prefix, 2)
        const commands = [
          ["pauseQueue", a.oban.pauseQueue("elsewhere", { scope: "node" })],
          ["resumeQueue", a.oban.resumeQueue("elsewhere", { scope: "node" })],
          ["scaleQueue", a.oban.scaleQueue("elsewhere", 9, { scope: "node" })]
        ] as const
        for (const [name, command] of commands) {
          const exit = yield* Effect.exit(command)
          assert.isTrue(Exit.isFailure(exit), `${name} succeeded`)
          if (Exit.isFailure(exit)) {
            // A typed failure, not a defect: Effect.catch and Effect.flip see it.
            assert.isFalse(Cause.hasDies(exit.cause), `${name} died: ${Cause.pretty(exit.cause)}`)
          }
          const error = yield* Effect.flip(command)
          assert.strictEqual(error._tag, "UnknownQueueError", name)
          if (error._tag === "UnknownQueueError") {
            assert.strictEqual(error.queue, "elsewhere", name)
            assert.strictEqual(error.node, "audit-a", name)
          }
        }
        // Nothing was changed: b's queue is neither paused nor scaled, in its state or its row.
        const state = yield* b.oban.checkQueue("elsewhere")
        assert.isFalse(state.paused)
        assert.strictEqual(state.limit, 3)
        const rows = yield* sql<{ node: string; queue: string; limit: number; paused: boolean }>`
          SELECT node, queue, "limit", paused FROM ${sql(prefix)}.oban_producers ORDER BY node`
        assert.deepStrictEqual(rows.map((row) => [row.node, row.queue, row.limit, row.paused]), [
          ["audit-a", "here", 2, false],
          ["audit-b", "elsewhere", 3, false]
        ])
        // The same commands on a queue the node runs succeed.
        yield* a.oban.pauseQueue("here", { scope: "node" })
        yield* a.oban.scaleQueue("here", 4, { scope: "node" })
        const here = yield* a.oban.checkQueue("here")
        assert.isTrue(here.paused)
        assert.strictEqual(here.limit, 4)
        yield* a.oban.resumeQueue("here", { scope: "node" })
        assert.isFalse((yield* a.oban.checkQueue("here")).paused)
        yield* a.stop
        yield* b.stop
      }), 30_000)
  })
})
