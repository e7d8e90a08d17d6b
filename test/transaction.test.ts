/**
 * The library's own transactions (`transaction`): the semantics of
 * `sql.withTransaction` (commit, rollback, `afterCommit` only after the
 * commit, a savepoint inside the caller's transaction), and what
 * `sql.withTransaction` does not give: a BEGIN or COMMIT whose reply is lost
 * can be interrupted, so a caller's timeout returns and the pool still closes;
 * and no connection goes back to the pool inside a transaction.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Cause, type Duration, Effect, Exit, Fiber, Layer, Redacted, Schema, Scope } from "effect"
import { SqlError } from "effect/sql/SqlError"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { transaction } from "../src/internal/sql/transaction.ts"
import { databaseUrl, dropSchemaOnClose, pgLayer, uniquePrefix } from "./support/db.ts"
import { type Proxy, startProxy } from "./support/proxy.ts"

const schema = uniquePrefix("tx")
const table = `"${schema}".rows`

const setup = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* dropSchemaOnClose(schema)
  yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`)
  yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS ${table} (name text PRIMARY KEY)`)
})

const insert = (name: string) => Effect.flatMap(SqlClient, (sql) => sql.unsafe(`INSERT INTO ${table} VALUES ($1)`, [name]))

/** Whether the row is there, read on a connection of its own (outside any transaction of the fiber). */
const present = (direct: SqlClient, name: string) =>
  Effect.map(direct.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE name = $1`, [name]), (rows) =>
    rows[0]!.n === 1)

/** A pool of `size` connections through `url`, each opened now, in a scope of its own. */
const poolThrough = (url: string, size: number) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    // Closed with the test's scope unless the test closed it already.
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      PgClient.layer({ url: Redacted.make(url), maxConnections: size, connectTimeout: "2 seconds" }),
      scope
    )
    const sql = yield* Effect.provideContext(SqlClient, context)
    const pids = yield* Effect.all(
      Array.from({ length: size }, () => sql<{ pid: number }>`SELECT pg_backend_pid() AS pid, pg_sleep(0.05)`),
      { concurrency: "unbounded" }
    )
    return { sql, scope, pids: pids.map((rows) => rows[0]!.pid) }
  })

/**
 * The pool's one connection is still `pid` (it was not retired, which would make the check moot),
 * and the server sees it idle, not idle in a transaction.
 */
const outsideTransaction = (direct: SqlClient, pool: SqlClient, pid: number) =>
  Effect.gen(function*() {
    const [own] = yield* pool<{ pid: number }>`SELECT pg_backend_pid() AS pid`
    assert.strictEqual(own!.pid, pid, "the connection was retired")
    const [row] = yield* direct<{ state: string }>`SELECT state FROM pg_stat_activity WHERE pid = ${pid}`
    assert.strictEqual(row!.state, "idle")
  })

/** Closes a pool, failing the test when it has not closed within `millis`; returns how long it took. */
const closeWithin = (scope: Scope.Closeable, millis: number) =>
  Effect.gen(function*() {
    const started = Date.now()
    const closing = yield* Effect.forkDetach(Scope.close(scope, Exit.void))
    yield* Fiber.join(closing).pipe(
      Effect.timeoutOrElse({ duration: millis, orElse: () => Effect.die(new Error("the pool never closed")) })
    )
    return Date.now() - started
  })

/**
 * Runs `call` on a pool of two connections through a fresh proxy (its replies dropped first unless
 * `dropRepliesFirst` is false: then `call` drops them itself), under `timeout`: the call must fail
 * and return within `withinMillis`, and the pool must close within 10 s (no connection left checked
 * out by a statement waiting for good).
 */
const boundedWhenRepliesStop = <A, E, R>(options: {
  readonly call: (sql: SqlClient, proxy: Proxy) => Effect.Effect<A, E, R>
  readonly timeout: Duration.Input
  readonly withinMillis: number
  readonly dropRepliesFirst?: boolean
}) =>
  Effect.gen(function*() {
    const proxy = yield* startProxy(databaseUrl())
    const { sql, scope } = yield* poolThrough(proxy.url, 2)
    if (options.dropRepliesFirst !== false) yield* proxy.dropReplies
    const started = Date.now()
    const result = yield* Effect.exit(options.call(sql, proxy).pipe(Effect.timeout(options.timeout)))
    const returned = Date.now() - started
    assert.isTrue(Exit.isFailure(result))
    assert.isBelow(returned, options.withinMillis, `the call returned after ${returned} ms`)
    const closed = yield* closeWithin(scope, 30_000)
    assert.isBelow(closed, 10_000, `the pool took ${closed} ms to close`)
  })

describe("transaction", () => {
  it.live("commits the body's writes, and runs afterCommit callbacks once they are visible to everyone", () =>
    Effect.gen(function*() {
      yield* setup
      const sql = yield* SqlClient
      const seen: Array<boolean> = []
      yield* transaction(
        sql,
        Effect.andThen(insert("kept"), sql.afterCommit(Effect.orDie(Effect.map(present(sql, "kept"), (is) => void seen.push(is)))))
      )
      assert.deepStrictEqual(seen, [true])
      assert.isTrue(yield* present(sql, "kept"))
    }).pipe(Effect.scoped, Effect.provide(pgLayer())))

  it.live("rolls back on failure and on interruption, runs no callback, and the connection goes back outside a transaction", () =>
    Effect.gen(function*() {
      yield* setup
      const direct = yield* SqlClient
      // One connection: both transactions use it, and it is checked below.
      const { sql, pids } = yield* poolThrough(databaseUrl(), 1)
      let callbacks = 0
      const failed = yield* Effect.exit(transaction(
        sql,
        Effect.andThen(
          Effect.andThen(insert("failed"), sql.afterCommit(Effect.sync(() => void callbacks++))),
          Effect.fail("no" as const)
        )
      ).pipe(Effect.provideService(SqlClient, sql)))
      assert.isTrue(Exit.isFailure(failed))
      const interrupted = yield* Effect.forkChild(
        transaction(sql, Effect.andThen(insert("interrupted"), Effect.never)).pipe(Effect.provideService(SqlClient, sql))
      )
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(interrupted)
      assert.strictEqual(callbacks, 0)
      assert.isFalse(yield* present(direct, "failed"))
      assert.isFalse(yield* present(direct, "interrupted"))
      yield* outsideTransaction(direct, sql, pids[0]!)
    }).pipe(Effect.scoped, Effect.provide(pgLayer())))

  it.live("inside the caller's transaction it is a savepoint: the caller's rollback takes it back, its own failure only itself", () =>
    Effect.gen(function*() {
      yield* setup
      const sql = yield* SqlClient
      let callbacks = 0
      const outer = yield* Effect.exit(sql.withTransaction(
        Effect.andThen(
          transaction(sql, Effect.andThen(insert("inner"), sql.afterCommit(Effect.sync(() => void callbacks++)))),
          Effect.fail("caller fails" as const)
        )
      ))
      assert.isTrue(Exit.isFailure(outer))
      assert.isFalse(yield* present(sql, "inner"))
      assert.strictEqual(callbacks, 0)
      yield* sql.withTransaction(
        Effect.gen(function*() {
          yield* insert("caller")
          yield* Effect.exit(transaction(sql, Effect.andThen(insert("savepoint"), Effect.fail("no" as const))))
          yield* transaction(sql, Effect.andThen(insert("second"), sql.afterCommit(Effect.sync(() => void callbacks++))))
          // Nothing runs before the caller commits.
          assert.strictEqual(callbacks, 0)
        })
      )
      assert.strictEqual(callbacks, 1)
      assert.isTrue(yield* present(sql, "caller"))
      assert.isFalse(yield* present(sql, "savepoint"))
      assert.isTrue(yield* present(sql, "second"))
    }).pipe(Effect.scoped, Effect.provide(pgLayer())))

  it.live("inside one of its own it is a savepoint too: a failed one rolls back alone, callbacks wait for the outer commit", () =>
    Effect.gen(function*() {
      yield* setup
      const sql = yield* SqlClient
      let callbacks = 0
      yield* transaction(
        sql,
        Effect.gen(function*() {
          yield* insert("outer")
          yield* Effect.exit(transaction(sql, Effect.andThen(insert("failed inner"), Effect.fail("no" as const))))
          yield* transaction(sql, Effect.andThen(insert("inner"), sql.afterCommit(Effect.sync(() => void callbacks++))))
          assert.strictEqual(callbacks, 0)
        })
      )
      assert.strictEqual(callbacks, 1)
      assert.isTrue(yield* present(sql, "outer"))
      assert.isFalse(yield* present(sql, "failed inner"))
      assert.isTrue(yield* present(sql, "inner"))
    }).pipe(Effect.scoped, Effect.provide(pgLayer())))

  it.live("a savepoint of its own is released when it ends (no nesting piles up in a long transaction)", () =>
    Effect.gen(function*() {
      yield* setup
      const sql = yield* SqlClient
      const after = yield* Effect.exit(transaction(
        sql,
        Effect.andThen(transaction(sql, insert("released")), sql`ROLLBACK TO SAVEPOINT oban_1`)
      ))
      assert.isTrue(Exit.isFailure(after))
      assert.include(String(Exit.isFailure(after) ? after.cause : ""), "does not exist")
    }).pipe(Effect.scoped, Effect.provide(pgLayer())))

  it.live("a SAVEPOINT whose reply is lost: the caller's timeout returns, and the pool closes", () =>
    boundedWhenRepliesStop({
      call: (sql, proxy) => transaction(sql, Effect.andThen(proxy.dropReplies, transaction(sql, sql`SELECT 1`))),
      dropRepliesFirst: false,
      timeout: "300 millis",
      withinMillis: 9_000
    }).pipe(Effect.scoped), 60_000)

  it.live("a BEGIN whose reply is lost: the caller's timeout returns within the driver's 5 s, and the pool closes", () =>
    boundedWhenRepliesStop({ call: (sql) => transaction(sql, sql`SELECT 1`), timeout: "300 millis", withinMillis: 9_000 })
      .pipe(Effect.scoped), 60_000)

  it.live("a COMMIT whose reply is lost: the caller's timeout returns, no callback runs, and the pool closes", () =>
    Effect.gen(function*() {
      yield* setup
      const direct = yield* SqlClient
      let callbacks = 0
      yield* boundedWhenRepliesStop({
        call: (sql, proxy) =>
          transaction(
            sql,
            Effect.gen(function*() {
              yield* sql.unsafe(`INSERT INTO ${table} VALUES ('lost reply')`)
              yield* sql.afterCommit(Effect.sync(() => void callbacks++))
              // From here the server still runs what it is sent, but its replies never arrive.
              yield* proxy.dropReplies
            })
          ),
        dropRepliesFirst: false,
        timeout: "1 second",
        withinMillis: 10_000
      })
      assert.strictEqual(callbacks, 0)
      // The server committed: a caller whose COMMIT reply was lost cannot tell, as with any write.
      assert.isTrue(yield* present(direct, "lost reply"))
    }).pipe(Effect.scoped, Effect.provide(pgLayer())), 60_000)

  it.live("an interrupted BEGIN that ran is rolled back: its connection goes back to the pool outside a transaction", () =>
    Effect.gen(function*() {
      const direct = yield* SqlClient
      // The BEGIN runs on the server; its reply arrives right after the interruption, within the
      // driver's grace (10 ms) before it cancels, so the connection is kept, not retired. On a loaded
      // machine the reply can miss the grace (the connection is then retired, and the check would be
      // moot): the scene is staged again, up to five times, until the connection was kept.
      for (let attempt = 1; ; attempt++) {
        const proxy = yield* startProxy(databaseUrl())
        const { sql, scope, pids } = yield* poolThrough(proxy.url, 1)
        yield* proxy.holdReplies
        const fiber = yield* Effect.forkChild(transaction(sql, sql`SELECT 1`))
        yield* Effect.sleep("200 millis")
        const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
        yield* Effect.yieldNow
        yield* proxy.release
        yield* Fiber.join(interrupting)
        const [own] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
        if (own!.pid === pids[0]! || attempt === 5) {
          yield* outsideTransaction(direct, sql, pids[0]!)
          yield* closeWithin(scope, 30_000)
          return
        }
        yield* closeWithin(scope, 30_000)
        yield* proxy.close
      }
    }).pipe(Effect.scoped, Effect.provide(pgLayer())), 120_000)
})

const Sync = Worker.make("Sync", {
  args: Schema.Struct({ account: Schema.String }),
  unique: { period: "forever" },
  perform: () => Effect.void
})

describe("a transaction the server ends when idle", () => {
  it.live("fails with a retryable ConnectionError that says why, keeps nothing, and the pool goes on", () =>
    Effect.gen(function*() {
      yield* setup
      const direct = yield* SqlClient
      const { sql } = yield* poolThrough(databaseUrl(), 1)
      // A body stalled between two statements past the 10 s the library's transactions allow.
      const exit = yield* Effect.exit(
        transaction(sql, Effect.andThen(Effect.andThen(insert("stalled"), Effect.sleep("11 seconds")), insert("late")))
          .pipe(Effect.provideService(SqlClient, sql))
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
      assert.isTrue(error?._tag === "Some" && error.value instanceof SqlError)
      const failure = (error as { readonly value: SqlError }).value
      assert.strictEqual(failure.reason._tag, "ConnectionError")
      assert.isTrue(failure.isRetryable)
      assert.match(failure.message, /ended this transaction of effect-oban's after it sat idle past the 10 s/)
      assert.isFalse(yield* present(direct, "stalled"))
      // The pool replaced the ended connection.
      yield* transaction(sql, insert("after")).pipe(Effect.provideService(SqlClient, sql))
      assert.isTrue(yield* present(direct, "after"))
    }).pipe(Effect.scoped, Effect.provide(pgLayer())), 40_000)
})

describe("library calls that open a transaction of their own", () => {
  const prefix = uniquePrefix("tx_calls")

  /** `call` with the client whose replies stop arriving: its caller's timeout (300 ms) must still return. */
  const deafCall = <A, E>(call: Effect.Effect<A, E, SqlClient>) =>
    boundedWhenRepliesStop({
      call: (sql) => Effect.provideService(call, SqlClient, sql),
      timeout: "300 millis",
      withinMillis: 9_000
    })

  it.live("insertAll of unique jobs and retryJob: the caller's timeout returns though BEGIN gets no reply, and the pool closes", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* dropSchemaOnClose(prefix)
      yield* Migrations.run({ prefix })
      const [job] = yield* Oban.insertAll([Sync.job({ account: "a" })])
      yield* sql.unsafe(`UPDATE "${prefix}".oban_jobs SET state = 'discarded', discarded_at = now() WHERE id = $1`, [job!.id])
      yield* deafCall(Oban.insertAll([Sync.job({ account: "b" }), Sync.job({ account: "c" })]))
      yield* deafCall(Oban.retryJob(job!.id))
    }).pipe(Effect.scoped, Effect.provide(Config.layer({ prefix })), Effect.provide(pgLayer())), 60_000)
})
