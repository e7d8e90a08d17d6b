/**
 * Failures in a row of a loop that retries (heartbeats, fetches, LISTEN, the
 * leader's election, cron, the maintenance services), and what it logs of
 * them: the first warning of a run of failures carries the whole cause and
 * the repeats their line alone (a schema rolled back under running nodes once
 * wrote 1,700 lines of stacks in 30 s from one node), and the first success
 * after failures says so at info level, with how many failed.
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
    warn: (message, cause) => Effect.logWarning(`${message}: ${failureLine(cause)}`, ...causeIfFirst(inARow, cause)),
    succeeded: Effect.suspend(() => {
      const failures = inARow
      inARow = 0
      return failures === 0 ? Effect.void : Effect.logInfo(`${recovered}, after ${failures} failed`)
    })
  }
}
