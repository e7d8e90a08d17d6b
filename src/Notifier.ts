/**
 * One LISTEN connection per node for the prefix's channels (`insert`,
 * `signal`, `leader`), fanned out in-process to any number of subscribers.
 *
 * The connection is the notifier's own (not a pool slot). A connection can
 * die loudly (reset, server restart) or silently (a partition leaves it open
 * but nothing arrives), so the notifier also asks it `SELECT 1` on a schedule
 * and gives up on it when no answer comes in time. Either way the session is
 * torn down and re-established after a jittered, growing delay; meanwhile
 * producers keep polling, so a notification is only ever an accelerator,
 * never the only way a job is found.
 *
 * A pooler in transaction mode (PgBouncer, Supavisor, RDS Proxy) cannot
 * carry LISTEN: its notifications reach whichever client holds the server
 * connection next. Behind one, give the notifier a direct address
 * (`connection`).
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgConnection from "@effect/sql-pg/PgConnection"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { channel } from "./Config.ts"
import { connectionSettings, type DirectConnection } from "./internal/directConnection.ts"
import { jsonObjectIn } from "./internal/jsonParse.ts"
import * as ListenProbe from "./internal/listenProbe.ts"
import { retryDelay } from "./internal/retryDelay.ts"
import { timeoutError, withStatementTimeout } from "./internal/statementTimeout.ts"
import * as FailureStreak from "./internal/failureStreak.ts"

/**
 * @since 0.1.0
 */
export type Channel = "insert" | "signal" | "leader"

/**
 * A notification with its payload parsed from JSON.
 *
 * @since 0.1.0
 */
export interface Notification {
  readonly channel: Channel
  readonly payload: Readonly<Record<string, unknown>>
}

const channels: ReadonlyArray<Channel> = ["insert", "signal", "leader"]

/**
 * A direct address for the LISTEN connection (see `Oban.layer`'s
 * `directConnection`).
 *
 * @since 0.1.0
 */
export type Connection = DirectConnection

/**
 * @since 0.1.0
 */
export interface Options {
  readonly prefix: string
  readonly node: string
  /**
   * A direct address for the LISTEN connection, when the client's goes
   * through a pooler in transaction mode. Default: the client's.
   */
  readonly connection?: Connection | undefined
  /** The longest wait between reconnection attempts. Default 5 seconds. */
  readonly maxReconnectDelayMillis?: number | undefined
  /** How often the connection is checked with `SELECT 1`. Default 10 seconds. */
  readonly healthCheckInterval?: Duration.Input | undefined
  /**
   * How long a check (and setting up LISTEN) may take before the connection
   * is given up and replaced. Default 5 seconds.
   */
  readonly healthCheckTimeout?: Duration.Input | undefined
}

/**
 * How long a failed check waits for the driver to retire the connection on
 * its own (it destroys the socket about 5 s after an unanswered statement)
 * before the notifier closes it itself.
 */
const retireGrace = Duration.seconds(6)

/**
 * The application name of the listening connection, so operators (and tests)
 * can find it in `pg_stat_activity`.
 *
 * @since 0.1.0
 */
export const applicationName = (node: string): string => `oban_notifier ${node}`.slice(0, 63)

/**
 * @since 0.1.0
 */
export class Notifier extends Context.Service<Notifier, {
  /** A subscription to every notification received from now on, for the scope's life. */
  readonly subscribe: Effect.Effect<PubSub.Subscription<Notification>, never, Scope.Scope>
  /** Whether the LISTEN connection is up right now. */
  readonly isListening: Effect.Effect<boolean>
  /** How many times LISTEN has been established (1 after the first connect). */
  readonly connections: Effect.Effect<number>
}>()("effect-oban/Notifier") {}

/**
 * A notifier on its own connection, made from the application's `PgClient`
 * settings, for the scope's life.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Notifier["Service"], never, PgClient.PgClient | Scope.Scope> =>
    Effect.gen(function*() {
      const pg = yield* PgClient.PgClient
      const hub = yield* Effect.acquireRelease(PubSub.unbounded<Notification>(), PubSub.shutdown)
      const listening = yield* Ref.make(false)
      const connectionCount = yield* Ref.make(0)
      const maxDelay = options.maxReconnectDelayMillis ?? 5_000
      const firstAttempt = yield* Deferred.make<void>()

      const healthCheckInterval = options.healthCheckInterval ?? Duration.seconds(10)
      const healthCheckTimeout = options.healthCheckTimeout ?? Duration.seconds(5)
      // Connecting has its own timeout in the driver; LISTEN gets the check's.
      const setUpTimeout = Duration.sum(
        Duration.fromInputUnsafe(pg.config.connectTimeout ?? Duration.seconds(5)),
        Duration.fromInputUnsafe(healthCheckTimeout)
      )

      // Sent after each connect, on the signal channel; every node's notifier drops probes.
      const probe = ListenProbe.make(pg, channel(options.prefix, "signal"))

      const pump = ([name, queue]: readonly [Channel, Queue.Dequeue<{ readonly payload: string }, unknown>]) =>
        Effect.forever(Effect.gen(function*() {
          const notification = yield* Queue.take(queue)
          const payload = jsonObjectIn(notification.payload)
          if (payload !== undefined && !probe.seen(payload)) yield* PubSub.publish(hub, { channel: name, payload })
        }))

      // Fails when the connection does not answer in time. The driver then
      // destroys the socket a few seconds later, which fails the LISTEN queues;
      // the grace lets that happen first, so the socket is really gone.
      const healthCheck = (pinned: PgConnection.PgConnection) =>
        Effect.forever(Effect.andThen(
          Effect.sleep(healthCheckInterval),
          withStatementTimeout(pinned.query("SELECT 1"), {
            timeout: healthCheckTimeout,
            operation: "LISTEN connection health check",
            connection: "own"
          })
        )).pipe(
          Effect.tapError(() => Effect.sleep(retireGrace))
        )

      // A lost connection, and each failed attempt to connect again since, count as failures.
      const streak = FailureStreak.make("LISTEN connection up again")
      const session = Effect.scoped(Effect.gen(function*() {
        // The connection has a scope of its own, closed before the LISTEN
        // registrations are released: on a connection that does not answer,
        // their UNLISTEN would wait forever; on a closed one it is skipped.
        const connectionScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(connectionScope, Exit.void))
        const setUp = Effect.gen(function*() {
          const connection = yield* PgConnection.make({
            ...connectionSettings(pg.config, options.connection),
            applicationName: applicationName(options.node)
          })
            .pipe(Scope.provide(connectionScope))
          // One pinned session for every channel: re-pinning a pinned session is a no-op.
          const pinned = yield* connection.pin
          // The three LISTENs at once: the node's start waits for them.
          const queues = yield* Effect.forEach(channels, (name) =>
            Effect.map(pinned.listen(channel(options.prefix, name)), (queue) => [name, queue] as const), {
            concurrency: "unbounded"
          })
          return { pinned, queues }
        })
        const { pinned, queues } = yield* setUp.pipe(
          Effect.timeoutOrElse({
            duration: setUpTimeout,
            orElse: () => Effect.fail(timeoutError("LISTEN set-up", Duration.toMillis(setUpTimeout), "own"))
          })
        )
        yield* Effect.addFinalizer(() => Scope.close(connectionScope, Exit.void))
        yield* Ref.set(listening, true)
        yield* Ref.update(connectionCount, (n) => n + 1)
        yield* streak.succeeded
        yield* Deferred.succeed(firstAttempt, undefined)
        yield* Effect.addFinalizer(() => Ref.set(listening, false))
        yield* Effect.forkScoped(probe.run)
        // Runs until a queue fails (the connection is gone) or a check fails.
        return yield* Effect.raceAllFirst([...queues.map(pump), healthCheck(pinned)])
      }))

      const loop = Effect.gen(function*() {
        while (true) {
          const cause = yield* Effect.flip(Effect.sandbox(session))
          yield* Deferred.succeed(firstAttempt, undefined)
          const failures = streak.failed()
          const delay = yield* retryDelay(failures, { maxMillis: maxDelay })
          // "Lost" only for a connection that was up: a node whose database never answered never had one.
          const what = (yield* Ref.get(connectionCount)) === 0 ? "LISTEN connection could not be made" : "LISTEN connection lost"
          yield* streak.warn(`${what}; reconnecting in ${Math.round(delay)} ms`, cause)
          yield* Effect.sleep(delay)
        }
      })
      yield* Effect.forkScoped(loop)
      // Start listening before the node starts working, so that no signal sent
      // after start-up is missed; a database that does not answer delays the
      // start by at most a few seconds (polling covers the rest).
      yield* Deferred.await(firstAttempt).pipe(Effect.timeoutOption("5 seconds"))

      return Notifier.of({
        subscribe: PubSub.subscribe(hub),
        isListening: Ref.get(listening),
        connections: Ref.get(connectionCount)
      })
    }).pipe(Effect.annotateLogs({ component: "Notifier", node: options.node }))

/**
 * The notifier as a layer.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Notifier, never, PgClient.PgClient> =>
  Layer.effect(Notifier, make(options))
