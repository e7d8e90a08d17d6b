/**
 * A producer's give-back, seen from the reconciler: jobs taken out of the
 * buffer stay pending (this node's) while the give-back's statement is on its
 * way, not only once it has failed or passed them over. Otherwise a
 * reconciler looking in between would take them back with the attempt their
 * claim counted.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as ClaimReturns from "../src/internal/claimReturns.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("claim_returns")
const Noop = Worker.make("Noop", { args: Schema.Struct({}), perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("claim returns", (it) => {
  it.effect("jobs being given back are pending until the give-back lands, then not", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [inserted] = yield* Oban.insertAll([Noop.job({})])
      const id = inserted!.id
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = ARRAY['node', 'producer', 'claim-1'] WHERE id = ${id}`
      const job = { ...inserted!, attemptedBy: ["node", "producer", "claim-1"] }
      const returns = ClaimReturns.make({
        sql,
        prefix,
        scope: yield* Effect.scope,
        context: yield* Effect.context<never>(),
        logs: {},
        fetchTimeout: Duration.seconds(15)
      })
      // A table lock (not a row lock, which the give-back passes over) holds its statement on its way.
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql`LOCK TABLE ${sql(prefix)}.oban_jobs IN SHARE MODE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      let taken = false
      const giving = yield* Effect.forkChild(returns.giveBack(() => {
        taken = true
        return [{ job, ahead: false }]
      }, "job"))
      yield* waitFor("the give-back took the job", Effect.sync(() => taken))
      yield* waitFor(
        "the give-back's statement waiting for the lock",
        Effect.map(
          sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                                      WHERE wait_event_type = 'Lock' AND query LIKE '%oban_jobs%' AND pid <> pg_backend_pid()`,
          (rows) => rows[0]!.n > 0
        )
      )
      assert.deepStrictEqual(returns.pending().jobs, [id])
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(giving)
      assert.deepStrictEqual(returns.pending().jobs, [])
      const row = yield* jobRow(prefix, id)
      assert.deepStrictEqual([row.state, row.attempt], ["available", 0])
    }).pipe(Effect.scoped))
})
