/**
 * The transaction of every library call and background loop that opens one
 * itself, where a connection that stops answering must not hang it for good.
 *
 * `sql.withTransaction` sends BEGIN, COMMIT and ROLLBACK uninterruptibly. On
 * a connection whose replies are lost (a partition, a NAT that forgot the
 * flow, a proxy that hangs) such a statement waits until TCP gives up: a
 * caller's `Effect.timeout` does not return, a loop's deadline returns but
 * the fiber left behind keeps the connection checked out, and closing the
 * pool at shutdown waits for that connection, so the process never exits.
 *
 * `transaction` is `sql.withTransaction` (the same `afterCommit` callbacks,
 * run only after the COMMIT succeeded, and a savepoint inside the caller's
 * transaction, exactly as there) whose BEGIN and COMMIT can be interrupted:
 * on interruption the driver cancels the statement and, when nothing answers
 * within its 5 s, retires the connection. So an interrupted call returns
 * within about 5 s, as a plain statement does.
 *
 * No connection goes back to the pool inside a transaction: an interrupted
 * BEGIN may have run, so a ROLLBACK follows it; a ROLLBACK (after a failure,
 * an interruption, or a COMMIT that did not run) has a deadline, and one that
 * misses it is given up with its connection (the pool retires a connection
 * handed back with a statement still on it).
 *
 * An interrupted COMMIT may have committed: the caller cannot tell, as with
 * any write whose reply was lost, and the `afterCommit` callbacks do not run.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { Connection } from "effect/sql/SqlConnection"
import { makeWithTransaction, type SqlClient } from "effect/sql/SqlClient"
import { ConnectionError, isSqlError, SqlError, UnknownError } from "effect/sql/SqlError"
import { sqlState } from "../serverUnavailable.ts"
import { withStatementTimeout } from "../statementTimeout.ts"

/** How long a ROLLBACK may take before its connection is given up. */
const rollbackDeadline = "3 seconds"

type Transact = <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

const perClient = new WeakMap<SqlClient, Transact>()

/**
 * The transaction levels (top-level and savepoints) that are ours. A savepoint
 * must be made by the same `makeWithTransaction` as the level around it: each
 * keeps its own lock for savepoints in that level's context.
 */
const ownLevels = new WeakSet<object>()

/**
 * Runs `body` in a transaction on `sql`: a new one whose BEGIN and COMMIT can
 * be interrupted, or a savepoint inside the transaction already open (the
 * caller's, through `sql.withTransaction`, or one of ours). Inside one of
 * ours, `sql.withTransaction` is not available (Effect's instance finds no
 * lock of its own there): no caller's code runs inside them.
 */
export const transaction = <A, E, R>(
  sql: SqlClient,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.flatMap(Effect.serviceOption(sql.transactionService), (open) => {
    if (Option.isSome(open) && !ownLevels.has(open.value)) return sql.withTransaction(body)
    let transact = perClient.get(sql)
    if (transact === undefined) {
      transact = interruptible(sql)
      perClient.set(sql, transact)
    }
    const transacted = transact(Effect.andThen(
      Effect.map(Effect.serviceOption(sql.transactionService), (level) => {
        if (Option.isSome(level)) ownLevels.add(level.value)
      }),
      // A new transaction of ours asks the server to end it when idle; a savepoint has it from around it.
      Option.isNone(open) ? Effect.andThen(endIfIdleInTransaction(sql), body) : body
    ))
    return Option.isNone(open) ? Effect.mapError(transacted, explainIdleEnd) : transacted
  })

const control = (connection: Connection, statement: string): Effect.Effect<void, SqlError> =>
  Effect.asVoid(connection.executeUnprepared(statement, [], undefined))

/** A ROLLBACK that gives up (and so retires its connection) after `rollbackDeadline`; never fails. */
const rollback = (connection: Connection): Effect.Effect<void> =>
  control(connection, "ROLLBACK").pipe(
    withStatementTimeout({ timeout: rollbackDeadline, operation: "rollback" }),
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logDebug("rollback failed; the connection is retired", cause)
    )
  )

/** PostgreSQL answers `COMMIT` of an aborted transaction with `ROLLBACK`. */
const commit = (connection: Connection): Effect.Effect<void, SqlError> =>
  Effect.flatMap(connection.executeRaw("COMMIT", []), (result) =>
    (result as { readonly command?: unknown }).command === "ROLLBACK"
      ? Effect.fail(
        new SqlError({
          reason: new UnknownError({
            cause: new Error("COMMIT rolled back an aborted transaction"),
            message: "COMMIT rolled back an aborted transaction",
            operation: "commit"
          })
        })
      )
      : Effect.void)

const interruptible = (sql: SqlClient): Transact =>
  makeWithTransaction({
    transactionService: sql.transactionService,
    spanAttributes: [["db.system.name", "postgresql"]],
    acquireConnection: (restore) => restore(sql.reserve),
    // An interrupted BEGIN may have run after all: roll it back before the connection goes back.
    begin: (connection, statement) =>
      Effect.interruptible(control(connection, statement ?? "BEGIN")).pipe(
        Effect.onInterrupt(() => rollback(connection))
      ),
    // A savepoint inside one of ours: as interruptible as the rest. Its rollback has a deadline but
    // no failure of it is hidden (the transaction around it must not commit then).
    savepoint: (connection, id) => Effect.interruptible(control(connection, `SAVEPOINT oban_${id}`)),
    releaseSavepoint: (connection, id) => Effect.interruptible(control(connection, `RELEASE SAVEPOINT oban_${id}`)),
    rollbackSavepoint: (connection, id) =>
      control(connection, `ROLLBACK TO SAVEPOINT oban_${id}`).pipe(
        withStatementTimeout({ timeout: rollbackDeadline, operation: "rollback to savepoint" })
      ),
    commit: (connection) => Effect.interruptible(commit(connection)),
    // A COMMIT that failed or was interrupted before it ran would leave the transaction open.
    onCommitFailure: rollback,
    rollback
  })

/** How long a transaction of the library's may sit idle on the server before the server ends it. */
const ownIdleMillis = 10_000

/**
 * Inside a transaction: the server ends the session if it sits idle in this
 * transaction for 10 s, as it would with the locks of a transaction whose
 * connection died between two of its statements (until the system gives such
 * a connection up, a quarter of an hour or more). For the transactions the
 * library opens itself (the node's maintenance, and calls such as `retryJob`
 * or a unique insert), which send their statements back to back and run no
 * caller's code; never for a caller's transaction, where it would outlive the
 * call. It costs one round trip per such transaction.
 */
const endIfIdleInTransaction = (sql: SqlClient): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql`SELECT set_config('idle_in_transaction_session_timeout', ${String(ownIdleMillis)}, true)`)

/** SQLSTATE `idle_in_transaction_session_timeout`: the server ended the session. */
const idleEndedCode = "25P03"

/**
 * Whether `error` says the server ended a transaction of the library's for
 * sitting idle (see `explainIdleEnd`), as the driver or as `transaction`
 * reports it.
 */
export const isIdleTransactionEnd = (error: unknown): error is SqlError =>
  isSqlError(error) && sqlState(error.reason.cause) === idleEndedCode

/**
 * The driver reports the server ending an idle transaction's session as an
 * `UnknownError` that says only "The server reported an error". Said plainly
 * instead, as a `ConnectionError` (retryable: the session is gone, nothing
 * was written, and the same call on a fresh connection may well succeed).
 */
const explainIdleEnd = <E>(error: E): E | SqlError =>
  !isIdleTransactionEnd(error) || error.reason._tag !== "UnknownError" ? error : new SqlError({
    reason: new ConnectionError({
      cause: error.reason.cause,
      message: `the server ended this transaction of effect-oban's after it sat idle past the ${ownIdleMillis / 1000} s ` +
        "the library allows its own transactions between two statements (idle_in_transaction_session_timeout): " +
        "the process was likely stalled (a CPU-bound job on the main thread, a paused VM); nothing the " +
        "transaction wrote was kept",
      operation: error.reason.operation
    })
  })
