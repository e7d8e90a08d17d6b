/**
 * A cancel signal that reaches a node before the claim of its job does (the
 * two travel on different connections): the node finds nothing to stop, asks
 * the database again shortly, and stops the job once it is there, if it is
 * still to stop. The executor and producer here are stand-ins whose job
 * "arrives" when a test says so; the rows are real.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as CancelRouting from "../src/internal/cancelRouting.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("cancelrouting")
const Noop = Worker.make("Noop", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })
const producerId = "11111111-2222-4333-8444-555555555555"
const otherProducer = "99999999-2222-4333-8444-555555555555"

/** A job `executing` under `producer`, with its cancel requested when `requested`. */
const executingUnder = (n: number, producer: string, requested: boolean) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [job] = yield* Oban.insertAll([Noop.job({ n })])
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
               attempted_by = ARRAY['node', ${producer}, 'a-claim'],
               cancel_requested_at = ${requested ? sql`now()` : sql`NULL`}
               WHERE id = ${job!.id}`
    return job!.id
  })

layer(testLayer(prefix), { excludeTestServices: true })("cancel routing", (it) => {
  it.effect("a cancel that came before its claim stops the job once it is here (cancelled, or a step's cancel requested); others are left alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const requested = yield* executingUnder(1, producerId, true)
      const notRequested = yield* executingUnder(2, producerId, false)
      const elsewhere = yield* executingUnder(3, otherProducer, true)
      // A plain job's cancel is written at once: its row is cancelled while it still runs here.
      const cancelled = yield* executingUnder(4, producerId, false)
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${cancelled}`
      // Nothing runs here until the claim's reply "arrives"; then every job is here, and stopping one is recorded.
      let arrived = false
      const stopped: Array<number> = []
      const routing = CancelRouting.make({
        sql,
        prefix,
        executor: { cancel: (id) => Effect.sync(() => arrived && (stopped.push(id), true)) },
        producers: new Map([["default", { id: producerId, forget: () => Effect.succeed(false) }]]),
        scope: yield* Effect.scope
      })
      yield* Effect.forEach([requested, notRequested, elsewhere, cancelled], routing.stopHere, { discard: true })
      yield* Effect.sleep("100 millis")
      arrived = true
      // The first recheck is 250 ms after the signal.
      yield* waitFor("both stopped", Effect.sync(() => stopped.includes(requested) && stopped.includes(cancelled)), "5 seconds")
      // Past the last recheck (4.25 s): neither of the others was stopped.
      yield* Effect.sleep("4500 millis")
      assert.deepStrictEqual([...stopped].sort((a, b) => a - b), [requested, cancelled])
    }).pipe(Effect.scoped), 20_000)
})
