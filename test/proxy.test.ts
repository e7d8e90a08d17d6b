/**
 * The test proxy itself: it forwards, cuts, black-holes and refuses.
 */
import { PgConnection } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, Option, Redacted } from "effect"
import { databaseUrl } from "./support/db.ts"
import { startProxy } from "./support/proxy.ts"

/** A connection; the short timeout is for the black-holed connect, which times out by design. */
const connect = (url: string, connectTimeout: Duration.Input = "10 seconds") =>
  PgConnection.make({ url: Redacted.make(url), connectTimeout })

const selectOne = (connection: PgConnection.PgConnection) =>
  Effect.map(connection.query("SELECT 1 AS one"), (result) => result.rows)

describe("test proxy", () => {
  it.live("forwards, cuts, refuses and black-holes connections", () =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      const first = yield* connect(proxy.url)
      assert.deepStrictEqual(yield* selectOne(first), [{ one: 1 }])
      assert.strictEqual(yield* proxy.connections, 1)

      yield* proxy.cut
      const cut = yield* Effect.flip(selectOne(first))
      assert.strictEqual(cut.reason._tag, "ConnectionError")

      yield* proxy.refuse
      const refused = yield* Effect.flip(Effect.scoped(connect(proxy.url)))
      assert.strictEqual(refused.reason._tag, "ConnectionError")
      yield* proxy.accept

      const second = yield* connect(proxy.url)
      yield* proxy.blackhole
      const hung = yield* selectOne(second).pipe(Effect.timeoutOption("500 millis"), Effect.forkChild)
      const blackholedConnect = yield* Effect.flip(Effect.scoped(connect(proxy.url, "1 second")))
      assert.strictEqual(blackholedConnect.reason._tag, "ConnectionError") // timed out: nothing came back
      assert.isTrue(Option.isNone(yield* Fiber.join(hung)), "a black-holed statement answered")
      assert.isAtLeast(yield* proxy.connections, 1) // the black-holed socket stays open

      yield* proxy.restore
      const third = yield* connect(proxy.url)
      assert.deepStrictEqual(yield* selectOne(third), [{ one: 1 }])
      assert.isAtLeast(yield* proxy.accepted, 4)
      yield* proxy.close
    }).pipe(Effect.scoped), 30_000)
})

describe("test proxy holds", () => {
  it.live("requests until release: the statement reaches the server only then; replies: it commits, the answer comes then", () =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      const behind = yield* connect(proxy.url)
      const direct = yield* connect(databaseUrl())
      const table = `proxy_hold_${Math.random().toString(36).slice(2, 8)}`
      yield* direct.query(`CREATE TABLE ${table} (n int)`)
      yield* Effect.addFinalizer(() => Effect.ignore(direct.query(`DROP TABLE ${table}`)))
      const count = Effect.map(direct.query(`SELECT count(*)::int AS n FROM ${table}`), (result) => (result.rows[0] as { n: number }).n)

      yield* proxy.holdRequests
      const held = yield* Effect.forkChild(behind.query(`INSERT INTO ${table} VALUES (1) RETURNING n`))
      while (!(yield* proxy.heldRequestsInclude(table))) yield* Effect.sleep("10 millis")
      assert.isFalse(yield* proxy.heldRequestsInclude("no such text"))
      assert.strictEqual(yield* count, 0, "a held statement reached the server")
      yield* proxy.release
      assert.deepStrictEqual((yield* Fiber.join(held)).rows, [{ n: 1 }])
      assert.strictEqual(yield* count, 1)

      yield* proxy.holdReplies
      const answered = yield* Effect.forkChild(behind.query(`INSERT INTO ${table} VALUES (2) RETURNING n`))
      while ((yield* count) < 2) yield* Effect.sleep("10 millis")
      yield* Effect.sleep("100 millis")
      assert.isUndefined(answered.pollUnsafe(), "a held reply arrived")
      yield* proxy.release
      assert.deepStrictEqual((yield* Fiber.join(answered)).rows, [{ n: 2 }])
      assert.deepStrictEqual(yield* selectOne(behind), [{ one: 1 }])
    }).pipe(Effect.scoped), 30_000)
})
