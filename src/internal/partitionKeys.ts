/**
 * A queue whose cluster-wide limit or rate is partitioned by an args key that
 * the args of none of its workers have: every job then lands in the one
 * partition of jobs without the key, and a per-account limit of 1 runs the
 * whole queue one job at a time. Most often a misspelt key; the node says so
 * at start (a warning, not a refusal: jobs inserted by other code may carry
 * the key).
 */
import type * as Schema from "effect/Schema"
import { closest } from "./optionKeys.ts"
import type { Partition, QueueLimits } from "./queueLimits.ts"
import { storedFields } from "./storedFields.ts"

interface Worker {
  readonly name: string
  readonly queue: string
  readonly argsSchema?: Schema.Top | undefined
}

const argsKeys = (partitions: ReadonlyArray<Partition | undefined>): ReadonlyArray<string> =>
  [...new Set(partitions.flatMap((partition) => partition?.by === "args" ? [partition.key] : []))]

/**
 * The warnings for `queues`: a key is questioned only when the queue has
 * workers (by their default queue) and every one of them stores its args as a
 * struct without that field.
 */
export const unknownPartitionKeys = (
  queues: ReadonlyArray<{ readonly name: string; readonly limits: QueueLimits | undefined }>,
  workers: ReadonlyArray<Worker>
): ReadonlyArray<string> =>
  queues.flatMap((queue) => {
    if (queue.limits === undefined) return []
    const own = workers.filter((worker) => worker.queue === queue.name)
    const fields = own.map((worker) => worker.argsSchema === undefined ? undefined : storedFields(worker.argsSchema))
    if (own.length === 0 || fields.some((names) => names === undefined)) return []
    const known = [...new Set(fields.flatMap((names) => names ?? []))]
    return argsKeys([queue.limits.partition, queue.limits.rate?.partition]).flatMap((key) => {
      if (known.includes(key)) return []
      const meant = closest(key, known)
      return [
        `queue ${queue.name} partitions its limits by args key "${key}", which the args of its workers ` +
        `(${own.map((worker) => worker.name).join(", ")}) do not have${meant === undefined ? "" : ` (did you mean "${meant}"?)`}: ` +
        "jobs without it share one partition, so the limit holds for all of them together"
      ]
    })
  })
