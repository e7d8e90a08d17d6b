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
import * as FailureStreak from "./failureStreak.ts"

/** The longest one run of a maintenance service may take. */
export const runDeadline = Duration.minutes(1)

export const periodic = (options: {
  readonly name: string
  readonly interval: Duration.Duration
  readonly run: Effect.Effect<unknown, unknown>
  readonly when?: Effect.Effect<boolean> | undefined
}): Effect.Effect<never> =>
  Effect.suspend(() => {
    const streak = FailureStreak.make(`${options.name} runs get through again`)
    return Effect.forever(
      Effect.gen(function*() {
        yield* Effect.sleep(options.interval)
        if (options.when !== undefined && !(yield* options.when)) return
        yield* options.run.pipe(
          withStatementTimeout({ timeout: runDeadline, operation: options.name }),
          Effect.withSpan(`oban.${options.name.toLowerCase()}`),
          Effect.matchCauseEffect({
            onSuccess: () => streak.succeeded,
            onFailure: (cause) =>
              Effect.suspend(() => {
                streak.failed()
                return streak.warn(`${options.name} failed; will try again`, cause)
              })
          }),
          tracked
        )
      })
    ).pipe(Effect.annotateLogs({ component: options.name }))
  })
