/**
 * A node embedded in promise-based code, as docs/embedding.md shows: started
 * with a ManagedRuntime, known to be working once `oban.ready` resolves,
 * stopped gracefully by `runtime.dispose()` while a job runs.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Config, Migrations, Oban, Worker } from "effect-oban"
import { databaseUrl, uniquePrefix } from "./support/db.ts"

const Quick = Worker.make("EmbedQuick", { args: Schema.Struct({}), perform: () => Effect.void })
const Slow = Worker.make("EmbedSlow", { args: Schema.Struct({ millis: Schema.Number }), perform: (job) => Effect.sleep(job.args.millis) })

describe("a node embedded in promise-based code", () => {
  it("is ready once its producers fetch, runs jobs, and stops gracefully on dispose", async () => {
    const prefix = uniquePrefix("embed")
    const PgLive = PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 4 })
    const query = <A>(f: (sql: SqlClient) => Effect.Effect<A, unknown>) =>
      Effect.runPromise(Effect.gen(function*() {
        return yield* f(yield* SqlClient)
      }).pipe(Effect.provide(PgLive), Effect.orDie))
    await Effect.runPromise(Migrations.run({ prefix }).pipe(Effect.provide(PgLive)))
    try {
      // The documented recipe: the node and the client in one runtime, so that inserts share it.
      const ObanLive = Oban.layer({ queues: { default: 2 }, workers: [Quick, Slow], shutdownGracePeriod: "20 seconds" }).pipe(
        Layer.provideMerge(Config.layer({ prefix })),
        Layer.provideMerge(PgLive)
      )
      const runtime = ManagedRuntime.make(ObanLive)
      await runtime.runPromise(Effect.flatMap(Effect.service(Oban.Oban), (oban) => oban.ready))
      const producers = await query((sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers`)
      expect(producers[0]!.n).toBe(1)

      const quick = await runtime.runPromise(Oban.insert(Quick.job({})))
      const slow = await runtime.runPromise(Oban.insert(Slow.job({ millis: 1_500 })))
      const stateOf = async (id: number) =>
        (await query((sql) => sql<{ state: string }>`SELECT state FROM ${sql(prefix)}.oban_jobs WHERE id = ${id}`))[0]!.state
      const deadline = Date.now() + 20_000
      while ((await stateOf(quick.id)) !== "completed" || (await stateOf(slow.id)) !== "executing") {
        if (Date.now() > deadline) throw new Error("jobs did not start")
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      // What a SIGTERM handler would call: the slow job finishes within the grace period.
      await runtime.dispose()
      expect(await stateOf(slow.id)).toBe("completed")
      const left = await query((sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers`)
      expect(left[0]!.n).toBe(0)
    } finally {
      await query((sql) => sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`))
    }
  }, 60_000)
})
