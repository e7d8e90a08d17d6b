/**
 * How a producer returns jobs it claimed and will not run, so that no job
 * loses an attempt it never ran (a `maxAttempts: 1` job would otherwise be
 * discarded by the rescue that finds it):
 *
 * - jobs taken out of its buffer (pause, shutdown, a row found dead, a
 *   cancel) are given back; a give-back the database refuses is tried again
 *   in the background until it gets through, and once more at shutdown;
 * - a fetch that failed after the server may have committed it (its reply
 *   lost, a timeout, a defect reading the rows) has its claim released, and
 *   a release still pending at shutdown is made then, not dropped.
 *
 * Each statement matches rows by their claim, so a retry changes nothing for
 * a job rescued or claimed again meanwhile.
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { Job } from "../Job.ts"
import { releaseLostClaim, releaseOnceAtShutdown } from "./lostClaims.ts"
import { retryDelay } from "./retryDelay.ts"
import { releaseJobs } from "./sql/claims.ts"
import { withStatementTimeout } from "./statementTimeout.ts"

/** A job taken out of the buffer, with whether it was claimed ahead (no attempt counted). */
export interface Unstarted {
  readonly job: Job
  readonly ahead: boolean
}

export interface ClaimReturns {
  /** Gives jobs back now; if the database refuses, they are given back later (see the module). */
  readonly giveBack: (jobs: ReadonlyArray<Unstarted>, what: string) => Effect.Effect<void>
  /** A fetch under `claim` failed: releases whatever the server claimed for it, in the background. */
  readonly fetchFailed: (claim: string) => Effect.Effect<void>
  /** At shutdown, once the producer's loops have stopped: one last try for everything still pending. */
  readonly atShutdown: Effect.Effect<void>
}

/** How long one give-back or release may take. */
const statementTimeout = Duration.seconds(5)

export const make = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  /** The scope the background retries run in (the producer's). */
  readonly scope: Scope.Scope
  /** The producer's context, for the lines logged from its callers' fibers. */
  readonly context: Context.Context<never>
  readonly logs: Readonly<Record<string, string>>
  readonly fetchTimeout: Duration.Duration
}): ClaimReturns => {
  // Jobs whose give-back the database refused, by id (the newest claim wins), and whether a fiber retries them.
  const refused = new Map<number, Unstarted>()
  let retrying = false
  // Claims of failed fetches whose release has not yet got through.
  const lostClaims = new Set<string>()

  const logged = <A>(effect: Effect.Effect<A>) =>
    effect.pipe(Effect.annotateLogs(options.logs), Effect.provideContext(options.context))

  const write = (jobs: ReadonlyArray<Unstarted>) =>
    releaseJobs(
      options.sql,
      options.prefix,
      jobs.map(({ ahead, job }) => ({ id: job.id, claim: job.attemptedBy?.[2] ?? "", ahead }))
    ).pipe(withStatementTimeout({ timeout: statementTimeout, operation: "give back" }))

  /** Retries the refused give-backs until one gets through; at most one such fiber runs. */
  const retryRefused = Effect.gen(function*() {
    let failures = 0
    while (refused.size > 0) {
      yield* Effect.sleep(yield* retryDelay(failures + 1, { baseMillis: 250 }))
      const jobs = [...refused.values()]
      const result = yield* Effect.exit(write(jobs))
      if (result._tag === "Success") {
        // A job refused again meanwhile (under a newer claim) stays.
        for (const unstarted of jobs) if (refused.get(unstarted.job.id) === unstarted) refused.delete(unstarted.job.id)
        continue
      }
      failures++
      if (failures % 20 === 0) {
        yield* logged(Effect.logWarning(`could not yet give back ${jobs.length} job(s) (${failures}x); trying again`))
      }
    }
  }).pipe(Effect.ensuring(Effect.sync(() => (retrying = false))))

  const giveBack = (jobs: ReadonlyArray<Unstarted>, what: string): Effect.Effect<void> =>
    jobs.length === 0 ? Effect.void : write(jobs).pipe(
      Effect.asVoid,
      Effect.catchCause((cause) =>
        Effect.gen(function*() {
          for (const unstarted of jobs) refused.set(unstarted.job.id, unstarted)
          yield* logged(
            Effect.logWarning(`could not give back ${jobs.length} ${what}(s) claimed ahead; trying again`, Cause.pretty(cause))
          )
          if (retrying) return
          retrying = true
          yield* Effect.forkIn(retryRefused, options.scope)
        })
      )
    )

  const fetchFailed = (claim: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      lostClaims.add(claim)
      return Effect.asVoid(Effect.forkIn(
        releaseLostClaim(options.sql, options.prefix, claim, options.fetchTimeout).pipe(
          // Interrupted (shutdown), the claim stays pending for `atShutdown`.
          Effect.tap(() => Effect.sync(() => lostClaims.delete(claim)))
        ),
        options.scope
      ))
    })

  const atShutdown = Effect.suspend(() => {
    const jobs = [...refused.values()]
    refused.clear()
    const claims = [...lostClaims]
    lostClaims.clear()
    return Effect.all([
      jobs.length === 0 ? Effect.void : write(jobs).pipe(
        Effect.catchCause((cause) =>
          logged(Effect.logWarning(`could not give back ${jobs.length} job(s) at shutdown; they will be rescued`, Cause.pretty(cause)))
        )
      ),
      Effect.forEach(claims, (claim) => logged(releaseOnceAtShutdown(options.sql, options.prefix, claim, statementTimeout)), {
        discard: true
      })
    ], { discard: true })
  })

  return { giveBack, fetchFailed, atShutdown }
}
