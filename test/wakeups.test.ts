/**
 * The wake-up an insert sends after its transaction commits, when the
 * network stops answering right after the commit (a TCP proxy that
 * black-holes the connection): the caller's wait is bounded once per
 * transaction, not once per insert, and it can be interrupted.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { wakeAfterCommit } from "../src/internal/waker.ts"
import { databaseUrl, quietLogs } from "./support/db.ts"
import { startProxy } from "./support/proxy.ts"

/** A client of its own, through a proxy the test can black-hole, and a transaction that black-holes it at commit. */
const blackholedAfterCommit = (wakes: number) =>
  Effect.gen(function*() {
    const proxy = yield* startProxy(databaseUrl())
    const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: 2 }))
    const sql = Context.get(context, SqlClient)
    return sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT 1`
      // Runs first of the commit's callbacks: every wake-up after it finds no answer.
      yield* sql.afterCommit(proxy.blackhole)
      for (let n = 0; n < wakes; n++) yield* wakeAfterCommit(sql, "wakeups", [`queue_${n}`])
    }))
  })

describe("wake-ups after commit on a black-holed network", () => {
  it.live("three inserts of one transaction wait once, about the 5 s deadline, not once each", () =>
    Effect.gen(function*() {
      const transaction = yield* blackholedAfterCommit(3)
      const started = Date.now()
      yield* transaction
      const took = Date.now() - started
      assert.isAtLeast(took, 4_500)
      // One wait (5 s) and a loaded machine's delays, under the two waits (10 s) of a second wake-up.
      assert.isBelow(took, 9_500, `the transaction returned after ${took} ms`)
    }).pipe(Effect.scoped, Effect.provide(quietLogs)), 60_000)

  it.live("a caller waiting for its wake-up can be interrupted at once", () =>
    Effect.gen(function*() {
      const transaction = yield* blackholedAfterCommit(1)
      const fiber = yield* Effect.forkChild(transaction)
      yield* Effect.sleep("500 millis")
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      const took = Date.now() - started
      // Waiting out the deadline would take about 4.5 s more.
      assert.isBelow(took, 3_000, `interrupting took ${took} ms`)
    }).pipe(Effect.scoped, Effect.provide(quietLogs)), 60_000)
})
