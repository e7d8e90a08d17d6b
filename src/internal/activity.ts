/**
 * What a node's loops are doing right now, for `ObanTest.advance`: each loop
 * counts itself busy while it works (a fetch, a heartbeat, a maintenance run,
 * an ack write), so that a test moving virtual time can wait until the node's
 * database I/O has settled before it moves time again. Two integer updates
 * per unit of work; nothing else.
 */
import * as Context from "effect/Context"
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
}

export const make = (): Activity => {
  let busy = 0
  let running = 0
  let changes = 0
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
  jobEndedUnsafe: nothing
}

/** The activity of the node whose fibers read it. */
export const CurrentActivity = Context.Reference<Activity>("effect-oban/internal/CurrentActivity", {
  defaultValue: () => untracked
})

/** Counts `effect` as busy in the current node's activity. */
export const tracked = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.service(CurrentActivity), (activity) => activity.track(effect))
