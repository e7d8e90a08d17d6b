/**
 * "fetches get through again" only after a fetch got through. A producer
 * skips its fetch while its heartbeats fail, and a skipped fetch ended the
 * run of failures: an operator drill saw the line 0.1-0.4 s into an outage,
 * with the database still down.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startLogged, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("fetch_recovery")

layer(testLayer(prefix), { excludeTestServices: true })("a producer's fetch failures", (it) => {
  it.effect("a fetch skipped while heartbeats fail does not say fetches get through again; the next fetch that does, says so", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "recovery-node",
        queues: { recovery: 1 },
        workers: [],
        heartbeatInterval: "200 millis",
        pollInterval: "100 millis"
      })
      yield* oban.ready
      const said = (start: string) => lines.filter((line) => line.text.startsWith(start)).length
      // The jobs' and the producers' tables go away (a migration rolled back): fetches and heartbeats fail.
      const away = sql`ALTER TABLE ${sql(prefix)}.oban_jobs RENAME TO oban_jobs_away`.pipe(
        Effect.andThen(sql`ALTER TABLE ${sql(prefix)}.oban_producers RENAME TO oban_producers_away`)
      )
      const back = sql`ALTER TABLE ${sql(prefix)}.oban_jobs_away RENAME TO oban_jobs`.pipe(
        Effect.andThen(sql`ALTER TABLE ${sql(prefix)}.oban_producers_away RENAME TO oban_producers`),
        Effect.orDie
      )
      yield* Effect.ensuring(
        Effect.gen(function*() {
          yield* away
          yield* waitFor("a failed fetch and heartbeat", Effect.sync(() => said("fetch failed") > 0 && said("heartbeat failed") > 0))
          // Polls keep asking for fetches, which are skipped while heartbeats fail.
          yield* Effect.sleep("1500 millis")
          assert.strictEqual(said("fetches get through again"), 0, lines.map((line) => line.text.split("\n")[0]).join("\n"))
        }),
        back
      )
      yield* waitFor("fetches again", Effect.sync(() => said("fetches get through again, after") > 0), "15 seconds")
      yield* stop
    }).pipe(Effect.scoped), 30_000)
})
