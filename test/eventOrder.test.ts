/**
 * The events of one job arrive in order even when the job starts, and
 * finishes, on this node before the call that inserted it has heard back: the
 * caller's connection goes through a proxy that holds the insert's reply (or
 * its COMMIT's) while the node, connected directly, runs the job.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Redacted, References, Schema, Scope, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { EventHub, type JobEvent } from "../src/Events.ts"
import * as Chain from "../src/Chain.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, dropSchemaOnClose, testLogLevel, uniquePrefix } from "./support/db.ts"
import { jobRow, producersRegistered, waitFor } from "./support/node.ts"
import { startProxy } from "./support/proxy.ts"

const Greet = Worker.make("OrderGreet", {
  args: Schema.Struct({ name: Schema.String }),
  perform: () => Effect.void
})

const direct = PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 4 })

/**
 * A node on the direct pool, the events it publishes from now on, and the
 * context of a caller whose one connection goes through a proxy (with the
 * node's settings and event hub, as an application using the layer has).
 */
const nodeAndCaller = (prefix: string, nodeScope?: Scope.Scope) =>
  Effect.gen(function*() {
    yield* dropSchemaOnClose(prefix)
    yield* Migrations.run({ prefix })
    const proxy = yield* startProxy(databaseUrl())
    const layer = Layer.fresh(Oban.layer({
      prefix,
      node: "order",
      queues: { default: 5 },
      workers: [Greet],
      pollInterval: "100 millis"
    }))
    const node = yield* (nodeScope === undefined ? Layer.build(layer) : Layer.buildWithScope(layer, nodeScope)).pipe(
      Effect.provideService(References.MinimumLogLevel, testLogLevel)
    )
    const oban = Context.get(node, Oban.Oban)
    const seen: Array<JobEvent> = []
    yield* oban.events.pipe(Stream.runForEach((event) => Effect.sync(() => seen.push(event))), Effect.forkScoped)
    yield* producersRegistered(prefix)
    yield* Effect.sleep("50 millis")
    const caller = yield* Layer.build(PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: 1 }))
    // A failed check must not leave the caller's connection waiting on held replies as the scope closes.
    yield* Effect.addFinalizer(() => proxy.release)
    const callerContext = Context.merge(node, caller)
    const kindsOf = (id: number) => seen.filter((event) => event.jobId === id).map((event) => event.kind)
    return { proxy, seen, callerContext, kindsOf, node }
  })

const completed = (prefix: string, name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly id: string }>`
      SELECT id FROM ${sql(prefix)}.oban_jobs_all WHERE args->>'name' = ${name} AND state = 'completed'`
    return rows.length === 1
  })

describe("events of a job that runs before its insert call returns", () => {
  const plain = uniquePrefix("order_plain")
  it.live("an insert outside a transaction: inserted, started, completed, in that order", () =>
    // The insert commits and wakes the node; its reply waits at the proxy.
    replyLate(plain, {
      holdAfter: "reply_held_1",
      name: "reply_held_1",
      call: Oban.insert(Greet.job({ name: "reply_held_1" })),
      waiting: "the insert call was still waiting for its reply"
    }), 30_000)

  const inTransaction = uniquePrefix("order_tx")
  it.live("an insert in the caller's transaction whose COMMIT reply is late: inserted still comes first", () =>
    commitReplyLate(inTransaction, Oban.insert(Greet.job({ name: "commit_held" }))), 30_000)

  const inSavepoint = uniquePrefix("order_sp")
  it.live("the same inside a savepoint released well before the COMMIT", () =>
    commitReplyLate(
      inSavepoint,
      Effect.flatMap(SqlClient, (sql) =>
        Effect.tap(sql.withTransaction(Oban.insert(Greet.job({ name: "commit_held" }))), () => Effect.sleep("1500 millis")))
    ), 30_000)
})

/**
 * Runs `body` (an insert of the job named "commit_held") in the caller's transaction, whose COMMIT's
 * reply waits at the proxy (the caller's is the proxy's only connection: its COMMIT runs) while the
 * node, which finds the job by polling, runs it; then checks as `replyLate` does.
 */
function commitReplyLate(prefix: string, body: Effect.Effect<{ readonly id: number }, unknown, SqlClient>) {
  return replyLate(prefix, {
    holdAfter: "COMMIT",
    name: "commit_held",
    call: Effect.flatMap(SqlClient, (sql) => sql.withTransaction(body)),
    waiting: "the transaction was still waiting for its COMMIT's reply"
  })
}

/**
 * Runs `call` (which inserts the job named `name`) as the caller, the replies after `holdAfter` held at
 * the proxy, while the node runs the job; then checks that the call was still waiting, that the node's
 * events for the job waited for its `inserted`, and that they came in order once the reply did.
 */
function replyLate(prefix: string, options: {
  readonly holdAfter: string
  readonly name: string
  readonly call: Effect.Effect<{ readonly id: number }, unknown, SqlClient>
  readonly waiting: string
}) {
  return Effect.gen(function*() {
    const { callerContext, kindsOf, proxy, seen } = yield* nodeAndCaller(prefix)
    yield* proxy.holdRepliesAfter(options.holdAfter)
    const insert = yield* Effect.forkChild(options.call.pipe(Effect.provideContext(callerContext)))
    yield* waitFor("the job ran on the node", completed(prefix, options.name))
    yield* Effect.sleep("200 millis")
    assert.isUndefined(insert.pollUnsafe(), options.waiting)
    // The node's events for the job wait for the insert's.
    assert.deepStrictEqual(seen.filter((event) => event.worker === "OrderGreet"), [])
    yield* proxy.release
    const job = yield* Fiber.join(insert)
    yield* waitFor("the job's events", Effect.sync(() => kindsOf(job.id).length === 3), "5 seconds")
    assert.deepStrictEqual(kindsOf(job.id), ["inserted", "started", "completed"])
    assert.strictEqual((yield* jobRow(prefix, job.id)).state, "completed")
  }).pipe(Effect.scoped, Effect.provide(direct))
}

describe("what an insert in flight holds back, and for how long", () => {
  const slow = uniquePrefix("order_slow")
  it.live("an insert whose reply takes longer than a second holds the node's events a second at most", () =>
    Effect.gen(function*() {
      const { callerContext, kindsOf, proxy, seen } = yield* nodeAndCaller(slow)
      yield* proxy.holdRepliesAfter("reply_held_long")
      const insert = yield* Effect.forkChild(
        Oban.insert(Greet.job({ name: "reply_held_long" })).pipe(Effect.provideContext(callerContext))
      )
      yield* waitFor("the job ran on the node", completed(slow, "reply_held_long"))
      const ranAt = Date.now()
      yield* waitFor("the job's events", Effect.sync(() => seen.some((event) => event.kind === "completed")), "5 seconds")
      const waited = Date.now() - ranAt
      assert.isAtMost(waited, 1_500, `its events waited ${waited} ms`)
      assert.isUndefined(insert.pollUnsafe(), "the insert call was still waiting for its reply")
      yield* proxy.release
      const job = yield* Fiber.join(insert)
      yield* waitFor("the inserted event", Effect.sync(() => kindsOf(job.id).length === 3), "5 seconds")
      // Out of order: the price of not holding every event for as long as a reply takes.
      assert.deepStrictEqual(kindsOf(job.id), ["started", "completed", "inserted"])
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)

  const rolledBack = uniquePrefix("order_rollback")
  it.live("inserts in transactions that rolled back hold back no other job's events", () =>
    Effect.gen(function*() {
      const direct = yield* SqlClient
      const { callerContext, kindsOf, node } = yield* nodeAndCaller(rolledBack)
      const hub = Context.get(node, EventHub)!
      for (let n = 0; n < 5; n++) {
        yield* Effect.flatMap(SqlClient, (sql) =>
          sql.withTransaction(Effect.andThen(Oban.insert(Greet.job({ name: `rolled_back_${n}` })), Effect.fail("no")))
        ).pipe(Effect.provideContext(callerContext), Effect.ignore)
      }
      const job = yield* Context.get(node, Oban.Oban).insert(Greet.job({ name: "after" }))
      yield* waitFor("the job ran", completed(rolledBack, "after"), "10 seconds")
      assert.deepStrictEqual([hub.order.held, hub.order.jobHeld.size], [[], 0], "no event waits")
      yield* waitFor("the job's events", Effect.sync(() => kindsOf(job.id).length === 3), "5 seconds")
      assert.deepStrictEqual(kindsOf(job.id), ["inserted", "started", "completed"])
      const left = yield* direct<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${direct(rolledBack)}.oban_jobs_all`
      assert.strictEqual(left[0]!.n, 1)
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)
})

/**
 * Runs `body` in the caller's transaction, then a job of the node's own beside it while that
 * transaction is still open, and returns `body`'s result and that job's events. Once the job's row
 * is completed its events have been published, unless something holds them (for up to a second).
 */
const besideOpenTransaction = <A>(prefix: string, body: Effect.Effect<A, unknown, SqlClient>) =>
  Effect.gen(function*() {
    const direct = yield* SqlClient
    const { callerContext, kindsOf, node } = yield* nodeAndCaller(prefix)
    const oban = Context.get(node, Oban.Oban)
    const hub = Context.get(node, EventHub)!
    const result = yield* Effect.flatMap(SqlClient, (sql) =>
      sql.withTransaction(Effect.gen(function*() {
        const result = yield* body
        const other = yield* oban.insert(Greet.job({ name: "beside" }))
        yield* waitFor("the other job ran", Effect.provideService(completed(prefix, "beside"), SqlClient, direct), "10 seconds")
        assert.deepStrictEqual([hub.order.held, hub.order.jobHeld.size], [[], 0], "no event waits")
        yield* waitFor("the other job's events", Effect.sync(() => kindsOf(other.id).length === 3), "5 seconds")
        return { result, beside: kindsOf(other.id) }
      }))).pipe(Effect.provideContext(callerContext))
    return { ...result, kindsOf }
  })

describe("a transaction still open after its insert", () => {
  const open = uniquePrefix("order_open")
  it.live("holds back no event: nothing it inserted can run before its commit", () =>
    Effect.gen(function*() {
      const { beside, kindsOf, result: first } = yield* besideOpenTransaction(
        open,
        Oban.insert(Greet.job({ name: "in_open_transaction" }))
      )
      assert.deepStrictEqual(beside, ["inserted", "started", "completed"])
      yield* waitFor("the first job's events", Effect.sync(() => kindsOf(first.id).length === 3), "5 seconds")
      assert.deepStrictEqual(kindsOf(first.id), ["inserted", "started", "completed"])
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)
})

describe("inserts in a transaction nested in the caller's (a savepoint), released while it goes on", () => {
  const nested = uniquePrefix("order_nested")
  it.live("hold back no other job's events", () =>
    Effect.gen(function*() {
      const { beside } = yield* besideOpenTransaction(
        nested,
        Effect.flatMap(SqlClient, (sql) => sql.withTransaction(Oban.insert(Greet.job({ name: "in_savepoint" }))))
      )
      assert.deepStrictEqual(beside, ["inserted", "started", "completed"])
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)

  const chained = uniquePrefix("order_chain")
  it.live("Chain.insert (a savepoint of its own inside the caller's transaction) holds back nothing either", () =>
    Effect.gen(function*() {
      const { beside } = yield* besideOpenTransaction(chained, Chain.insert("order-chain", [Greet.job({ name: "chained" })]))
      assert.deepStrictEqual(beside, ["inserted", "started", "completed"])
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)
})

describe("a node that shuts down while events wait", () => {
  const stopping = uniquePrefix("order_stop")
  it.live("publishes them before its stream ends", () =>
    Effect.gen(function*() {
      const direct = yield* SqlClient
      const nodeScope = yield* Scope.make()
      const { callerContext, node, proxy, seen } = yield* nodeAndCaller(stopping, nodeScope)
      const hub = Context.get(node, EventHub)!
      // An insert whose reply is late: the events of the job it started wait behind it.
      yield* proxy.holdRepliesAfter("held_at_stop")
      yield* Effect.forkChild(Oban.insert(Greet.job({ name: "held_at_stop" })).pipe(Effect.provideContext(callerContext)))
      yield* waitFor("the job ran", completed(stopping, "held_at_stop"), "10 seconds")
      assert.isAbove(hub.order.held.length, 0, "its events wait")
      yield* Scope.close(nodeScope, Exit.void)
      const [row] = yield* direct<{ readonly id: string }>`
        SELECT id::text AS id FROM ${direct(stopping)}.oban_jobs_all WHERE args->>'name' = 'held_at_stop'`
      const kinds = () => seen.filter((event) => event.jobId === Number(row!.id)).map((event) => event.kind)
      yield* waitFor("its events", Effect.sync(() => kinds().length === 2), "5 seconds")
      assert.deepStrictEqual(kinds(), ["started", "completed"])
    }).pipe(Effect.scoped, Effect.provide(direct)), 30_000)
})
