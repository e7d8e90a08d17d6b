/**
 * The notifier on a connection that dies silently: a black-holed LISTEN
 * connection is noticed by the health check and replaced, and shutting the
 * notifier down never waits for a connection that does not answer. The
 * LISTEN probes (the node's own, and other nodes') reach no subscriber.
 */
import { PgClient } from "@effect/sql-pg"
import type * as PgConnection from "@effect/sql-pg/PgConnection"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, PubSub, Redacted, Scope } from "effect"
import * as Config from "../src/Config.ts"
import * as Notifier from "../src/Notifier.ts"
import { connectionSettings } from "../src/internal/directConnection.ts"
import { databaseUrl, uniquePrefix, quietLogs } from "./support/db.ts"
import { waitFor } from "./support/node.ts"
import { startProxy } from "./support/proxy.ts"

const prefix = uniquePrefix("notifier")

/**
 * A client on the real server (to send, and for the notifier's probe through the pool), and the
 * notifier's own address for its LISTEN connection: the proxy's.
 */
const clients = (proxyUrl: string) =>
  Effect.gen(function*() {
    const direct = yield* Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 2 }))
    return { direct, throughProxy: { url: Redacted.make(proxyUrl) } }
  })

/** Sends `insert` notifications until one arrives on `subscription`; the time it took, or none. */
const deliveredWithin = (
  subscription: PubSub.Subscription<Notifier.Notification>,
  millis: number
) =>
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    const start = Date.now()
    let n = 0
    while (Date.now() - start < millis) {
      yield* pg.notify(Config.channel(prefix, "insert"), JSON.stringify({ queue: "q", n: ++n }))
      const received = yield* PubSub.take(subscription).pipe(Effect.timeoutOption("200 millis"))
      if (Option.isSome(received)) return Option.some(Date.now() - start)
    }
    return Option.none<number>()
  })

describe("Notifier on a silently dead connection", () => {
  it.live("a black-holed LISTEN connection is replaced and notifications arrive again", () =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      const { direct, throughProxy } = yield* clients(proxy.url)
      const notifier = yield* Notifier.make({
        prefix,
        node: "blackholed",
        connection: throughProxy,
        healthCheckInterval: "500 millis",
        healthCheckTimeout: "1 second",
        maxReconnectDelayMillis: 200
      }).pipe(Effect.provideContext(direct))
      const subscription = yield* notifier.subscribe
      assert.isTrue(Option.isSome(yield* deliveredWithin(subscription, 10_000).pipe(Effect.provideContext(direct))))
      assert.strictEqual(yield* notifier.connections, 1)

      yield* proxy.blackhole
      yield* proxy.restore // new connections work again; the old one stays dead
      const took = yield* deliveredWithin(subscription, 25_000).pipe(Effect.provideContext(direct))

      assert.isTrue(Option.isSome(took), "no notification arrived after the black hole")
      // interval 0.5 s + timeout 1 s + the driver's 5 s to retire the socket + reconnect
      assert.isBelow(Option.getOrThrow(took), 15_000)
      assert.strictEqual(yield* notifier.connections, 2)
      // The dead connection is closed for real: only the new one is left open.
      yield* waitFor("the dead connection to be closed", Effect.map(proxy.connections, (n) => n === 1))
    }).pipe(Effect.provide(quietLogs)), 60_000)

  it.live("shutting down while black-holed completes promptly, also with a check in flight", () =>
    Effect.gen(function*() {
      const proxy = yield* startProxy(databaseUrl())
      const { direct, throughProxy } = yield* clients(proxy.url)
      for (const healthCheckInterval of ["1 hour", "100 millis"] as const) {
        const scope = yield* Scope.make()
        const notifier = yield* Notifier.make({
          prefix,
          node: "shutdown",
          connection: throughProxy,
          healthCheckInterval,
          healthCheckTimeout: "30 seconds"
        }).pipe(Effect.provideContext(direct), Scope.provide(scope))
        assert.isTrue(yield* notifier.isListening)
        yield* proxy.blackhole
        yield* Effect.sleep("500 millis")
        const start = Date.now()
        const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("10 seconds"))
        assert.isTrue(Option.isSome(closed), `shutdown hung (check every ${healthCheckInterval})`)
        // Under the 5 s the driver takes to give up on a socket that does not answer.
        assert.isBelow(Date.now() - start, 3_000, `shutdown was slow (check every ${healthCheckInterval})`)
        yield* proxy.restore
      }
    }).pipe(Effect.provide(quietLogs)), 60_000)
})

describe("the LISTEN probe", () => {
  it.live("probes, the node's own and another's, reach no subscriber; the signals around them do", () =>
    Effect.gen(function*() {
      const { direct } = yield* clients(databaseUrl())
      const notifier = yield* Notifier.make({ prefix, node: "probed" }).pipe(Effect.provideContext(direct))
      const subscription = yield* notifier.subscribe
      // Listening on every channel: an insert notification has come through.
      assert.isTrue(Option.isSome(yield* deliveredWithin(subscription, 10_000).pipe(Effect.provideContext(direct))))
      const pg = Context.get(direct, PgClient.PgClient)
      const signal = Config.channel(prefix, "signal")
      // Another node's probe between two signals, each sent in a statement of its own, in order.
      yield* pg.notify(signal, JSON.stringify({ action: "pause", n: 1 }))
      yield* pg.notify(signal, JSON.stringify({ oban_listen_probe: "another-node" }))
      yield* pg.notify(signal, JSON.stringify({ action: "pause", n: 2 }))
      const signals: Array<Readonly<Record<string, unknown>>> = []
      while (signals.length < 2) {
        const notification = yield* PubSub.take(subscription)
        if (notification.channel === "signal") signals.push(notification.payload)
      }
      // The notifier's own probe (sent as it connected) and another's were dropped: no other signal is queued.
      yield* Effect.sleep("300 millis")
      const more = (yield* PubSub.takeUpTo(subscription, 100)).filter((each) => each.channel === "signal")
      assert.deepStrictEqual([...signals, ...more.map((each) => each.payload)], [
        { action: "pause", n: 1 },
        { action: "pause", n: 2 }
      ])
    }).pipe(Effect.scoped), 30_000)
})

describe("connectionSettings", () => {
  it("a direct address replaces the client's address and credentials, and keeps its other settings", () => {
    const url = Redacted.make("postgres://direct@db.internal:5432/app")
    const client: PgConnection.Config = {
      host: "pooler.internal",
      port: 6432,
      database: "app",
      username: "pooled",
      password: Redacted.make("secret"),
      ssl: true,
      connectTimeout: "3 seconds",
      prepare: false
    }
    assert.deepStrictEqual(connectionSettings(client, { url }), { connectTimeout: "3 seconds", prepare: false, url })
    assert.deepStrictEqual(
      connectionSettings(client, { host: "db.internal", port: 5432 }),
      { connectTimeout: "3 seconds", prepare: false, host: "db.internal", port: 5432 }
    )
    assert.strictEqual(connectionSettings(client, undefined), client)
  })
})
