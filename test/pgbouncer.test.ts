/**
 * A node whose pool goes through a real PgBouncer in transaction mode (as on
 * many managed databases), with prepared statements off and its LISTEN
 * connection given a direct address (`listenConnection`): it leads, its
 * heartbeats land, NOTIFY wakes it, unique inserts and staging work, and each
 * job runs once. Skipped when the `pgbouncer` binary is not installed.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"
import { pgbouncerBinary, startPgBouncer } from "./support/pgbouncer.ts"

const runs = new Map<number, number>()
const Work = Worker.make("Work", {
  args: Schema.Struct({ n: Schema.Int }),
  perform: (job) => Effect.sync(() => void runs.set(job.id, (runs.get(job.id) ?? 0) + 1))
})

const completed = (prefix: string, count: number) =>
  Effect.map(countByState(prefix), (states) => (states["completed"] ?? 0) === count)

describe.skipIf(pgbouncerBinary === undefined)("a node behind PgBouncer in transaction mode", () => {
  const prefix = uniquePrefix("pgbouncer")

  it.live("leads, beats, is woken by NOTIFY on its direct LISTEN connection, and runs each job once", () =>
    Effect.gen(function*() {
      const bouncer = yield* startPgBouncer(databaseUrl())
      // Every pooled statement through PgBouncer; it cannot carry named prepared statements (1.18).
      const pool = yield* Layer.build(PgClient.layer({ url: Redacted.make(bouncer), prepare: false, maxConnections: 5 }))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* dropSchemaOnClose(prefix)
        yield* Migrations.run({ prefix })
        const node = yield* startNode({
          prefix,
          node: "bounced",
          queues: { default: 5 },
          workers: [Work],
          // Far apart: a job that starts sooner was woken by its insert's NOTIFY.
          pollInterval: "10 seconds",
          stageInterval: "200 millis",
          heartbeatInterval: "300 millis",
          leader: { ttl: "3 seconds", renewInterval: "300 millis" },
          listenConnection: { url: Redacted.make(databaseUrl()) }
        })
        yield* producersRegistered(prefix)
        // The lease and the heartbeats go through PgBouncer on the node's own connection.
        yield* waitFor("the node leads", node.oban.isLeader, "10 seconds")
        yield* Effect.sleep("1 second")
        const [beat] = yield* sql<{ age: number }>`
          SELECT (extract(epoch FROM now() - max(updated_at)) * 1000)::int AS age FROM ${sql(prefix)}.oban_producers`
        assert.isBelow(beat!.age, 1_500, `the producer's row is ${beat!.age} ms old`)
        const started = Date.now()
        yield* Oban.insert(Work.job({ n: 1 }))
        yield* waitFor("the job completed", completed(prefix, 1), "8 seconds")
        const took = Date.now() - started
        assert.isBelow(took, 3_000, `the job completed ${took} ms after its insert: no wake-up arrived`)
        // Unique inserts of several jobs take a transaction of their own; a scheduled job is staged by the leader.
        const unique = { period: "forever" } as const
        yield* Oban.insertAll([Work.job({ n: 2 }, { unique }), Work.job({ n: 3 }, { unique }), Work.job({ n: 2 }, { unique })])
        yield* Oban.insert(Work.job({ n: 4 }, { scheduleIn: "500 millis" }))
        yield* waitFor("every job completed", completed(prefix, 4), "15 seconds")
        assert.deepStrictEqual([...runs.values()], [1, 1, 1, 1])
      }).pipe(Effect.provideContext(pool), Effect.provide(Config.layer({ prefix })))
    }).pipe(Effect.scoped), 60_000)
})
