/**
 * The statement deadline on a connection that stays open but never answers:
 * the statement fails at its deadline with a retryable SqlError, and the pool
 * does not keep the dead connection (the next statement succeeds).
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, Layer, Redacted, type Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { timeoutError, withStatementTimeout } from "../src/internal/statementTimeout.ts"
import { databaseUrl } from "./support/db.ts"
import { startProxy } from "./support/proxy.ts"

describe("withStatementTimeout", () => {
  // With `multiplex` the driver keeps an abandoned connection in the pool;
  // only `connectionTTL` retires it (see docs/operations.md).
  const pools = [
    ["a plain pool", {}],
    ["a multiplexed pool with connectionTTL", { multiplex: true, connectionTTL: "3 seconds" }]
  ] as const
  it.live.each(pools)("%s: fails at its deadline on a black hole, and recovers once the network does", ([, pool]) =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      // One connection: a slot kept by the dead connection would hang every later statement.
      const context = yield* Layer.build(
        PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: 1, ...pool })
      )
      const sql = yield* Effect.provideContext(SqlClient, context)
      const select = (n: number) =>
        withStatementTimeout(sql<{ n: number }>`SELECT ${n}::int AS n`, { timeout: "1 second", operation: "probe" })
      assert.deepStrictEqual(yield* select(1), [{ n: 1 }])

      yield* proxy.blackhole
      const start = Date.now()
      const error = yield* Effect.flip(select(2))
      const took = Date.now() - start
      assert.strictEqual(error.reason._tag, "StatementTimeoutError")
      assert.isTrue(error.isRetryable)
      assert.isAtLeast(took, 900)
      // Missing the deadline means waiting for the driver to give up on the socket: about 5 s.
      assert.isBelow(took, 3_500, `the deadline was missed: ${took} ms`)

      yield* proxy.restore
      const recovered = Date.now()
      let result: ReadonlyArray<{ n: number }> | undefined
      while (result === undefined && Date.now() - recovered < 30_000) {
        result = yield* select(3).pipe(Effect.orElseSucceed(() => undefined))
      }
      assert.deepStrictEqual(result, [{ n: 3 }])
      assert.isBelow(Date.now() - recovered, 15_000)
    }), 60_000)

  it.live("the deadline counts the wait for a pooled connection, and its error says so; work on a connection of its own is told apart", () =>
    Effect.gen(function*() {
      // One connection, held by a statement of 3 s: the probe waits for the pool, not for the server.
      const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 1 }))
      const sql = yield* Effect.provideContext(SqlClient, context)
      const holder = yield* Effect.forkChild(sql`SELECT pg_sleep(3)`)
      yield* Effect.sleep("300 millis")
      const start = Date.now()
      const error = yield* Effect.flip(
        withStatementTimeout(sql`SELECT 1`, { timeout: "1 second", operation: "fetch" })
      )
      assert.isBelow(Date.now() - start, 2_500, "failed at its deadline, not when the pool freed up")
      assert.strictEqual(
        error.message,
        "fetch did not finish within 1000 ms (no free connection in the pool, or no answer from the server); " +
          "given up, and the connection it used, if any, retired"
      )
      yield* Fiber.join(holder)
      assert.strictEqual(
        timeoutError("heartbeat", 5_000, "own").message,
        "heartbeat did not finish within 5000 ms (no answer from the server on the node's own connection); " +
          "given up, and the connection retired"
      )
    }).pipe(Effect.scoped), 30_000)

  it.live("an interrupted caller waits for the statement to end only with settleOnInterrupt", () =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      // A pool of one connection for each case, opened while the network works.
      const pool: Effect.Effect<SqlClient, SqlError, Scope.Scope> = Effect.gen(function*() {
        const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: 1 }))
        const sql = yield* Effect.provideContext(SqlClient, context)
        yield* sql`SELECT 1`
        return sql
      })
      const [first, second] = [yield* pool, yield* pool]
      // Statements reach the server and their replies never come back: the driver gives an interrupted
      // one up after its 5 s (its cancel gets no answer either).
      yield* proxy.dropReplies
      const interruptAfterSent = (sql: SqlClient, settleOnInterrupt?: Duration.Input) =>
        Effect.gen(function*() {
          const caller = yield* Effect.forkChild(
            withStatementTimeout(sql`SELECT 2`, { timeout: "15 seconds", operation: "probe", settleOnInterrupt })
          )
          yield* Effect.sleep("300 millis")
          const started = Date.now()
          yield* Fiber.interrupt(caller)
          return Date.now() - started
        })
      const abandoned = yield* interruptAfterSent(first)
      assert.isBelow(abandoned, 1_000, `the caller waited ${abandoned} ms`)
      const settled = yield* interruptAfterSent(second, "6 seconds")
      assert.isAtLeast(settled, 4_000, `the caller did not wait for the statement: ${settled} ms`)
      // At most the 6 s asked for, with room for a loaded machine's timers.
      assert.isBelow(settled, 8_000)
    }), 60_000)

  it.live("a statement abandoned at its deadline tells when it has ended (onAbandon)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Both connections open first: the deadline must find the statement on the server, not connecting.
      yield* Effect.all([sql`SELECT pg_sleep(0.05)`, sql`SELECT pg_sleep(0.05)`], { concurrency: 2 })
      // A client of its own, opened now, to look at the server as soon as `ended` ends (the pool could
      // hand the probe's connection to this query, and a connect would leave the driver time to finish).
      const direct = yield* Effect.provideContext(
        SqlClient,
        yield* Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 1 }))
      )
      yield* direct`SELECT 1`
      let ended: Effect.Effect<void> | undefined
      const failed = yield* Effect.flip(withStatementTimeout(sql`SELECT pg_sleep(1.5), 'abandoned-probe'`, {
        timeout: "200 millis",
        operation: "probe",
        onAbandon: (statementEnded) => (ended = statementEnded)
      }))
      assert.strictEqual(failed.reason._tag, "StatementTimeoutError")
      assert.isDefined(ended)
      // Abandoned, not ended: the driver cancels it in the background (after its 10 ms grace).
      yield* ended!
      // The backend that ran it is idle now, its last statement the probe: it reached the server, and ended
      // (an `ended` that ended at once would find it still active, within the driver's grace before its cancel).
      const states = yield* direct<{ state: string }>`SELECT state FROM pg_stat_activity
                                                      WHERE query LIKE '%abandoned' || '-probe%'`
      assert.deepStrictEqual(states.map((row) => row.state), ["idle"])
    }).pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 2 }))), 30_000)
})
