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
import { tracked } from "./internal/activity.ts"
import { retryDelay } from "./internal/retryDelay.ts"
import { withStatementTimeout } from "./internal/statementTimeout.ts"
import * as ClaimBuffer from "./internal/claimBuffer.ts"
import * as ClaimReturns from "./internal/claimReturns.ts"
import * as Liveness from "./internal/producerLiveness.ts"
import * as QueueLimiter from "./internal/queueLimiter.ts"
import type { FinishedJob, LimitedFetch } from "./internal/sql/limitedClaims.ts"
import { type Fetched, fetchJobs } from "./internal/sql/claims.ts"
import { setExecutingUnsafe } from "./internal/telemetry.ts"
import type { Job } from "./Job.ts"
import { now, ObanClock, statementNow } from "./ObanClock.ts"

/** The longest a fetch may take before it counts as failed (a connection that stopped answering). */
const fetchTimeout = Duration.seconds(15)

/** How long shutdown waits for an interrupted fetch to end: past the driver's 5 s to give its connection up. */
const fetchSettle = Duration.seconds(6)

/**
 * Past this many outcomes waiting to be written on the node (two full ack
 * statements), producers claim nothing until the writes catch up: when the
 * database writes outcomes slower than jobs run, claiming on would only pile
 * finished jobs up in memory (and in `executing` rows).
 */
export const maxUnwrittenOutcomes = 1_000

export type { ClusterState, Options, Producer, QueueState } from "./internal/producerTypes.ts"
import type { Options, Producer } from "./internal/producerTypes.ts"
import * as FailureStreak from "./internal/failureStreak.ts"
import { failureLine } from "./internal/serverMessage.ts"
import { makeOversizedRowCheck } from "./internal/oversizedRows.ts"

/**
 * Starts a producer for the scope's life. Closing the scope stops fetching;
 * a fetch in flight completes, and the jobs it claimed either start or, not
 * started yet, are given back, so no claimed job is left behind.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Producer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const signal = yield* Queue.dropping<void>(1)
    const producerId = crypto.randomUUID()
    // On a virtual clock a claim's time is read before it is sent, and may be behind by then (see `startAttempt`).
    const virtualClock = (yield* ObanClock).mode === "effect"
    // The limit and paused flag, which commands set here and heartbeats read back.
    const control: Liveness.Control = {
      limit: options.limit,
      paused: options.paused,
      changes: 0,
      pauseChanges: 0,
      uncountedPauseChanges: 0,
      highestCountApplied: undefined,
      pauseCommandsSeen: undefined
    }
    let running = 0
    // Set as the node's shutdown begins (`stopStarting`).
    let stopping = false
    const fetchStreak = FailureStreak.make("fetches get through again")
    // Whether a fetch has got through since the last failed one (see `drain`).
    let fetchedSinceFailure = true

    const buffer = ClaimBuffer.make()
    // Claims sent and not yet answered: their jobs are this producer's to start, or to release if the
    // fetch fails, however long the reply takes (the reconciler leaves them alone).
    const claimsInFlight = new Set<string>()
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
    // The producer's own context, for the metrics it updates on the hot path and for the lines it logs
    // from its callers' fibers.
    const context = yield* Effect.context<never>()
    const logs = { component: "Producer", queue: options.queue, node: options.node }
    // The executing gauge has a series for the queue from the start, 0, not only once a job has run.
    setExecutingUnsafe(options.queue, 0, context)

    /**
     * Starts waiting jobs while slots are free: not while paused, nor while
     * heartbeats fail (the database is likely unreachable, and jobs started
     * now would only fail; they start when a heartbeat gets through). Runs
     * synchronously, once per finished job: this is the hot path.
     */
    const startWaitingUnsafe = (): boolean => {
      if (control.paused || stopping || !liveness.startable()) return false
      const jobs = buffer.take(control.limit - running)
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
      if (control.paused) return
      if (limiter.limited()) {
        finished.set(job.id, job.attemptedBy?.[2] ?? "")
        Queue.offerUnsafe(signal, undefined)
      } // Wake the fetch loop only when there is something to claim: not once per job.
      else if (buffer.demand(control.limit, running) > 0) Queue.offerUnsafe(signal, undefined)
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

    /** Applies a pause or resume command here (see `Control`); returns whether the queue was paused. */
    const setPaused = (paused: boolean, counted: string | undefined): boolean => {
      const was = control.paused
      control.changes++
      control.pauseChanges++
      if (counted === undefined) control.uncountedPauseChanges++
      else if (control.highestCountApplied === undefined || BigInt(counted) > BigInt(control.highestCountApplied)) {
        control.highestCountApplied = counted
      }
      control.paused = paused
      return was
    }
    const scope = yield* Effect.scope
    const returns = ClaimReturns.make({
      sql: options.sql,
      prefix: options.prefix,
      scope,
      context,
      logs,
      fetchTimeout,
      fetchSettle
    })
    /** Gives back every job waiting here (pause, a producer row found dead). */
    const giveBack = Effect.asVoid(returns.giveBack(() => buffer.takeAll(), "job"))
    // Runs after the loops below and the retries of `returns` have stopped (finalizers run in reverse order).
    yield* Effect.addFinalizer(() => Effect.suspend(() => returns.atShutdown(buffer.takeAll())))

    /** New cluster-wide limits: jobs claimed ahead go back (a limited queue claims nothing ahead). */
    const limitsChanged = Effect.andThen(Effect.suspend(() => limiter.limited() ? giveBack : Effect.void), wake)
    const liveness = Liveness.make({
      options,
      producerId,
      control,
      running: () => running,
      limiter,
      // Forked, as below.
      giveBackWaiting: Effect.asVoid(Effect.forkIn(giveBack, scope)),
      limitsChanged,
      wake,
      restored: startWaiting,
      clock,
      // Forked: the give-back runs on the shared pool, and the heartbeat must not wait for it.
      pausedByRow: Effect.asVoid(Effect.forkIn(giveBack, scope))
    })

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

    const fetchOnce = Effect.uninterruptibleMask((restore) => Effect.gen(function*() {
      const limited = limiter.limited()
      const demand = buffer.demand(control.limit, running, !limited)
      // Nothing is claimed while jobs could not start (heartbeats failing, or too long silent): a claim
      // counts an attempt for the jobs meant to start at once, which a rescue of them would keep.
      if (
        control.paused || stopping || demand <= 0 || (yield* writesBehind) || !(yield* liveness.checkAlive) || !liveness.startable()
      ) return false as boolean
      const claim = crypto.randomUUID()
      const by = { node: options.node, producer: producerId, claim, virtualClock }
      // Slots the jobs already waiting will not fill start at once; the rest wait here.
      const startNow = limited ? demand : Math.max(0, control.limit - running - buffer.size())
      // The claim's time is taken as it runs, not when its transaction began (see `statementNow`).
      const fetch = Effect.flatMap(statementNow(options.sql), (time) =>
        limited
          // Every job to start now: a limited queue claims nothing ahead.
          ? limiter.fetch(time, { demand, finished: finishedUnwritten(), liveProducer: true, ...by })
          : fetchJobs(options.sql, options.prefix, time, { queue: options.queue, demand, startNow, liveProducer: true, ...by }))
      // Only the wait for the reply can be interrupted: shutdown does not wait out the deadline of a fetch
      // that gets no reply. It waits until the interrupted statement has ended (the driver's cancel, or
      // its 5 s to give the connection up), so the claim is released as the producer stops only once
      // it can no longer commit.
      claimsInFlight.add(claim)
      // A fetch past its deadline goes on in the background until the driver hears it end.
      let ended: Effect.Effect<void> = Effect.void
      const fetched = yield* restore(withStatementTimeout(fetch, {
        timeout: fetchTimeout,
        operation: "fetch",
        settleOnInterrupt: fetchSettle,
        onAbandon: (statementEnded) => (ended = statementEnded)
      })).pipe(
        // The server may have committed a claim whose reply we never got (or could not read): put
        // those jobs back. The claim leaves the fetches in flight only once it is being released.
        Effect.onError((cause) =>
          Effect.andThen(
            returns.fetchFailed(claim, ended, stopping && Cause.hasInterruptsOnly(cause)),
            Effect.sync(() => claimsInFlight.delete(claim))
          )
        )
      )
      fetchedSinceFailure = true
      // In one step with taking its jobs: the reconciler sees the claim in flight or its jobs here.
      try {
        buffer.add(fetched.jobs, fetched.ahead)
      } finally {
        claimsInFlight.delete(claim)
      }
      yield* Effect.annotateCurrentSpan("oban.fetched", fetched.jobs.length)
      // A pause that came while the claim was in flight gave back an older buffer: these go back too.
      if (control.paused) yield* giveBack
      const more = fetched.jobs.length === demand || scanAgain(fetched)
      // A busy queue of short jobs that will claim again at once: these start on the next turn, after
      // the loop has sent that claim, so it is on its way while they run (started now, they would run
      // to the end of the batch first, and claims and jobs would take turns).
      if (more && !limited && buffer.demand(control.limit, running) > 0) {
        // Tracked, so a test moving virtual time waits for these to start.
        yield* Effect.forkIn(tracked(Effect.andThen(Effect.yieldNow, startWaiting)), scope)
      } else {
        yield* startWaiting
      }
      return more
    }).pipe(
      Effect.withSpan(
        "oban.fetch",
        { kind: "internal", attributes: { "oban.queue": options.queue, "oban.node": options.node } },
        { captureStackTrace: false }
      )
    ))

    const checkOversizedRows = makeOversizedRowCheck({ sql: options.sql, prefix: options.prefix, queue: options.queue, timeout: fetchTimeout })

    const drain = Effect.gen(function*() {
      while (yield* fetchOnce) {
        // A full batch: there may be more.
      }
      // Only a fetch that got through ends a run of failures: one not sent (heartbeats failing, outcomes
      // unwritten) said "fetches get through again" as an outage began.
      if (fetchedSinceFailure) yield* fetchStreak.succeeded
      if (liveness.registered()) Deferred.doneUnsafe(ready, Exit.void)
    }).pipe(
      tracked,
      Effect.catchCause((cause) =>
        Effect.gen(function*() {
          fetchedSinceFailure = false
          const failures = fetchStreak.failed()
          const delay = yield* retryDelay(failures)
          yield* fetchStreak.warn(`fetch failed (${failures}x); trying again in ${Math.round(delay)} ms`, cause)
          // A row too large for the driver to read fails every fetch that claims it: such rows go.
          yield* checkOversizedRows(cause, control.limit)
          yield* Effect.sleep(delay)
          yield* wake
        })
      )
    )

    /**
     * Says what a command changed on this node. In the producer's own context: a command given through
     * the node's service runs in its caller's fiber, whose loggers and annotations are not the node's.
     */
    const said = (change: string) =>
      Effect.logInfo(`queue ${options.queue} ${change}`).pipe(Effect.annotateLogs(logs), Effect.provideContext(context))

    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Queue.take(signal), drain)).pipe(Effect.annotateLogs(logs)))
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(options.pollInterval), wake)))

    yield* liveness.start

    const localState = () => ({
      queue: options.queue,
      node: options.node,
      limit: control.limit,
      running,
      paused: control.paused
    })

    return {
      queue: options.queue,
      id: producerId,
      wake,
      ready: Deferred.await(ready),
      forget: (jobId) =>
        Effect.map(returns.giveBack(() => {
          const dropped = buffer.forget(jobId)
          return dropped === undefined ? [] : [dropped]
        }, "cancelled job"), (taken) => taken > 0),
      unreturned: Effect.sync(() => {
        const pending = returns.pending()
        return { jobs: [...buffer.ids(), ...pending.jobs], claims: [...claimsInFlight, ...pending.claims] }
      }),
      pause: (counted) =>
        Effect.andThen(
          Effect.sync(() => setPaused(true, counted)),
          (was) => was ? giveBack : Effect.andThen(said("paused: no more jobs start; running ones finish"), giveBack)
        ),
      resume: (counted) =>
        Effect.andThen(
          Effect.sync(() => setPaused(false, counted)),
          (was) => was ? Effect.andThen(said("resumed"), wake) : wake
        ),
      stopStarting: Effect.sync(() => {
        stopping = true
      }),
      notePauseCommands: (count) => Effect.sync(() => liveness.rememberPauseCommands(count)),
      scale: (next) =>
        Effect.andThen(
          Effect.sync(() => {
            const was = control.limit
            control.changes++
            control.limit = next
            return was
          }),
          (was) => was === next ? wake : Effect.andThen(said(`scaled from ${was} to ${next}`), wake)
        ),
      refreshLimits: limiter.refresh.pipe(
        Effect.flatMap((changed) => changed ? limitsChanged : Effect.void),
        Effect.catchCause((cause) =>
          Effect.logWarning(`could not read the queue's limits; the next heartbeat reads them: ${failureLine(cause)}`, Cause.pretty(cause))
        )
      ),
      local: Effect.sync(() => localState()),
      check: Effect.gen(function*() {
        const local = localState()
        const cluster = yield* limiter.usage(yield* now(options.sql))
        return { ...local, cluster }
      })
    }
  })
