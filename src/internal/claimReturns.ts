/**
 * How a producer returns jobs it claimed and will not run, so that no job
 * loses an attempt it never ran (a `maxAttempts: 1` job would otherwise be
 * discarded by the rescue that finds it):
 *
 * - jobs taken out of its buffer (pause, shutdown, a row found dead, a
 *   cancel) are given back; rows another transaction holds locked are passed
 *   over, and those and any give-back the database refuses are tried again
 *   in the background until they get through, and once more at shutdown;
 * - a fetch that failed after the server may have committed it (its reply
 *   lost, a timeout, a defect reading the rows) has its claim released, and
 *   a release still pending at shutdown is made then, not dropped.
 *
 * From the moment they leave the buffer until then, the node's reconciler
 * leaves those jobs and claims alone (see `pending`): it would put them back
 * keeping the attempt their claim counted.
 * Each statement matches rows by their claim, so a retry changes nothing for
 * a job rescued or claimed again meanwhile.
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Job } from "../Job.ts"
import { releaseLostClaim } from "./lostClaims.ts"
import { retryDelay } from "./retryDelay.ts"
import { releaseClaims, releaseJobsUnlocked } from "./sql/claims.ts"
import { realSleep, withStatementTimeout } from "./statementTimeout.ts"
import { isRetryableFailure, untilLanded } from "./untilLanded.ts"
import { idList } from "./idList.ts"
import { causeUnlessUnreached, failureLine } from "./serverMessage.ts"

/** A job taken out of the buffer, with whether it was claimed ahead (no attempt counted). */
export interface Unstarted {
  readonly job: Job
  readonly ahead: boolean
}

/** What a producer has yet to return: jobs to give back, and claims of failed fetches to release. */
export interface Pending {
  readonly jobs: ReadonlyArray<number>
  readonly claims: ReadonlyArray<string>
}

export interface ClaimReturns {
  /**
   * Gives back the jobs `take` returns (taking them out of the producer's hands, in the same step as
   * they become pending here) now, those it cannot (locked, or refused) later (see the module); how
   * many `take` returned.
   */
  readonly giveBack: (take: () => ReadonlyArray<Unstarted>, what: string) => Effect.Effect<number>
  /**
   * A fetch under `claim` failed: releases whatever the server claimed for it, in the background, once
   * `ended` (its statement, if it went on past its deadline, has ended) and again later. `interrupted`:
   * it failed only because the node's shutdown interrupted the wait for its reply (no fault).
   */
  readonly fetchFailed: (claim: string, ended: Effect.Effect<void>, interrupted: boolean) => Effect.Effect<void>
  readonly pending: () => Pending
  /**
   * At shutdown, once the producer's loops have stopped: gives back `jobs` (the buffer) with every
   * job still pending and releases every pending claim, each in one statement, under one deadline.
   */
  readonly atShutdown: (jobs: ReadonlyArray<Unstarted>) => Effect.Effect<void>
}

/** The statement of a failed fetch: when it ended, and until when (epoch ms) that is worth waiting for. */
interface Statement {
  readonly ended: Effect.Effect<void>
  readonly waitUntil: number
  /** The fetch was in flight as shutdown began, which interrupted it: its reply was not lost to a fault. */
  readonly interrupted: boolean
}

/** The failure of a give-back that left jobs to try again (see `giveBackUnreturned`). */
const someLeft = { _tag: "SomeLeft" } as const

const onlySomeLeft = (cause: Cause.Cause<unknown>): boolean => {
  const error = Cause.findErrorOption(cause)
  return error._tag === "Some" && error.value === someLeft
}

/** How long one give-back or release may take. */
const statementTimeout = Duration.seconds(5)

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  /** The scope the background retries run in (the producer's). */
  readonly scope: Scope.Scope
  /** The producer's context: its clock, logger and tracer, whoever's fiber gave jobs back. */
  readonly context: Context.Context<never>
  readonly logs: Readonly<Record<string, string>>
  readonly fetchTimeout: Duration.Duration
  /** How long to wait for the statement of a fetch abandoned at its deadline to end (see `untilEnded`). */
  readonly fetchSettle: Duration.Duration
}): ClaimReturns => {
  // Jobs not yet given back, by id, and whether a fiber retries them.
  const unreturned = new Map<number, Unstarted>()
  let retrying = false
  // Claims of failed fetches whose release has not yet got through, each with when its statement ended
  // and how long (wall-clock time) that is worth waiting for.
  const lostClaims = new Map<string, Statement>()
  // Jobs whose give-back is on its way (out of the buffer, not yet given back or kept): still this
  // node's for the reconciler.
  const beingGivenBack = new Set<Unstarted>()

  const own = <A, E>(effect: Effect.Effect<A, E>) =>
    effect.pipe(Effect.annotateLogs(options.logs), Effect.provideContext(options.context))

  /** Gives back what it can; returns the jobs passed over (locked by another transaction). */
  const write = (jobs: ReadonlyArray<Unstarted>) =>
    releaseJobsUnlocked(
      options.sql,
      options.prefix,
      jobs.map(({ ahead, job }) => ({ id: job.id, claim: job.attemptedBy?.[2] ?? "", ahead }))
    ).pipe(
      withStatementTimeout({ timeout: statementTimeout, operation: "give back" }),
      Effect.map((skipped) => {
        const passedOver = new Set(skipped)
        return jobs.filter(({ job }) => passedOver.has(job.id))
      })
    )

  /** Keeps `jobs` for the retry fiber, started if none runs. */
  const keep = (jobs: ReadonlyArray<Unstarted>) =>
    Effect.suspend(() => {
      for (const unstarted of jobs) unreturned.set(unstarted.job.id, unstarted)
      if (jobs.length === 0 || retrying) return Effect.void
      retrying = true
      return Effect.asVoid(Effect.forkIn(own(retryUnreturned), options.scope))
    })

  /**
   * Gives back the jobs not yet given back; fails with `someLeft` while some are left (locked by
   * another transaction, or kept again meanwhile), for the loop below to try again.
   */
  const giveBackUnreturned: Effect.Effect<void, SqlError | typeof someLeft> = Effect.suspend(() => {
    const jobs = [...unreturned.values()]
    // Taken by the shutdown meanwhile.
    if (jobs.length === 0) {
      retrying = false
      return Effect.void
    }
    return Effect.flatMap(write(jobs), (skipped) => {
      const left = new Set(skipped)
      // A job kept again meanwhile (under a newer claim) stays.
      for (const unstarted of jobs) {
        if (!left.has(unstarted) && unreturned.get(unstarted.job.id) === unstarted) unreturned.delete(unstarted.job.id)
      }
      if (unreturned.size > 0) return Effect.fail(someLeft)
      // Checked and reset in one step: a job kept after this starts a fiber of its own.
      retrying = false
      return Effect.void
    })
  })

  /**
   * Retries the jobs not given back until none is left; at most one such fiber runs. Jobs passed over
   * (locked) are tried again at the pace of the errors so far, and only errors are counted and told.
   */
  const retryUnreturned: Effect.Effect<void> = Effect.suspend(() => {
    let errors = 0
    const pause = Effect.suspend(() => Effect.flatMap(retryDelay(errors + 1, { baseMillis: 250 }), Effect.sleep))
    return Effect.andThen(
      pause,
      untilLanded(giveBackUnreturned, {
        pause: () => pause,
        onRetry: (_, cause) => {
          if (onlySomeLeft(cause)) return Effect.void
          errors++
          return errors % 20 === 0
            ? Effect.logWarning(`could not yet give back ${unreturned.size} job(s) (${errors}x); trying again: ${failureLine(cause)}`)
            : Effect.void
        }
      })
    )
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => (retrying = false))))

  const giveBack = (take: () => ReadonlyArray<Unstarted>, what: string): Effect.Effect<number> =>
    Effect.suspend(() => {
      const jobs = take()
      if (jobs.length === 0) return Effect.succeed(0)
      for (const unstarted of jobs) beingGivenBack.add(unstarted)
      return write(jobs).pipe(
        Effect.flatMap(keep),
        Effect.catchCause((cause) =>
          Effect.andThen(
            own(Effect.logWarning(`could not give back ${jobs.length} ${what}(s) claimed here; trying again: ${failureLine(cause)}`, ...causeUnlessUnreached(cause))),
            keep(jobs)
          )
        ),
        // Only once those left are kept, in the same step as the write's end. Interrupted (a shutdown,
        // a caller's timeout), the write may or may not have landed: all are kept for the retry fiber
        // and for `atShutdown` (a give-back matches rows by claim, so one made twice changes nothing).
        Effect.onExit((exit) =>
          Effect.andThen(
            Exit.isFailure(exit) ? keep(jobs) : Effect.void,
            Effect.sync(() => {
              for (const unstarted of jobs) beingGivenBack.delete(unstarted)
            })
          )
        ),
        Effect.as(jobs.length)
      )
    })

  const fetchFailed = (claim: string, ended: Effect.Effect<void>, interrupted: boolean): Effect.Effect<void> =>
    Effect.suspend(() => {
      const statement = { ended, waitUntil: Date.now() + Duration.toMillis(options.fetchSettle), interrupted }
      lostClaims.set(claim, statement)
      return Effect.asVoid(Effect.forkIn(
        own(Effect.andThen(untilEnded([statement]), releaseLostClaim(options.sql, options.prefix, claim, options.fetchTimeout))).pipe(
          // Interrupted (shutdown), the claim stays pending for `atShutdown`.
          Effect.tap(() => Effect.sync(() => lostClaims.delete(claim)))
        ),
        options.scope
      ))
    })

  /**
   * Until the statements of failed fetches have ended (at once for most: only one abandoned at its
   * deadline runs on), waiting at most until `fetchSettle` after each failed, in real time: the driver
   * gives such a statement's connection up after 5 s, and past that nothing more can be known of it.
   */
  const untilEnded = (statements: ReadonlyArray<Statement>): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (statements.length === 0) return Effect.void
      const waitMillis = Math.max(...statements.map((statement) => statement.waitUntil)) - Date.now()
      return waitMillis <= 0 ? Effect.void : Effect.raceFirst(
        Effect.all(statements.map((statement) => statement.ended), { concurrency: "unbounded", discard: true }),
        realSleep(waitMillis)
      )
    })

  /**
   * At shutdown a statement that failed with a retryable error is sent again, in real time (the node's
   * clock may be a test's), until `statementTimeout` has passed: a connection cut as the node stops
   * fails at once, and the pool opens a fresh one.
   */
  const untilDeadline = <A>(statement: Effect.Effect<A, SqlError>, operation: string): Effect.Effect<A, SqlError> =>
    withStatementTimeout(untilLanded(statement, { pause: () => realSleep(100), retryIf: isRetryableFailure }), {
      timeout: statementTimeout,
      operation
    })

  /**
   * Gives back `jobs` at shutdown. Rows locked by another transaction are tried again every 50 ms until
   * the deadline: most often the lock is a give-back of ours that the shutdown interrupted, whose
   * statement the server is still cancelling (or running), or a `cancelJob` about to commit; either
   * ends within milliseconds, and passed over for good such a job would be rescued with the attempt
   * its claim counted.
   */
  const giveBackAtShutdown = (jobs: ReadonlyArray<Unstarted>): Effect.Effect<void> =>
    Effect.suspend(() => {
      // What is left to give back, and whether some of it was ever passed over as locked.
      let left = jobs
      let sawLocked = false
      const loop: Effect.Effect<void, SqlError> = Effect.flatMap(
        untilLanded(Effect.suspend(() => write(left)), { pause: () => realSleep(100), retryIf: isRetryableFailure }),
        (passedOver) => {
          left = passedOver
          if (passedOver.length === 0) return Effect.void
          sawLocked = true
          return Effect.andThen(realSleep(50), Effect.suspend(() => loop))
        }
      )
      return withStatementTimeout(loop, { timeout: statementTimeout, operation: "give back" }).pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning(
            `could not give back ${left.length} job(s) at shutdown${
              sawLocked ? " (locked by another transaction until the deadline)" : ""
            }; they will be rescued`,
            Cause.pretty(cause)
          )
        )
      )
    })

  const atShutdown = (buffered: ReadonlyArray<Unstarted>) =>
    Effect.suspend(() => {
      // With the give-backs still on their way in other fibers. One job per id, the buffer's first: a
      // job claimed again since an earlier give-back was kept is waiting under its newer claim.
      const byId = new Map<number, Unstarted>()
      for (const unstarted of [...buffered, ...unreturned.values(), ...beingGivenBack]) {
        if (!byId.has(unstarted.job.id)) byId.set(unstarted.job.id, unstarted)
      }
      const jobs = [...byId.values()]
      unreturned.clear()
      const claims = [...lostClaims.keys()]
      // Fetches that shutdown interrupted, and no other: an ordinary stop, said at info.
      const onlyInterrupted = [...lostClaims.values()].every((statement) => statement.interrupted)
      const statementsEnded = untilEnded([...lostClaims.values()])
      lostClaims.clear()
      const giveBackAll = jobs.length === 0 ? Effect.void : giveBackAtShutdown(jobs)
      const release = releaseClaims(options.sql, options.prefix, claims).pipe(
        withStatementTimeout({ timeout: statementTimeout, operation: "release" })
      )
      // Only once the failed fetches' statements have ended: one still running could commit its claim after.
      const releaseAll = claims.length === 0 ? Effect.void : Effect.andThen(statementsEnded, untilDeadline(release, "release")).pipe(
        Effect.flatMap((released) =>
          released.length === 0
            ? Effect.void
            : onlyInterrupted
            ? Effect.logInfo(
              `released ${released.length} job(s) claimed by a fetch in flight as shutdown began: ${idList(released)}`
            )
            : Effect.logWarning(
              `released ${released.length} job(s) claimed by fetches whose reply was lost, at shutdown: ${idList(released)}`
            )
        ),
        Effect.catchCause((cause) =>
          Effect.logWarning("could not release the jobs of failed fetches at shutdown; they will be rescued", Cause.pretty(cause))
        )
      )
      return own(Effect.all([giveBackAll, releaseAll], { concurrency: 2, discard: true }))
    })

  return {
    giveBack,
    fetchFailed,
    pending: () => ({
      jobs: [...unreturned.keys(), ...Array.from(beingGivenBack, (unstarted) => unstarted.job.id)],
      claims: [...lostClaims.keys()]
    }),
    atShutdown
  }
}
