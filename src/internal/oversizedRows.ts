/**
 * What a producer does after a fetch failed because a row was larger than
 * the driver reads in one message: it discards the rows of its queue that
 * are (see `sql/oversizedRows.ts`), so the next fetch can succeed. Any other
 * failure is left to the usual retry.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { statementNow } from "../ObanClock.ts"
import { failureLine } from "./serverMessage.ts"
import { discardOversized } from "./sql/oversizedRows.ts"

/** The driver's limit named by a failure that a reply's message was larger than it, if it was one. */
export const exceededMessageSize = (cause: Cause.Cause<unknown>): number | undefined => {
  const found = /exceeds maxMessageSize (\d+)/.exec(failureLine(cause))
  return found === null ? undefined : Number(found[1])
}

/** How many of a queue's next jobs are looked at: at least this many, and twice the queue's limit. */
const minimumWindow = 1_000

/**
 * After a failed fetch of `queue`: when it failed on a row too large to read, discards such rows among
 * the queue's next jobs and logs each. Its own failure is logged; the fetch's retry goes on either way.
 */
export const discardAfterFailedFetch = (
  cause: Cause.Cause<unknown>,
  options: { readonly sql: SqlClient; readonly prefix: string; readonly queue: string; readonly limit: number }
): Effect.Effect<void> => {
  const maxMessageBytes = exceededMessageSize(cause)
  if (maxMessageBytes === undefined) return Effect.void
  return Effect.flatMap(statementNow(options.sql), (now) =>
    discardOversized(options.sql, options.prefix, now, {
      queue: options.queue,
      window: Math.max(minimumWindow, options.limit * 2),
      maxMessageBytes
    })).pipe(
      Effect.flatMap((rows) =>
        Effect.forEach(rows, (row) =>
          Effect.logWarning(
            `discarded job ${row.id} of queue ${options.queue}: its row is ${(row.bytes / 1048576).toFixed(1)} MiB as a fetch reads it, ` +
              `more than the driver reads in one message (${(maxMessageBytes / 1048576).toFixed(1)} MiB), so no fetch of the queue could succeed`
          ).pipe(Effect.annotateLogs({ jobId: row.id })), { discard: true })
      ),
      Effect.catchCause((failed) =>
        Effect.logWarning(`could not discard the rows too large to fetch from queue ${options.queue}: ${failureLine(failed)}`, Cause.pretty(failed))
      )
    )
}
