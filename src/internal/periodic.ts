/**
 * The loop around every maintenance service's `runOnce`: wait an interval,
 * run it when `when` allows (e.g. only on the leader), log failures and carry
 * on. A maintenance loop never dies of a database error, and never hangs on
 * a connection that stopped answering: a run has a deadline, and stopping the
 * loop does not wait for the driver to give such a connection up.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { tracked } from "./activity.ts"
import { withStatementTimeout } from "./statementTimeout.ts"
import { causeIfFirst, failureLine } from "./serverMessage.ts"

/** The longest one run of a maintenance service may take. */
export const runDeadline = Duration.minutes(1)

export const periodic = (options: {
  readonly name: string
  readonly interval: Duration.Duration
  readonly run: Effect.Effect<unknown, unknown>
  readonly when?: Effect.Effect<boolean> | undefined
}): Effect.Effect<never> =>
  Effect.suspend(() => {
    // Runs that failed in a row: only the first warning of a run of them carries the whole cause.
    let failures = 0
    return Effect.forever(
      Effect.gen(function*() {
        yield* Effect.sleep(options.interval)
        if (options.when !== undefined && !(yield* options.when)) return
        yield* options.run.pipe(
          withStatementTimeout({ timeout: runDeadline, operation: options.name }),
          Effect.withSpan(`oban.${options.name.toLowerCase()}`),
          Effect.matchCauseEffect({
            onSuccess: () => Effect.sync(() => (failures = 0)),
            onFailure: (cause) =>
              Effect.suspend(() => {
                failures++
                return Effect.logWarning(`${options.name} failed; will try again: ${failureLine(cause)}`, ...causeIfFirst(failures, cause))
              })
          }),
          tracked
        )
      })
    ).pipe(Effect.annotateLogs({ component: options.name }))
  })
