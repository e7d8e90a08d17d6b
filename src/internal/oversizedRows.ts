/**
 * What a producer does after a fetch failed because a row was larger than
 * the driver reads in one message: it discards the rows of its queue that
 * are (see `sql/oversizedRows.ts`), so the next fetch can succeed. Any other
 * failure is left to the usual retry.
 */
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { statementNow } from "../ObanClock.ts"
import { failureLine } from "./serverMessage.ts"
import { discardOversized } from "./sql/oversizedRows.ts"
import { withStatementTimeout } from "./statementTimeout.ts"

/** The driver's limit named by a failure that a reply's message was larger than it, if it was one. */
export const exceededMessageSize = (cause: Cause.Cause<unknown>): number | undefined => {
  const found = /exceeds maxMessageSize (\d+)/.exec(failureLine(cause))
  return found === null ? undefined : Number(found[1])
}

/** How many of a queue's next jobs in fetch order are looked at: at least this many, and twice the queue's limit. */
const minimumWindow = 1_000

/** How many jobs one look takes in id order, and how many looks one check makes at most. */
const onwardWindow = 10_000
const looksPerCheck = 10

/**
 * The check a producer makes after each failed fetch of `queue`: when it failed on a row too large to
 * read, discards such rows among the queue's next jobs (see `discardOversized`) and logs each. Each
 * check looks at up to 100,000 jobs in id order, going on from where the last one stopped, until it
 * discards one; each statement has the fetch's deadline. Its own failure is logged, and the fetch's
 * retry goes on either way.
 */
export const makeOversizedRowCheck = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly queue: string
  readonly timeout: Duration.Duration
}) => {
  let after = 0
  return (cause: Cause.Cause<unknown>, limit: number): Effect.Effect<void> => {
    const maxMessageBytes = exceededMessageSize(cause)
    if (maxMessageBytes === undefined) return Effect.void
    const look = Effect.flatMap(statementNow(options.sql), (now) =>
      discardOversized(options.sql, options.prefix, now, {
        queue: options.queue,
        window: Math.max(minimumWindow, limit * 2),
        onward: onwardWindow,
        after,
        maxMessageBytes
      })).pipe(
        withStatementTimeout({ timeout: options.timeout, operation: "discard of rows too large to fetch" }),
        Effect.tap((result) => Effect.sync(() => (after = result.scannedTo)))
      )
    const logged = (rows: ReadonlyArray<{ readonly id: number; readonly bytes: number }>) =>
      Effect.forEach(rows, (row) =>
        Effect.logWarning(
          `discarded job ${row.id} of queue ${options.queue}: its row is ${(row.bytes / 1048576).toFixed(1)} MiB as a fetch reads it, ` +
            `more than the driver reads in one message (${(maxMessageBytes / 1048576).toFixed(1)} MiB), so no fetch of the queue could succeed`
        ).pipe(Effect.annotateLogs({ jobId: row.id })), { discard: true })
    return Effect.gen(function*() {
      for (let n = 0; n < looksPerCheck; n++) {
        const result = yield* look
        yield* logged(result.discarded)
        if (result.discarded.length > 0 || result.heldBack || result.scannedTo === 0) return
      }
    }).pipe(
      Effect.catchCause((failed) =>
        Effect.logWarning(`could not discard the rows too large to fetch from queue ${options.queue}: ${failureLine(failed)}`, Cause.pretty(failed))
      )
    )
  }
}
