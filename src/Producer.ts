/**
 * One producer per queue per node. It wakes on an insert notification for its
 * queue, on a poll tick, or when one of its jobs finishes; wake-ups that come
 * while it is busy collapse into one. Each time, it claims up to
 * `limit - running` jobs in one statement and hands them to the executor,
 * until the queue is empty or the limit is reached. It honours pause, resume
 * and scale, and never dies of a database error: it logs, waits a little and
 * tries again at the next wake-up.
 *
 * It fetches only once its row in `oban_producers` exists. The row is keyed by
 * the producer's id (this incarnation; its jobs carry it in `attempted_by[2]`)
 * and refreshed every `heartbeatInterval` on the node's own connection, not the
 * shared pool: the rescuer treats the jobs of an incarnation without a fresh
 * row as orphans. When its heartbeats have failed for nearly `rescueAfter`, the
 * producer stops claiming until one gets through. The heartbeat also reads
 * back the queue's stored limit and paused flag, so a command for every node
 * that this node missed (its LISTEN connection was down) takes effect within
 * one heartbeat.
 *
 * A queue with cluster-wide limits (global, partitioned, rate; see
 * docs/limits.md) claims through the queue's row lock, claims nothing ahead,
 * and re-reads its limits at every heartbeat and on a `limits` signal. When
 * one of its jobs finishes it claims again at once, without waiting for the
 * outcome to be written: the claim counts this node's finished jobs whose
 * outcome is still unwritten as free, though their rows still say
 * `executing` (other nodes count them as running until the write lands).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import { tracked } from "./internal/activity.ts"
import { retryDelay } from "./internal/retryDelay.ts"
import { withStatementTimeout } from "./internal/statementTimeout.ts"
import * as ClaimBuffer from "./internal/claimBuffer.ts"
import * as QueueLimiter from "./internal/queueLimiter.ts"
import type { FinishedJob, LimitedFetch } from "./internal/sql/limitedClaims.ts"
import { releaseLostClaim } from "./internal/lostClaims.ts"
import { type Fetched, fetchJobs, releaseJobs } from "./internal/sql/claims.ts"
import { beat, type ProducerState, registerProducer, storeQueueState } from "./internal/sql/producers.ts"
import { setExecutingUnsafe } from "./internal/telemetry.ts"
import type { Job } from "./Job.ts"
import { now, statementNow } from "./ObanClock.ts"

/** The longest a fetch may take before it counts as failed (a connection that stopped answering). */
const fetchTimeout = Duration.seconds(15)

/**
 * Past this many outcomes waiting to be written on the node (two full ack
 * statements), producers claim nothing until the writes catch up: when the
 * database writes outcomes slower than jobs run, claiming on would only pile
 * finished jobs up in memory (and in `executing` rows).
 */
export const maxUnwrittenOutcomes = 1_000

export type { ClusterState, Options, Producer, QueueState } from "./internal/producerTypes.ts"
import type { Options, Producer } from "./internal/producerTypes.ts"

/**
 * Starts a producer for the scope's life. Closing the scope stops fetching;
 * a fetch in flight completes and its jobs are handed over first, so no
 * claimed job is left behind.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Producer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const signal = yield* Queue.dropping<void>(1)
    const producerId = crypto.randomUUID()
    let limit = options.limit
    let paused = options.paused
    let running = 0
    let failures = 0
    let registered = false
    let lost = false
    let beatFailing = false
    let lastBeat = 0
    const heartbeatMillis = Duration.toMillis(options.heartbeatInterval)
    const rescueAfterMillis = Duration.toMillis(options.rescueAfter)
    // Stop claiming a heartbeat interval before a rescuer could judge this producer dead.
    const lostAfterMillis = Math.max(heartbeatMillis, rescueAfterMillis - heartbeatMillis)

    const buffer = ClaimBuffer.make()
    // A limited queue's jobs that finished here, by id, with the claim they ran under: while
    // their outcome is unwritten, the claim counts them as free (see `finishedUnwritten`).
    const finished = new Map<number, string>()
    const wake = Effect.asVoid(Queue.offer(signal, undefined))
    const ready = Deferred.makeUnsafe<void>()
    const limiter = yield* QueueLimiter.make({
      sql: options.sql,
      prefix: options.prefix,
      queue: options.queue,
      configured: options.limits,
      wake
    })

    const clock = yield* Clock.Clock
    // The producer's own context, for the metrics it updates on the hot path.
    const context = yield* Effect.context<never>()

    /**
     * Starts waiting jobs while slots are free: not while paused, nor while
     * heartbeats fail (the database is likely unreachable, and jobs started
     * now would only fail; they start when a heartbeat gets through). Runs
     * synchronously, once per finished job: this is the hot path.
     */
    const startWaitingUnsafe = (): boolean => {
      if (paused || lost || beatFailing) return false
      const jobs = buffer.take(limit - running)
      if (jobs.length === 0) return false
      running += jobs.length
      setExecutingUnsafe(options.queue, running, context)
      // One clock reading for the batch.
      options.executor.startUnsafe(jobs, onDone(clock.currentTimeMillisUnsafe()))
      return true
    }
    const startWaiting = Effect.sync(startWaitingUnsafe)

    const onDone = (startedAt: number) => (job: Job): void => {
      running--
      buffer.recordDuration(clock.currentTimeMillisUnsafe() - startedAt)
      // A job started in its place sets the gauge (before it runs); otherwise it is set here.
      if (!startWaitingUnsafe()) setExecutingUnsafe(options.queue, running, context)
      if (paused) return
      if (limiter.limited()) {
        finished.set(job.id, job.attemptedBy?.[2] ?? "")
        Queue.offerUnsafe(signal, undefined)
      } // Wake the fetch loop only when there is something to claim: not once per job.
      else if (buffer.demand(limit, running) > 0) Queue.offerUnsafe(signal, undefined)
    }

    /**
     * This queue's jobs that finished here and whose outcome is not written
     * yet. Their rows still say `executing`, but their attempts are over: a
     * limited claim does not count them, so a finished job's slot is taken
     * again without waiting for the write. A job whose outcome is written
     * leaves the list (its row no longer counts anyway); one that was
     * rescued and claimed again runs under another claim, so it still counts.
     */
    const finishedUnwritten = (): ReadonlyArray<FinishedJob> => {
      const jobs: Array<FinishedJob> = []
      for (const [id, claim] of finished) {
        if (options.executor.outcomePendingUnsafe(id)) jobs.push({ id, claim })
        else finished.delete(id)
      }
      return jobs
    }

    /**
     * Gives jobs taken out of the buffer back to the queue: `available`
     * again, or `cancelled` for a workflow step whose cancel was requested (a
     * cancelled job outside workflows is already finished, and left alone).
     * If that fails, they stay claimed by this producer: its node's
     * reconciler, or the rescuer once the node is gone, puts them back.
     */
    const release = (jobs: ReadonlyArray<{ readonly job: Job; readonly ahead: boolean }>, what: string) =>
      releaseJobs(
        options.sql,
        options.prefix,
        jobs.map(({ ahead, job }) => ({ id: job.id, claim: job.attemptedBy?.[2] ?? "", ahead }))
      ).pipe(
        withStatementTimeout({ timeout: "5 seconds", operation: "give back" }),
        Effect.catchCause((cause) =>
          Effect.logWarning(`could not give back ${jobs.length} ${what}(s) claimed ahead; they will be rescued`, Cause.pretty(cause))
        )
      )
    /** Gives back every job claimed ahead (pause, shutdown). */
    const giveBack = Effect.suspend(() => {
      const jobs = buffer.takeAll()
      return jobs.length === 0 ? Effect.void : release(jobs, "job")
    })
    // Runs after the loops below have stopped (finalizers run in reverse order).
    yield* Effect.addFinalizer(() => giveBack)

    const scope = yield* Effect.scope
    const releaseLost = (claim: string) => releaseLostClaim(options.sql, options.prefix, claim, fetchTimeout)

    const scanAgain = (fetched: Fetched | LimitedFetch): boolean =>
      "limits" in fetched && QueueLimiter.claimsAgainAtOnce(fetched)

    // Set while a fiber waits for the unwritten outcomes to fall below the bound, to wake the loop then.
    let awaitingWrites = false
    /** Whether the node's unwritten outcomes are past the bound; if so, the loop is woken once they are not. */
    const writesBehind = Effect.suspend(() => {
      if (options.executor.unwrittenOutcomesUnsafe() < maxUnwrittenOutcomes) return Effect.succeed(false)
      if (awaitingWrites) return Effect.succeed(true)
      awaitingWrites = true
      const caughtUp = Effect.andThen(
        options.executor.unwrittenBelow(maxUnwrittenOutcomes),
        Effect.andThen(Effect.sync(() => (awaitingWrites = false)), wake)
      )
      return Effect.as(Effect.forkIn(caughtUp, scope), true)
    })

    const fetchOnce = Effect.gen(function*() {
      const limited = limiter.limited()
      const demand = buffer.demand(limit, running, !limited)
      if (paused || demand <= 0 || (yield* writesBehind) || !(yield* checkAlive)) return false as boolean
      const claim = crypto.randomUUID()
      const by = { node: options.node, producer: producerId, claim }
      const fetch = limited
        // Every job to start now: a limited queue claims nothing ahead.
        ? Effect.flatMap(statementNow(options.sql), (time) =>
          limiter.fetch(time, { demand, finished: finishedUnwritten(), ...by }))
        : Effect.flatMap(now(options.sql), (time) =>
        fetchJobs(options.sql, options.prefix, time, {
          queue: options.queue,
          demand,
          // Slots the jobs already waiting will not fill start at once; the rest wait here.
          startNow: Math.max(0, limit - running - buffer.size()),
          ...by
        }))
      const fetched = yield* fetch.pipe(
        withStatementTimeout({ timeout: fetchTimeout, operation: "fetch" }),
        // The server may have committed a claim whose reply we never got: put those jobs back.
        Effect.tapError(() => Effect.forkIn(releaseLost(claim), scope))
      )
      buffer.add(fetched.jobs, fetched.ahead)
      yield* Effect.annotateCurrentSpan("oban.fetched", fetched.jobs.length)
      yield* startWaiting
      return fetched.jobs.length === demand || scanAgain(fetched)
    }).pipe(
      Effect.withSpan(
        "oban.fetch",
        { kind: "internal", attributes: { "oban.queue": options.queue, "oban.node": options.node } },
        { captureStackTrace: false }
      ),
      Effect.uninterruptible
    )

    const drain = Effect.gen(function*() {
      while (yield* fetchOnce) {
        // A full batch: there may be more.
      }
      failures = 0
      if (registered) Deferred.doneUnsafe(ready, Exit.void)
    }).pipe(
      tracked,
      Effect.catchCause((cause) =>
        Effect.gen(function*() {
          failures++
          const delay = yield* retryDelay(failures)
          yield* Effect.logWarning(`fetch failed (${failures}x); trying again in ${Math.round(delay)} ms`).pipe(
            Effect.annotateLogs({ cause: Cause.pretty(cause) })
          )
          yield* Effect.sleep(delay)
          yield* wake
        })
      )
    )

    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Queue.take(signal), drain)).pipe(
      Effect.annotateLogs({ component: "Producer", queue: options.queue, node: options.node })
    ))
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(options.pollInterval), wake)))

    // Local commands bump `changes`; a stored state read before a local command must not undo it.
    let changes = 0
    const adopt = (state: ProducerState, readAt: number) =>
      Effect.suspend(() => {
        if (changes !== readAt) return Effect.void
        const changed = state.limit !== limit || state.paused !== paused
        limit = state.limit
        paused = state.paused
        return changed ? wake : Effect.void
      })
    /** New cluster-wide limits: jobs claimed ahead go back (a limited queue claims nothing ahead). */
    const limitsChanged = Effect.andThen(Effect.suspend(() => limiter.limited() ? giveBack : Effect.void), wake)
    const beatSql = options.liveness.sql
    /**
     * Registers this producer through `client`. The first registration runs on the shared pool: at
     * start-up nothing holds it yet and it has a connection open (the migration check used it), while
     * the node's own connection may still be opening, and the first claim waits for this. Later ones
     * (after a long outage) run on the node's own connection, like heartbeats.
     */
    const register = (client: SqlClient) => Effect.gen(function*() {
      const readAt = changes
      // The queue's limits first: written (config) before this node's row shows it up, or read
      // (no config) before its first claim.
      yield* options.liveness.run(limiter.load(client))
      const time = yield* now(client)
      const row = yield* options.liveness.run(registerProducer(client, options.prefix, time, {
        id: producerId,
        node: options.node,
        queue: options.queue,
        limit,
        paused,
        freshMillis: rescueAfterMillis,
        meta: options.meta ?? {}
      }))
      if (row.twins > 0) {
        yield* Effect.logWarning(
          `another live process runs queue ${options.queue} under the node name ${options.node}; ` +
            "each keeps its own producer rows and jobs, but give every process a unique node name"
        )
      }
      if (row.inherited) {
        // Rows left by an earlier run of this node: their stored state wins.
        yield* adopt(row, readAt)
      } else if (changes !== readAt) {
        // A command arrived while registering: store what this node now has.
        yield* storeQueueState(client, options.prefix, { queue: options.queue, node: options.node, limit, paused })
      }
    })
    const heartbeat = Effect.gen(function*() {
      if (!registered) {
        // The first registration (`registered` never goes back to false): on the pool.
        yield* register(options.sql)
      } else {
        const readAt = changes
        const state = yield* options.liveness.run(beat(beatSql, options.prefix, yield* now(beatSql), producerId))
        // The row was removed as stale (a long outage): this producer's jobs may have been rescued.
        if (state === undefined) {
          // Its claims may have been rescued meanwhile: jobs claimed ahead are not ours to start any more
          // (those still claimed here are put back by the node's reconciler).
          buffer.takeAll()
          yield* register(beatSql)
        }
        else {
          yield* adopt(state, readAt)
          if (limiter.adopt(state.limits)) yield* limitsChanged
        }
      }
      lastBeat = yield* Clock.currentTimeMillis
      if (!registered || lost) {
        if (lost) yield* Effect.logInfo("heartbeat restored; fetching again")
        registered = true
        lost = false
        yield* wake
      }
    })

    /**
     * Whether this producer's last heartbeat is recent enough that no rescuer
     * can have judged it dead. Past that, it stops claiming jobs: jobs it
     * claimed earlier may be rescued and run elsewhere, and it says so. The
     * jobs it runs keep running (delivery is at least once); their acks land
     * only if the job was not claimed again meanwhile.
     */
    const checkAlive = Effect.gen(function*() {
      if (!registered) return false
      if (lost) return false
      const silentFor = (yield* Clock.currentTimeMillis) - lastBeat
      if (silentFor < lostAfterMillis) return true
      lost = true
      yield* Effect.logWarning(
        `no heartbeat for ${silentFor} ms: this node may be judged dead after ${rescueAfterMillis} ms and its ` +
          `${running} running job(s) rescued and run again elsewhere; not claiming jobs until a heartbeat gets through`
      )
      return false
    })

    // Register at once, then beat on schedule; after a failure, try again soon, so that the first
    // moment the database answers again refreshes the row.
    yield* Effect.forkScoped(Effect.gen(function*() {
      let failures = 0
      while (true) {
        const result = yield* Effect.exit(tracked(heartbeat))
        if (result._tag === "Success") {
          failures = 0
          if (beatFailing) {
            beatFailing = false
            yield* startWaiting
          }
          yield* Effect.sleep(options.heartbeatInterval)
        } else {
          failures++
          beatFailing = true
          yield* Effect.logWarning(`heartbeat failed (${failures}x); trying again`, Cause.pretty(result.cause))
          yield* Effect.sleep(Math.min(heartbeatMillis, yield* retryDelay(failures, { baseMillis: 250, maxMillis: 2_000 })))
        }
      }
    }).pipe(Effect.annotateLogs({ component: "Producer", queue: options.queue, node: options.node })))

    return {
      queue: options.queue,
      id: producerId,
      wake,
      ready: Deferred.await(ready),
      forget: (jobId) =>
        Effect.suspend(() => {
          const dropped = buffer.forget(jobId)
          if (dropped === undefined) return Effect.succeed(false)
          return Effect.as(release([dropped], "cancelled job"), true)
        }),
      waiting: Effect.sync(() => buffer.ids()),
      pause: Effect.andThen(
        Effect.sync(() => {
          changes++
          paused = true
        }),
        giveBack
      ),
      resume: Effect.andThen(
        Effect.sync(() => {
          changes++
          paused = false
        }),
        wake
      ),
      scale: (next) =>
        Effect.andThen(
          Effect.sync(() => {
            changes++
            limit = next
          }),
          wake
        ),
      refreshLimits: limiter.refresh.pipe(
        Effect.flatMap((changed) => changed ? limitsChanged : Effect.void),
        Effect.catchCause((cause) =>
          Effect.logWarning("could not read the queue's limits; the next heartbeat reads them", Cause.pretty(cause))
        )
      ),
      local: Effect.sync(() => ({ queue: options.queue, node: options.node, limit, running, paused })),
      check: Effect.gen(function*() {
        const local = { queue: options.queue, node: options.node, limit, running, paused }
        const cluster = yield* limiter.usage(yield* now(options.sql))
        return { ...local, cluster }
      })
    }
  })
