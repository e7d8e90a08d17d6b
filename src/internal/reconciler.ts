/**
 * The reconciler: every node, every `rescuer.interval`, puts back the jobs
 * that its own producers claimed and that it no longer answers for, because
 * their claim or their outcome was lost on the way to the database (a reply
 * lost with its connection, or commits a database crash forgot). No rescuer
 * would take them, since their producers are alive. It also stops the jobs
 * it runs or holds that were cancelled (their rows `cancelled`) or whose
 * cancel was requested (every running job's cancel), in case the cancel signal
 * was lost: they would otherwise run to their end (a step's dependents
 * waiting for that). Claims its producers still answer for (a fetch waiting
 * for its reply, however late, or one failed and being released) are theirs,
 * and are looked up twice: before the release and again before it commits
 * (a release rolled back for one is tried again at once without it).
 * `runOnce` does one pass and returns the ids it released; the node runs it
 * in a `periodic` loop.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { ExecutorShape } from "../Executor.ts"
import { now } from "../ObanClock.ts"
import type { Producer } from "../Producer.ts"
import { jobsToStop, releaseStranded } from "./sql/claims.ts"
import { transaction } from "./sql/transaction.ts"
import { idList } from "./idList.ts"

export interface Options {
  readonly sql: SqlClient
  readonly prefix: string
  readonly producers: ReadonlyArray<Pick<Producer, "id" | "unreturned">>
  readonly executor: Pick<ExecutorShape, "owned">
  /** Only claims older than this are judged: younger ones may still be on their way. */
  readonly rescueAfter: Duration.Duration
  /** Stops a job this node runs or holds that was cancelled or whose cancel was requested (as the cancel signal does). */
  readonly stop?: ((jobId: number) => Effect.Effect<void>) | undefined
}

/** What the node answers for right now: jobs it runs or holds, and claims whose jobs its producers will start or release. */
const answeredFor = (options: Options) =>
  Effect.gen(function*() {
    // Waiting jobs and claims first: a job started in between is then running, and a claim whose reply
    // came in between has its jobs waiting or running; owned either way.
    const unreturned = yield* Effect.forEach(options.producers, (producer) => producer.unreturned)
    const jobs = new Set([...unreturned.flatMap((each) => each.jobs), ...(yield* options.executor.owned)])
    return { jobs, claims: new Set(unreturned.flatMap((each) => each.claims)) }
  })

/** A release rolled back: a job it took became this node's meanwhile. */
class Reconsidered extends Data.TaggedError("Reconsidered")<{ readonly jobs: ReadonlyArray<number> }> {}

/**
 * The most releases one run tries: a release rolled back because a job it
 * took became the node's is tried again at once without that job, so the
 * genuinely stranded jobs beside it do not wait for the next run.
 */
const maxReleasePasses = 3

/**
 * One release, in a transaction: the stranded jobs of the node's producers
 * that it does not answer for. Asked again before it commits: a fetch sent
 * after the first look (its claim unknown to it) may have been answered or
 * have failed by then, if the statement waited long for a connection or on
 * the network. Its jobs are the producer's, not stranded: the release is
 * rolled back (`Reconsidered`).
 */
const releaseOnce = (options: Options, before: { readonly jobs: ReadonlySet<number>; readonly claims: ReadonlySet<string> }) =>
  transaction(
    options.sql,
    Effect.flatMap(now(options.sql), (time) =>
      Effect.flatMap(
        releaseStranded(options.sql, options.prefix, time, {
          producers: options.producers.map((producer) => producer.id),
          owned: before.jobs,
          releasing: [...before.claims],
          afterMillis: Duration.toMillis(options.rescueAfter)
        }),
        (jobs) =>
          jobs.length === 0 ? Effect.succeed(jobs) : Effect.flatMap(answeredFor(options), (after) => {
            const answered = jobs.filter((job) => after.jobs.has(job.id) || after.claims.has(job.claim))
            return answered.length === 0
              ? Effect.succeed(jobs)
              : Effect.fail(new Reconsidered({ jobs: answered.map((job) => job.id) }))
          })
      ))
  )

/** Releases what is stranded, looking again after each rolled-back release (at most `maxReleasePasses`). */
const releaseStrandedJobs = (options: Options, pass = 1): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  Effect.flatMap(answeredFor(options), (before) =>
    releaseOnce(options, before).pipe(
      Effect.map((jobs) => jobs.map((job) => job.id)),
      Effect.catchTag("Reconsidered", ({ jobs }) =>
        Effect.andThen(
          Effect.logDebug(`a release of stranded jobs was rolled back: ${idList(jobs)} became this node's meanwhile`),
          pass < maxReleasePasses ? releaseStrandedJobs(options, pass + 1) : Effect.succeed([])
        ))
    ))

export const runOnce = (options: Options): Effect.Effect<ReadonlyArray<number>, SqlError> =>
  Effect.gen(function*() {
    const released = yield* releaseStrandedJobs(options)
    if (released.length > 0) {
      yield* Effect.logWarning(
        `released ${released.length} job(s) claimed here whose claim or outcome was lost: ${idList(released)}`
      )
    }
    if (options.stop !== undefined) {
      const producers = options.producers.map((producer) => producer.id)
      const owned = (yield* answeredFor(options)).jobs
      yield* Effect.forEach(yield* jobsToStop(options.sql, options.prefix, producers, [...owned]), options.stop, {
        discard: true
      })
    }
    return released
  })
