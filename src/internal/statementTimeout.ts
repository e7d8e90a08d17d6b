/**
 * A deadline for database work a node cannot live without (fetch, outcome
 * writes, heartbeats, the leader lease), so that a connection which stays
 * open but never answers (a network partition, a NAT that dropped the flow)
 * fails the work in bounded time instead of hanging the node or its shutdown.
 *
 * What the driver (`@effect/sql-pg` 4.1.5) does with an interrupted statement
 * decides the shape of this helper:
 * - without `multiplex`, interrupting a statement waits for the driver to
 *   drain the connection: it sends a cancel request on a side connection and,
 *   when nothing answers within its fixed 5 s, destroys the socket and retires
 *   the connection from the pool. A plain `Effect.timeout` therefore returns
 *   about 5 s late, but the pool never hands the dead connection out again;
 * - with `multiplex: true`, an interrupted statement is only abandoned: the
 *   connection stays in the pool and the statements pipelined after it hang
 *   as well, until TCP gives up (minutes). Only the pool's `connectionTTL`
 *   retires such a connection (at the next checkout after the TTL).
 *
 * So the work runs in a fiber of its own and the caller waits for it at most
 * `timeout`; when the deadline passes, the caller fails at once and the
 * work's fiber is interrupted in the background, where the driver takes its
 * time to retire the connection.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import { SqlError, StatementTimeoutError } from "effect/sql/SqlError"

/**
 * @since 0.1.0
 */
export interface Options {
  /** How long the work may take, in real (wall-clock) time. */
  readonly timeout: Duration.Input
  /** What the work is (`"fetch"`, `"ack"`, ...), for the error and the logs. */
  readonly operation: string
  /**
   * When the caller is interrupted (not at the deadline), how long it waits,
   * in real time, for the work to end once interrupted. The driver ends an
   * interrupted statement when the server says it has ended (committed or
   * cancelled), or gives its connection up after 5 s: a caller that must
   * know the statement can no longer commit (to undo what it did) waits
   * `"6 seconds"`. Without it the caller does not wait.
   */
  readonly settleOnInterrupt?: Duration.Input | undefined
  /**
   * Where the work gets its connection: from the pool (the default), whose
   * wait counts in the deadline, or a connection of its own (heartbeats, the
   * lease, LISTEN), which only the server or the network can hold up. Said in
   * the error.
   */
  readonly connection?: "pool" | "own" | undefined
  /**
   * Called when the caller fails other than by its own interruption (at the
   * deadline, while the work goes on in the background, or with the work's
   * own failure, when it has ended already), with an effect that ends when
   * the work has ended (the driver heard the statement end, committed or
   * cancelled, or gave its connection up): what a caller must wait for
   * before it can tell what the work left behind.
   */
  readonly onAbandon?: ((ended: Effect.Effect<void>) => void) | undefined
}

/**
 * A timer on the real clock. Statement deadlines are about the network, not
 * about the application's (possibly virtual) time: under `TestClock` a test
 * that moves time by hours must not time out a statement in flight.
 */
export const realSleep = (millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * The error of work that missed its deadline: a `SqlError` whose reason is a
 * retryable `StatementTimeoutError`, so loops that already retry failed
 * database work retry this too.
 *
 * @since 0.1.0
 */
export const timeoutError = (operation: string, millis: number, connection: "pool" | "own" = "pool"): SqlError =>
  new SqlError({
    reason: new StatementTimeoutError({
      cause: new Error(`${operation} did not finish within ${millis} ms`),
      // The deadline counts the wait for a pooled connection too: a pool whose every connection workers
      // hold is as likely a cause as a server or network that does not answer, and the message says both.
      message: connection === "pool"
        ? `${operation} did not finish within ${millis} ms (no free connection in the pool, or no answer ` +
          "from the server); given up, and the connection it used, if any, retired"
        : `${operation} did not finish within ${millis} ms (no answer from the server on the node's own ` +
          "connection); given up, and the connection retired",
      operation
    })
  })

/**
 * Runs `self` and fails with a retryable `SqlError` (`StatementTimeoutError`)
 * when it has not finished after `timeout` of real time. The caller gets the
 * failure at the deadline (not seconds later); the work itself is interrupted
 * in the background, where the driver cancels the statement and retires the
 * connection. The same happens when the caller is interrupted (e.g. shutdown):
 * it never waits for a connection that does not answer.
 *
 * Wrap a whole unit of work, e.g. a whole `sql.withTransaction(...)`, not a
 * statement inside a transaction: the transaction's connection has to be
 * owned by the interrupted fiber to be released with it.
 *
 * @since 0.1.0
 */
export const withStatementTimeout: {
  (options: Options): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: Options): Effect.Effect<A, E | SqlError, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, options: Options): Effect.Effect<A, E | SqlError, R> => {
  const millis = Duration.toMillis(Duration.fromInputUnsafe(options.timeout))
  const settleMillis = options.settleOnInterrupt === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(options.settleOnInterrupt))
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDetach(restore(self)), (fiber) =>
      restore(
        Effect.raceFirst(
          Fiber.join(fiber),
          // Built only when the deadline passes: an error made up front for every call captures a
          // stack, and the stack's frames keep alive what the caller held then (the fetch before it,
          // which held the one before it, ...), so a long drain's memory grew with every fetch.
          Effect.andThen(realSleep(millis), Effect.failSync(() => timeoutError(options.operation, millis, options.connection)))
        )
      ).pipe(
        Effect.onExit((exit) => {
          if (Exit.isSuccess(exit)) return Effect.void
          // Built only on failure: nothing more on the path of work that succeeds (every fetch and ack).
          if (options.onAbandon !== undefined && !Cause.hasInterruptsOnly(exit.cause)) {
            options.onAbandon(Effect.asVoid(Fiber.await(fiber)))
          }
          const interrupt = Effect.forkDetach(Fiber.interrupt(fiber))
          return settleMillis === undefined || !Cause.hasInterruptsOnly(exit.cause)
            ? Effect.asVoid(interrupt)
            : Effect.flatMap(interrupt, (interrupting) => Effect.raceFirst(Fiber.await(interrupting), realSleep(settleMillis)))
        })
      ))
  )
})
