/**
 * What a node (or the testing kit) checks of its workers before it runs a
 * job: names given once, a default queue a queue can be named, a
 * `timeout` that is a positive duration and a `backoff` that is a Schedule.
 * A bad timeout would otherwise break every attempt of the worker at its
 * start, and a bad backoff every retry.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { InvalidConfigError } from "../Errors.ts"
import { describe } from "./jsonText.ts"
import { queueNameProblem, shown } from "./queueName.ts"

export const checkWorkers = (
  workers: ReadonlyArray<
    {
      readonly name: string
      readonly queue: string
      readonly timeout: Duration.Input | undefined
      readonly backoff?: unknown
    }
  >
): Effect.Effect<void, InvalidConfigError> =>
  Effect.gen(function*() {
    const names = new Set<string>()
    for (const worker of workers) {
      if (names.has(worker.name)) {
        return yield* new InvalidConfigError({ field: "workers", message: `two workers are named "${worker.name}"` })
      }
      names.add(worker.name)
      // Its default queue: every insert of the worker would fail on it otherwise.
      const queueProblem = queueNameProblem(worker.queue)
      if (queueProblem !== undefined) {
        return yield* new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}": queue name ${shown(worker.queue)} ${queueProblem}`
        })
      }
      if (worker.timeout !== undefined && !isPositive(worker.timeout)) {
        return yield* new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}": timeout must be a duration longer than 0, got ${String(worker.timeout)}`
        })
      }
      if (worker.backoff !== undefined && !Schedule.isSchedule(worker.backoff)) {
        return yield* new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}": backoff must be a Schedule (Schedule.exponential("1 second"), say), got ${
            describe(worker.backoff)
          }`
        })
      }
    }
  })

const isPositive = (input: Duration.Input): boolean => {
  try {
    const parsed = Duration.fromInput(input)
    return Option.isSome(parsed) && Duration.isGreaterThan(parsed.value, Duration.zero)
  } catch {
    // Some malformed text throws rather than giving none.
    return false
  }
}

/**
 * What the node's start line adds about workers whose own queue it does not
 * run (their jobs, unless inserted into another queue, wait for a node that
 * runs it): `"; workers of queues it does not run: Report (reports)"`, or
 * nothing. Not a warning: nodes that share one list of workers and split the
 * queues between them are a normal setup.
 */
export const otherQueuesNote = (
  workers: ReadonlyArray<{ readonly name: string; readonly queue: string }>,
  queues: ReadonlySet<string>
): string => {
  const elsewhere = workers.filter((worker) => !queues.has(worker.queue))
  if (elsewhere.length === 0) return ""
  // A node that runs no queue (cron or maintenance only) would otherwise list every worker.
  const named = elsewhere.slice(0, maxNamed).map((worker) => `${worker.name} (${worker.queue})`).join(", ")
  const more = elsewhere.length > maxNamed ? ` and ${elsewhere.length - maxNamed} more` : ""
  return `; workers of queues it does not run: ${named}${more}`
}

/** The most workers the start line names. */
const maxNamed = 10
