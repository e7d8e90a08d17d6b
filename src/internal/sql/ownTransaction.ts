/**
 * A transaction for the node's own background work, every statement of which
 * can be interrupted.
 *
 * `sql.withTransaction` sends BEGIN, COMMIT and ROLLBACK uninterruptibly. On
 * a connection that stopped answering (replies lost, a proxy that hangs)
 * such a statement waits for good: the loop's deadline (`withStatementTimeout`)
 * returns, but the fiber left behind keeps the connection checked out, and
 * closing the pool at shutdown waits for that connection for ever, so the
 * process never exits. Here BEGIN and COMMIT are ordinary statements: on
 * interruption the driver cancels one and, when nothing answers within its
 * 5 s, retires the connection.
 *
 * Whatever ends the body or the COMMIT other than success rolls back before
 * the connection goes back to the pool. A ROLLBACK that does not finish in
 * time is given up, and the connection with it: the pool retires a
 * connection handed back with a statement still on it, so none goes back
 * inside a transaction.
 *
 * For bodies of plain statements that let every failure through:
 * `sql.afterCommit` inside one runs at once, not after the COMMIT; a nested
 * `sql.withTransaction` is not supported; and the COMMIT's reply is not
 * checked, so a body that caught a statement's failure would see the
 * aborted transaction's COMMIT (a rollback) succeed.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { withStatementTimeout } from "../statementTimeout.ts"

/** How long a ROLLBACK may take before its connection is given up. */
const rollbackDeadline = "3 seconds"

export const ownTransaction = <A, E, R>(
  sql: SqlClient,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const connection = yield* sql.reserve
    const control = (statement: string) => connection.executeUnprepared(statement, [], undefined)
    // Set before BEGIN is sent: an interrupted BEGIN may have run.
    let open = true
    yield* Effect.addFinalizer(() =>
      open
        ? control("ROLLBACK").pipe(
          withStatementTimeout({ timeout: rollbackDeadline, operation: "rollback" }),
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logDebug("rollback failed; the connection is retired", cause)
          )
        )
        : Effect.void
    )
    yield* control("BEGIN")
    const result = yield* Effect.provideService(body, sql.transactionService, [connection, 0])
    yield* control("COMMIT")
    open = false
    return result
  }))
