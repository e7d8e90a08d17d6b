/**
 * A node started under a name whose rows are still fresh: after a crash the
 * rows of the dead incarnation stop beating, and the node says nothing; a
 * live process under the same name keeps beating, and the node warns once,
 * however seldom it beats (each row is compared with itself, not with this
 * node's clock).
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Logger, References, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("namesakes")

const Noop = Worker.make("NamesakesNoop", { args: Schema.Struct({}), perform: () => Effect.void })

const warning = /^another live process runs queue default under the node name/

/** A row of another incarnation of `node`'s queue `default`, refreshed just now. */
const earlierRow = (node: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ id: string }>`
      INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
      VALUES (gen_random_uuid(), ${node}, 'default', 5, false, '{}'::jsonb, now() - interval '1 minute', now())
      RETURNING id::text AS id`
    return row!.id
  })

/** Starts a node named `node` with fast heartbeats, and returns the lines it logs and a way to stop it. */
const startLogging = (node: string) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const capture = Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const scope = yield* Scope.fork(yield* Scope.Scope)
    yield* Layer.buildWithScope(
      Layer.fresh(Oban.layer({
        prefix,
        node,
        queues: { default: 5 },
        workers: [Noop],
        heartbeatInterval: "200 millis",
        rescuer: { rescueAfter: "30 seconds" }
      })),
      scope
    ).pipe(
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      Effect.provideService(References.MinimumLogLevel, "All")
    )
    return { lines, stop: Scope.close(scope, Exit.void) }
  })

/** Waits until the node's producer has beaten `beats` times after it registered (its row's refreshes). */
const beatsOf = (node: string, beats: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* waitFor(`${beats} heartbeats of ${node}`, Effect.map(sql<{ ok: boolean }>`
      SELECT bool_or(updated_at >= started_at + ${beats * 200} * interval '1 millisecond') AS ok
      FROM ${sql(prefix)}.oban_producers WHERE node = ${node} AND started_at > now() - interval '30 seconds'`,
    (rows) => rows[0]?.ok === true))
  })

layer(testLayer(prefix), { excludeTestServices: true })("a node registering beside rows of its own name", (it) => {
  it.effect("the fresh row of a crashed incarnation draws no warning", () =>
    Effect.gen(function*() {
      yield* earlierRow("restarted")
      const node = yield* startLogging("restarted")
      yield* beatsOf("restarted", 4)
      yield* node.stop
      assert.deepStrictEqual(node.lines.filter((line) => warning.test(line)), [])
    }).pipe(Effect.scoped))

  it.effect("a namesake that keeps beating draws one warning, also when it beats less often than this node", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const other = yield* earlierRow("twin")
      // The other process: its heartbeat refreshes its row every 900 ms, past this node's first four beats.
      const beating = yield* Effect.forkChild(Effect.forever(Effect.andThen(
        Effect.sleep("900 millis"),
        sql`UPDATE ${sql(prefix)}.oban_producers SET updated_at = now() WHERE id = ${other}::uuid`
      )))
      const node = yield* startLogging("twin")
      yield* waitFor("the warning", Effect.sync(() => node.lines.some((line) => warning.test(line))))
      yield* beatsOf("twin", 8)
      yield* node.stop
      yield* Fiber.interrupt(beating)
      assert.strictEqual(node.lines.filter((line) => warning.test(line)).length, 1)
    }).pipe(Effect.scoped))
})
