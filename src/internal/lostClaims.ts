/**
 * The release of a fetch whose reply was lost (a timeout, a connection gone
 * after the server committed): the server may have claimed jobs for it that
 * no one will run.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { retryDelay } from "./retryDelay.ts"
import { releaseClaims } from "./sql/claims.ts"
import { withStatementTimeout } from "./statementTimeout.ts"
import { untilLanded } from "./untilLanded.ts"
import { idList } from "./idList.ts"
import { failureLine } from "./serverMessage.ts"

/** When the jobs of a failed fetch are released: soon, and after any straggling statement has ended. */
const releaseAfter = [Duration.seconds(1), Duration.seconds(30)]

/** One release of a failed fetch's claim, tried until the database answers. */
const releaseOnce = (sql: SqlClient, prefix: string, claim: string, timeout: Duration.Duration) =>
  untilLanded(releaseClaims(sql, prefix, [claim]).pipe(withStatementTimeout({ timeout, operation: "release" })), {
    pause: (failures) => Effect.flatMap(retryDelay(failures, { baseMillis: 250 }), Effect.sleep),
    onRetry: (failures, cause) =>
      failures === 1 || failures % 20 === 0
        ? Effect.logWarning(`could not yet release the jobs of a failed fetch (${failures}x); trying again: ${failureLine(cause)}`)
          .pipe(Effect.annotateLogs({ claim, cause: Cause.pretty(cause) }))
        : Effect.void
  })

/**
 * Releases the jobs of a failed fetch, if the server claimed any: once as
 * soon as the database answers, and once more 30 s after that, when the
 * statement (cancelled in the background) has certainly ended. Shutdown
 * interrupts this; the producer then releases the claim once more as it
 * stops (see `claimReturns.ts`).
 */
export const releaseLostClaim = (
  sql: SqlClient,
  prefix: string,
  claim: string,
  timeout: Duration.Duration
) =>
  Effect.forEach(releaseAfter, (delay) =>
    Effect.gen(function*() {
      yield* Effect.sleep(delay)
      const released = yield* releaseOnce(sql, prefix, claim, timeout)
      if (released.length > 0) {
        yield* Effect.logWarning(
          `released ${released.length} job(s) claimed by a fetch whose reply was lost: ${idList(released)}`
        )
      }
    }), { discard: true })
