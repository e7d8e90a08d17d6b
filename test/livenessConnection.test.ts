/**
 * The node's own connection (heartbeats, the leader lease): a statement past
 * its deadline is cancelled on the server, whatever the application's client
 * does with interrupted statements (a multiplexed one abandons them), so the
 * next heartbeat does not queue behind it. It sets no session parameter
 * (PgBouncer refuses unknown ones), so the deadline is all there is.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Liveness from "../src/internal/liveness.ts"
import { databaseUrl, pgLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

describe("the node's own connection", () => {
  it.live("a statement past its deadline is cancelled on the server, also under a multiplexing client; the next one answers", () =>
    Effect.gen(function*() {
      const direct = yield* SqlClient
      const node = uniquePrefix("deadline")
      const client = yield* Layer.build(
        PgClient.layer({ url: Redacted.make(databaseUrl()), multiplex: true, maxConnections: 2 })
      )
      const liveness = yield* Liveness.make({ node, statementTimeout: Duration.millis(500), lapseMillis: 30_000 }).pipe(
        Effect.provideContext(client)
      )
      const stuck = yield* Effect.exit(liveness.run(liveness.sql`SELECT pg_sleep(20)`))
      assert.isTrue(Exit.isFailure(stuck))
      yield* waitFor(
        "the statement is gone from the server",
        Effect.map(
          direct<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                                WHERE application_name = ${Liveness.applicationName(node)} AND state = 'active'`,
          (rows) => rows[0]!.n === 0
        ),
        "8 seconds"
      )
      const started = Date.now()
      yield* liveness.run(liveness.sql`SELECT 1`)
      const took = Date.now() - started
      assert.isBelow(took, 1_000, `the next statement took ${took} ms`)
    }).pipe(Effect.scoped, Effect.provide(pgLayer())), 30_000)
})
