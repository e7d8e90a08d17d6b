/**
 * A node embedded in promise-based code, as docs/embedding.md shows, in an OS
 * process of its own: started with a ManagedRuntime, known to be working once
 * `oban.ready` resolves, and stopped by SIGTERM through the recipe's handler
 * (`runtime.dispose()`) while a job runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Oban, Worker } from "effect-oban"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"
import { awaitReady, spawnNode, stopNode } from "./support/processes.ts"

// The same name and args as the process's worker: this side only inserts.
const Slow = Worker.make("EmbedSlow", { args: Schema.Struct({ millis: Schema.Number }), perform: () => Effect.void })

describe("a node embedded in promise-based code", () => {
  const prefix = uniquePrefix("embed")
  it.live("is ready once its producer fetches, runs jobs, and finishes a running job on SIGTERM", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const producers = Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers`,
        (rows) => rows[0]!.n
      )
      const node = yield* spawnNode("embedded", { DATABASE_URL: databaseUrl(), PREFIX: prefix }, "embeddedNodeProcess.ts")
      yield* awaitReady(node)
      // Ready means registered and fetching, not merely built.
      assert.strictEqual(yield* producers, 1)
      const quick = yield* Oban.insert(Slow.job({ millis: 0 }))
      // Long enough to be seen executing (and still run at SIGTERM) on a loaded machine.
      const slow = yield* Oban.insert(Slow.job({ millis: 6_000 }))
      const state = (id: number) => Effect.map(jobRow(prefix, id), (row) => row.state)
      yield* waitFor("both jobs started", Effect.map(
        Effect.all([state(quick.id), state(slow.id)]),
        ([a, b]) => a === "completed" && b === "executing"
      ))
      // What a deploy sends: the recipe's handler disposes the runtime, the slow job finishes.
      assert.strictEqual(yield* stopNode(node, "SIGTERM"), 0)
      assert.strictEqual(yield* state(slow.id), "completed")
      assert.strictEqual(yield* producers, 0)
    }).pipe(Effect.provide(testLayer(prefix)), Effect.scoped), 60_000)
})
