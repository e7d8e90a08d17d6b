/**
 * One LISTEN connection per node for the prefix's channels (`insert`,
 * `signal`, `leader`), fanned out in-process to any number of subscribers.
 *
 * The connection is the notifier's own (not a pool slot). When it dies, it is
 * re-established after a jittered, growing delay; meanwhile producers keep
 * polling, so a notification is only ever an accelerator, never the only way
 * a job is found.
 *
 * @since 0.1.0
 */
import { PgClient, PgConnection } from "@effect/sql-pg"
import { Cause, Context, Deferred, Effect, Layer, PubSub, Queue, Ref, Scope } from "effect"
import { channel } from "./Config.ts"
import { retryDelay } from "./internal/retryDelay.ts"

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
 * @since 0.1.0
 */
export interface Options {
  readonly prefix: string
  readonly node: string
  /** The longest wait between reconnection attempts. Default 5 seconds. */
  readonly maxReconnectDelayMillis?: number | undefined
}

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

const parse = (text: string): Readonly<Record<string, unknown>> | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined
  } catch {
    return undefined
  }
}

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

      const session = Effect.scoped(Effect.gen(function*() {
        const connection = yield* PgConnection.make({ ...pg.config, applicationName: applicationName(options.node) })
        // One pinned session for every channel: re-pinning a pinned session is a no-op.
        const pinned = yield* connection.pin
        const queues = yield* Effect.forEach(channels, (name) =>
          Effect.map(pinned.listen(channel(options.prefix, name)), (queue) => [name, queue] as const))
        yield* Ref.set(listening, true)
        yield* Ref.update(connectionCount, (n) => n + 1)
        yield* Deferred.succeed(firstAttempt, undefined)
        yield* Effect.addFinalizer(() => Ref.set(listening, false))
        const pump = ([name, queue]: readonly [Channel, Queue.Dequeue<{ readonly payload: string }, unknown>]) =>
          Effect.forever(Effect.gen(function*() {
            const notification = yield* Queue.take(queue)
            const payload = parse(notification.payload)
            if (payload !== undefined) yield* PubSub.publish(hub, { channel: name, payload })
          }))
        // Runs until one of the queues fails, i.e. the connection is gone.
        return yield* Effect.raceAll(queues.map(pump))
      }))

      const loop = Effect.gen(function*() {
        let failures = 0
        while (true) {
          const before = yield* Ref.get(connectionCount)
          const cause = yield* Effect.flip(Effect.sandbox(session))
          yield* Deferred.succeed(firstAttempt, undefined)
          if ((yield* Ref.get(connectionCount)) > before) failures = 0
          failures++
          const delay = yield* retryDelay(failures, { maxMillis: maxDelay })
          yield* Effect.logWarning(`LISTEN connection lost; reconnecting in ${Math.round(delay)} ms`).pipe(
            Effect.annotateLogs({ cause: Cause.pretty(cause) })
          )
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
