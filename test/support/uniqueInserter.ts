/**
 * An OS process that races to insert one unique job, for test/uniqueRace.test.ts.
 * Configured by environment variables:
 *
 *   DATABASE_URL  PREFIX  NODE_NAME  FIBERS  CALLS (a JSON array: calls per fiber)  BASE (first value)
 *
 * Prints {"event":"ready"} once connected, waits until a row appears in
 * `<prefix>.go`, then every fiber inserts the job its calls times, each in
 * its own transaction that also records (value, job id, conflict, a
 * sequence number taken while the job row is locked) in `<prefix>.calls`.
 * Prints {"event":"done"} and exits 0.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../../src/Config.ts"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"

const env = (name: string): string => process.env[name]!
const prefix = env("PREFIX")
const calls = JSON.parse(env("CALLS")) as ReadonlyArray<number>
const base = Number(env("BASE"))

/** The racing worker: unique forever by worker and queue; a conflict replaces args and meta. */
export const Race = Worker.make("Race", {
  args: Schema.Struct({ value: Schema.Int }),
  unique: { period: "forever", fields: ["worker", "queue"], replace: ["args", "meta"] },
  perform: () => Effect.void
})

const say = (event: string) => Effect.sync(() => process.stdout.write(JSON.stringify({ event }) + "\n"))

const program = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`SELECT 1`
  yield* say("ready")
  while ((yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.go`)[0]!.n === 0) {
    yield* Effect.sleep("5 millis")
  }
  yield* Effect.forEach(calls, (count, fiber) =>
    Effect.gen(function*() {
      for (let i = 0; i < count; i++) {
        const value = base + fiber * 1000 + i
        yield* sql.withTransaction(Effect.gen(function*() {
          const job = yield* Oban.insert(Race.job({ value }, { meta: { value } }))
          // The job row stays locked by this transaction until it commits, so this order is the commit order.
          yield* sql`INSERT INTO ${sql(prefix)}.calls (value, job_id, conflict, seq)
            VALUES (${value}, ${job.id}, ${job.conflict}, nextval(${`"${prefix}".calls_seq`}))`
        }))
      }
    }), { concurrency: "unbounded", discard: true })
  yield* say("done")
})

program.pipe(
  Effect.provide(Config.layer({ prefix })),
  Effect.provide(PgClient.layer({ url: Redacted.make(env("DATABASE_URL")), maxConnections: calls.length })),
  NodeRuntime.runMain
)
