/**
 * What a node (or the testing kit) checks of its workers before it runs a
 * job: names given once, a default queue a queue can be named, a
 * `timeout` that is a positive duration and a `backoff` that is a Schedule,
 * a default priority and attempts its jobs can have, and no option
 * `Worker.make` does not know. A bad timeout would otherwise break every
 * attempt of the worker at its start, a bad backoff every retry, a bad
 * priority every insert, and a misspelt option (`maxAtempts`) would be
 * ignored.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { InvalidConfigError } from "../Errors.ts"
import { describe } from "./jsonText.ts"
import { queueNameProblem, shown } from "./queueName.ts"

/** The options `Worker.make` takes. */
export const workerOptionKeys: ReadonlyArray<string> = [
  "args", "queue", "priority", "maxAttempts", "tags", "unique", "timeout", "backoff", "retryable", "result", "errors",
  "threads", "perform"
]

const invalidOptionsKey: unique symbol = Symbol.for("effect-oban/Worker/invalidOptions")

/** Marks `worker` as made with options the node refuses at start (see `checkWorkers`), saying why. */
export const refuseAtStart = <W extends object>(worker: W, message: string): W => {
  // An own enumerable property, so that a copy of the worker (`{ ...worker }`) keeps it.
  ;(worker as { [invalidOptionsKey]?: string })[invalidOptionsKey] = message
  return worker
}

export const checkWorkers = (
  workers: ReadonlyArray<
    {
      readonly name: string
      readonly queue: string
      readonly priority?: number
      readonly maxAttempts?: number
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
      const invalid = (worker as { readonly [invalidOptionsKey]?: string })[invalidOptionsKey]
      if (invalid !== undefined) {
        return yield* new InvalidConfigError({ field: "workers", message: `worker "${worker.name}": ${invalid}` })
      }
      if (worker.priority !== undefined && !(Number.isInteger(worker.priority) && worker.priority >= 0 && worker.priority <= 9)) {
        return yield* new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}": priority must be an integer from 0 to 9, got ${describe(worker.priority)}`
        })
      }
      if (
        worker.maxAttempts !== undefined &&
        !(Number.isInteger(worker.maxAttempts) && worker.maxAttempts >= 1 && worker.maxAttempts <= 32767)
      ) {
        return yield* new InvalidConfigError({
          field: "workers",
          message: `worker "${worker.name}": maxAttempts must be an integer from 1 to 32767, got ${describe(worker.maxAttempts)}`
        })
      }
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
