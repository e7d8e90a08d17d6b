/**
 * One producer per queue per node. It wakes on an insert notification for its
 * queue, on a poll tick, or when one of its jobs finishes; wake-ups that come
 * while it is busy collapse into one. Each time, it claims up to
 * `limit - running` jobs in one statement and hands them to the executor,
 * until the queue is empty or the limit is reached. It honours pause, resume
 * and scale, and never dies of a database error: it logs, waits a little and
 * tries again at the next wake-up.
 *
 * It fetches only once its row in `oban_producers` exists, and refreshes that
 * row every `heartbeatInterval`: the rescuer treats the jobs of a producer
 * without a fresh row as orphans. The heartbeat also reads back the queue's
 * stored limit and paused flag, so a command for every node that this node
 * missed (its LISTEN connection was down) takes effect within one heartbeat.
 *
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Queue, type Scope } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { ExecutorShape } from "./Executor.ts"
import { retryDelay } from "./internal/retryDelay.ts"
import { fetchJobs } from "./internal/sql/jobs.ts"
import { beat, type ProducerState, registerProducer, storeQueueState } from "./internal/sql/producers.ts"
import { setExecuting } from "./internal/telemetry.ts"
import { now } from "./ObanClock.ts"

/**
 * What `checkQueue` reports.
 *
 * @since 0.1.0
 */
export interface QueueState {
  readonly queue: string
  readonly node: string
  readonly limit: number
  readonly running: number
  readonly paused: boolean
}

/**
 * @since 0.1.0
 */
export interface Producer {
  readonly queue: string
  /** Ask for a fetch soon. Cheap and safe to call any number of times. */
  readonly wake: Effect.Effect<void>
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  readonly scale: (limit: number) => Effect.Effect<void>
  readonly check: Effect.Effect<QueueState>
}

/**
 * @since 0.1.0
 */
export interface Options {
  readonly sql: SqlClient
  readonly prefix: string
  readonly node: string
  readonly queue: string
  readonly limit: number
  readonly paused: boolean
  readonly pollInterval: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
  readonly executor: ExecutorShape
}

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

    const wake = Effect.asVoid(Queue.offer(signal, undefined))
    const onDone = Effect.suspend(() => {
      running--
      return Effect.andThen(setExecuting(options.queue, running), wake)
    })

    const fetchOnce = Effect.gen(function*() {
      const demand = limit - running
      if (!registered || paused || demand <= 0) return false as boolean
      const jobs = yield* fetchJobs(options.sql, options.prefix, yield* now(options.sql), {
        queue: options.queue,
        demand,
        node: options.node,
        producer: producerId
      })
      running += jobs.length
      yield* setExecuting(options.queue, running)
      yield* Effect.annotateCurrentSpan("oban.fetched", jobs.length)
      yield* Effect.forEach(jobs, (job) => options.executor.execute(job, onDone), { discard: true })
      return jobs.length === demand
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
    }).pipe(
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
    const register = Effect.gen(function*() {
      const readAt = changes
      const time = yield* now(options.sql)
      const row = yield* registerProducer(options.sql, options.prefix, time, {
        node: options.node,
        queue: options.queue,
        limit,
        paused
      })
      registered = true
      if (!row.inserted) {
        // A row left by an earlier run of this node: its stored state wins.
        yield* adopt(row, readAt)
      } else if (changes !== readAt) {
        // A command arrived while registering: store what this node now has.
        yield* storeQueueState(options.sql, options.prefix, { queue: options.queue, node: options.node, limit, paused })
      }
      yield* wake
    })
    const heartbeat = Effect.gen(function*() {
      if (!registered) return yield* register
      const readAt = changes
      const state = yield* beat(options.sql, options.prefix, yield* now(options.sql), options.node, options.queue)
      if (state === undefined) return yield* register
      yield* adopt(state, readAt)
    }).pipe(
      Effect.catchCause((cause) => Effect.logWarning("heartbeat failed; will try again", Cause.pretty(cause)))
    )
    // Register at once (retrying quickly until it works), then beat on schedule.
    yield* Effect.forkScoped(Effect.gen(function*() {
      while (!registered) {
        yield* heartbeat
        if (!registered) yield* Effect.sleep("500 millis")
      }
      yield* Effect.forever(Effect.andThen(Effect.sleep(options.heartbeatInterval), heartbeat))
    }).pipe(Effect.annotateLogs({ component: "Producer", queue: options.queue, node: options.node })))

    return {
      queue: options.queue,
      wake,
      pause: Effect.sync(() => {
        changes++
        paused = true
      }),
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
      check: Effect.sync(() => ({ queue: options.queue, node: options.node, limit, running, paused }))
    }
  })
