/**
 * The acker on its own: outcomes are written in batches, and a row the
 * database refuses neither blocks the others nor gets dropped.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Acker from "../src/internal/acker.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("acker")
const Noop = Worker.make("Noop", { args: Schema.Struct({}), perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("acker", (it) => {
  it.effect("a bad row is retried on its own while the rest of its batch is written", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const jobs = yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_by = ARRAY['acker-node', 'p']`
      const acker = yield* Acker.make({ sql, prefix, node: "acker-node" })
      const row = (id: number, state: string) => ({
        id,
        attempt: 1,
        state: state as "completed",
        delay_ms: null,
        give_back: false,
        error: null
      })
      // Offered together, so they go out in one statement; the middle one names no state PostgreSQL knows.
      yield* Effect.forEach([row(jobs[0]!.id, "completed"), row(jobs[1]!.id, "bogus"), row(jobs[2]!.id, "completed")], acker.ack)
      yield* waitFor("the good rows written", Effect.map(
        Effect.all([jobRow(prefix, jobs[0]!.id), jobRow(prefix, jobs[2]!.id)]),
        ([a, b]) => a.state === "completed" && b.state === "completed"
      ))
      assert.strictEqual((yield* jobRow(prefix, jobs[1]!.id)).state, "executing")
      // Not dropped: still pending, still being retried.
      yield* Effect.sleep("200 millis")
      assert.strictEqual(yield* acker.pending, 1)
    }).pipe(Effect.scoped))
})
