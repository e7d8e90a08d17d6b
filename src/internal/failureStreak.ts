/**
 * Failures in a row of a loop that retries (heartbeats, fetches, LISTEN, the
 * leader's election, cron, the maintenance services), and what it logs of
 * them: the first warning of a run of failures carries the whole cause and
 * the repeats their line alone (a schema rolled back under running nodes once
 * wrote 1,700 lines of stacks in 30 s from one node), and the first success
 * after failures says so at info level, with how many failed. Of a long run,
 * only the failures 1 to 3, then 4, 8, 16, ... up to 512, then every 512th are
 * logged: a node pointed at a database that does not exist logged about 5
 * warnings a second for as long as it ran, one per loop per retry.
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import { causeIfFirst, failureLine } from "./serverMessage.ts"

export interface FailureStreak {
  /** Counts a failure; returns the failures in a row, this one included. */
  readonly failed: () => number
  /**
   * Warns of the failure just counted: `message`, then the failure's line; the whole cause too when
   * it is the first in a row.
   */
  readonly warn: (message: string, cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /** A success: ends the run of failures, and says at info level that `recovered`, after how many. */
  readonly succeeded: Effect.Effect<void>
}

/** A streak for a loop whose first success after failures logs `"<recovered>, after N failed"`. */
export const make = (recovered: string): FailureStreak => {
  let inARow = 0
  return {
    failed: () => ++inARow,
    warn: (message, cause) =>
      Effect.suspend(() =>
        logged(inARow)
          ? Effect.logWarning(`${message}${repeatNote(inARow)}: ${failureLine(cause)}`, ...causeIfFirst(inARow, cause))
          : Effect.void
      ),
    succeeded: Effect.suspend(() => {
      const failures = inARow
      inARow = 0
      return failures === 0 ? Effect.void : Effect.logInfo(`${recovered}, after ${failures} failed`)
    })
  }
}

/** Whether the `n`th failure in a row is logged: 1 to 3, powers of two up to 512, then every 512th. */
export const logged = (n: number): boolean => n <= 3 || (n <= 512 ? (n & (n - 1)) === 0 : n % 512 === 0)

/** What a logged repeat adds, once repeats are no longer all logged. */
const repeatNote = (n: number): string =>
  n < 4 ? "" : ` (${n} in a row; the next logged at ${n < 512 ? n * 2 : n + 512})`
