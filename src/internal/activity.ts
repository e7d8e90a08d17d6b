/**
 * What a node's loops are doing right now, for `ObanTest.advance`: each loop
 * counts itself busy while it works (a fetch, a heartbeat, a maintenance run,
 * an ack write), so that a test moving virtual time can wait until the node's
 * database I/O has settled before it moves time again. Two integer updates
 * per unit of work; nothing else. On `TestClock`, it also knows when the
 * sleeps of running jobs end (see `watchSleeps`), so that time stops there.
 */
import type * as Clock from "effect/Clock"
import type { TestClock } from "effect/testing"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

export interface Activity {
  /** Units of work in flight: loops at work, and outcomes not yet written. */
  readonly busy: () => number
  /** Adds to (or, negative, takes from) the units in flight. */
  readonly addUnsafe: (units: number) => void
  /** Counts `effect` as busy while it runs. */
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Jobs running, and how many times a job started or ended: jobs that wait change nothing. */
  readonly jobs: () => { readonly running: number; readonly changes: number }
  readonly jobStartedUnsafe: () => void
  readonly jobEndedUnsafe: () => void
  /** A job began a sleep (on `TestClock`) that ends at `end` (virtual millis); see `sleepEndedUnsafe`. */
  readonly sleepStartedUnsafe: (end: number) => void
  /** The sleep ending at `end` woke or was interrupted. */
  readonly sleepEndedUnsafe: (end: number) => void
  /** When the earliest sleep of a running job ends after `current`, if any does. */
  readonly nextSleepEnd: (current: number) => number | undefined
}

export const make = (): Activity => {
  let busy = 0
  let running = 0
  let changes = 0
  // Sleeps of running jobs by their end: at most a few per running job.
  const sleeps = new Map<number, number>()
  return {
    busy: () => busy,
    addUnsafe: (units) => {
      busy += units
    },
    track: (effect) =>
      Effect.suspend(() => {
        busy++
        return Effect.ensuring(effect, Effect.sync(() => busy--))
      }),
    jobs: () => ({ running, changes }),
    jobStartedUnsafe: () => {
      running++
      changes++
    },
    jobEndedUnsafe: () => {
      running--
      changes++
    },
    sleepStartedUnsafe: (end) => {
      sleeps.set(end, (sleeps.get(end) ?? 0) + 1)
    },
    sleepEndedUnsafe: (end) => {
      const left = (sleeps.get(end) ?? 1) - 1
      if (left <= 0) sleeps.delete(end)
      else sleeps.set(end, left)
    },
    nextSleepEnd: (current) => {
      let earliest: number | undefined
      for (const end of sleeps.keys()) if (end > current && (earliest === undefined || end < earliest)) earliest = end
      return earliest
    }
  }
}

const nothing = (): void => {}

/** Outside a node (a loop run on its own, as tests do): nothing is counted. */
const untracked: Activity = {
  busy: () => 0,
  addUnsafe: nothing,
  track: (effect) => effect,
  jobs: () => ({ running: 0, changes: 0 }),
  jobStartedUnsafe: nothing,
  jobEndedUnsafe: nothing,
  sleepStartedUnsafe: nothing,
  sleepEndedUnsafe: nothing,
  nextSleepEnd: () => undefined
}

/** The activity of the node whose fibers read it. */
export const CurrentActivity = Context.Reference<Activity>("effect-oban/internal/CurrentActivity", {
  defaultValue: () => untracked
})

/** Counts `effect` as busy in the current node's activity. */
export const tracked = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.service(CurrentActivity), (activity) => activity.track(effect))

/** Whether `clock` is Effect's `TestClock` (it can be adjusted), by its shape. */
export const isTestClock = (clock: Clock.Clock): clock is TestClock.TestClock =>
  typeof (clock as Partial<TestClock.TestClock>).adjust === "function" &&
  typeof (clock as Partial<TestClock.TestClock>).withLive === "function"

/**
 * The clock a node's jobs run with: on `TestClock`, one whose sleeps (a
 * worker's `Effect.sleep`, a timeout, a schedule's delay) are recorded in
 * `activity` until they wake, so `ObanTest.advance` moves time to the moment
 * each ends, and what follows (the outcome, the next job in the freed slot)
 * happens at that moment rather than at the end of a longer step. Any other
 * clock is returned as it is.
 */
export const watchSleeps = (clock: Clock.Clock, activity: Activity): Clock.Clock => {
  if (!isTestClock(clock)) return clock
  // Recorded and its removal in place in one uninterruptible step: an interrupt in between would leave it behind.
  const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
    Effect.uninterruptibleMask((restore) => {
      const end = clock.currentTimeMillisUnsafe() + Duration.toMillis(duration)
      if (!(end > clock.currentTimeMillisUnsafe())) return restore(clock.sleep(duration))
      activity.sleepStartedUnsafe(end)
      return Effect.ensuring(restore(clock.sleep(duration)), Effect.sync(() => activity.sleepEndedUnsafe(end)))
    })
  // A TestClock's methods are its own arrow functions, so the copy keeps `adjust`, `setTime` and `withLive`.
  return { ...clock, sleep }
}
