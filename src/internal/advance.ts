/**
 * `ObanTest.advance`: moves virtual time for a whole node and waits, at each
 * step, until the node has done what that moment asks of it.
 *
 * A node's loops wake on `TestClock`, but their work is real database I/O,
 * which virtual time does not wait for: one `TestClock.adjust` of an hour
 * wakes each loop once, part-way, and a job due at the end is still
 * scheduled afterwards. So time moves in steps: to the next moment something
 * falls due (a scheduled or retryable job, a cron slot, the end of a running
 * job's sleep or timeout), or by at most `step` (so heartbeats, the leader
 * lease and rescue keep their schedule), and after each step the node is
 * left to settle:
 * - no loop is at work (fetching, beating, running maintenance, writing outcomes);
 * - no running job started or ended during a short quiet window (a job that
 *   waits on virtual time stays as it is);
 * - no scheduled or retryable job is due (they are staged here, at once);
 * - no queue of the node has available jobs and a free slot.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlError } from "effect/sql/SqlError"
import type { TestClock } from "effect/testing"
import { Oban } from "../Oban.ts"
import { isTestClock } from "./activity.ts"
import { handleOf, type NodeHandle } from "./nodeHandle.ts"
import { duration } from "./optionChecks.ts"
import { ObanTestError } from "./testError.ts"

/** What `advance` takes; every field is optional. */
export interface AdvanceOptions {
  /** The largest single step of virtual time. Default: the node's shortest heartbeat, lease renewal or rescue interval (10 s). */
  readonly step?: Duration.Input | undefined
  /** How long, in real time, the node may take to settle after one step. Default 30 s. */
  readonly timeout?: Duration.Input | undefined
  /**
   * A running job that neither starts nor ends for this long (real time) counts as waiting (on virtual
   * time). Default 5 ms. A job doing real I/O for longer counts as waiting too: raise it above that.
   */
  readonly quiet?: Duration.Input | undefined
}

/** One turn of the event loop: I/O callbacks run, timers do not wait. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** An option of `advance` in ms: a finite duration of at least `minimum`, else `ObanTestError` naming it. */
const checked = (
  name: string,
  input: Duration.Input | undefined,
  fallback: Duration.Duration,
  minimum: Duration.Duration
): Effect.Effect<number, ObanTestError> =>
  duration(name, input, fallback, minimum).pipe(
    Effect.map(Duration.toMillis),
    Effect.mapError((error) => new ObanTestError({ message: `ObanTest.advance: ${error.message}` }))
  )

/** After this many steps in a row in which no job started or ended, sleep ends are no longer steps (until one does). */
const maxQuietSleepSteps = 100

/** `moment` if it is later than `current`; otherwise no bound. */
const after = (current: number, moment: number | undefined): number =>
  moment !== undefined && moment > current ? moment : Infinity

/**
 * Waits until the node is idle, in real time, and returns when the next job
 * or cron slot falls due; fails with what kept the node busy after `timeout`.
 */
const settle = (
  clock: TestClock.TestClock,
  handle: NodeHandle,
  timeoutMillis: number,
  quietMillis: number
): Effect.Effect<number | undefined, ObanTestError | SqlError> =>
  clock.withLive(Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    let reason = "no check of it finished in that time"
    // A queue woken with jobs available that started none (held back by a cluster-wide limit, say)
    // is not woken again for the same backlog until something changes.
    const woke = new Map<string, string>()
    while (Date.now() < deadline) {
      if (handle.activity.busy() > 0) {
        reason = `${handle.activity.busy()} unit(s) of work in flight`
        yield* turn
        continue
      }
      const before = handle.activity.jobs()
      if (before.running > 0) yield* Effect.sleep(quietMillis)
      else yield* turn
      if (handle.activity.busy() > 0 || handle.activity.jobs().changes !== before.changes) {
        reason = "jobs starting or ending"
        continue
      }
      const work = yield* handle.pendingWork
      if (work.queues.some((queue) => queue.due > 0)) {
        reason = "scheduled jobs due"
        yield* handle.stage
        continue
      }
      let woken = false
      for (const queue of handle.queues) {
        const available = work.queues.find((entry) => entry.queue === queue.name)?.available ?? 0
        if (available === 0) continue
        const state = yield* queue.check
        if (state.paused || state.running >= state.limit) continue
        const seen = `${available}/${handle.activity.jobs().changes}`
        if (woke.get(queue.name) === seen) continue
        woke.set(queue.name, seen)
        reason = `${available} available job(s) in queue ${queue.name}, which has free slots`
        yield* queue.wake
        woken = true
      }
      // Idle only if nothing started meanwhile (a producer woken in an earlier round, say).
      if (!woken && handle.activity.busy() === 0 && handle.activity.jobs().changes === before.changes) {
        return work.nextDue?.getTime()
      }
      yield* turn
      yield* turn
    }
    return yield* new ObanTestError({ message: `the node did not settle within ${timeoutMillis} ms: ${reason}` })
  }))

export const advance = (
  duration: Duration.Input,
  options: AdvanceOptions = {}
): Effect.Effect<void, ObanTestError | SqlError, Oban> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    if (!isTestClock(clock)) {
      return yield* new ObanTestError({ message: "ObanTest.advance needs TestClock: provide TestClock.layer() to the test" })
    }
    const handle = handleOf(yield* Oban)
    if (handle === undefined) {
      return yield* new ObanTestError({ message: "ObanTest.advance needs a node: the Oban service of Oban.layer" })
    }
    // A step of 0 or NaN never moved the clock, and a negative one moved it back: each looped until the test's timeout.
    const [by, step, timeout, quiet] = yield* Effect.all([
      checked("duration", duration, Duration.zero, Duration.zero),
      checked("step", options.step, Duration.millis(handle.maxStepMillis), Duration.millis(1)),
      checked("timeout", options.timeout, Duration.seconds(30), Duration.millis(1)),
      checked("quiet", options.quiet, Duration.millis(5), Duration.zero)
    ])
    const target = clock.currentTimeMillisUnsafe() + by
    // Steps in a row in which no job started or ended (see below).
    let quietSleepSteps = 0
    let changesBefore = handle.activity.jobs().changes
    while (true) {
      const due = yield* settle(clock, handle, timeout, quiet)
      const current = clock.currentTimeMillisUnsafe()
      if (current >= target) return
      // A running job's sleep end is a step, so what follows (its outcome, a job in the slot it frees) happens
      // then; but not after many such steps in a row in which no job started or ended (a job polling every
      // few milliseconds would otherwise make a step of each poll).
      const changes = handle.activity.jobs().changes
      quietSleepSteps = changes === changesBefore ? quietSleepSteps + 1 : 0
      changesBefore = changes
      const sleepEnd = quietSleepSteps < maxQuietSleepSteps ? handle.activity.nextSleepEnd(current) : undefined
      const next = Math.min(target, current + step, after(current, due), after(current, sleepEnd))
      yield* clock.adjust(next - current)
    }
  })
