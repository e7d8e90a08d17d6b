/**
 * The workers the benchmark runs: a no-op that reports each job it ran (for the
 * drain workloads), and a timed one that reports insert-to-start latency.
 * The parent process and the drainer processes share these names.
 */
import { Deferred, Effect, Schema } from "effect"
import * as Worker from "../src/Worker.ts"

/** A no-op worker; `onRun` sees the id of every job it runs. */
export const makeNoop = (onRun: (jobId: number) => Effect.Effect<void>) =>
  Worker.make("BenchNoop", {
    args: Schema.Struct({ i: Schema.Number }),
    perform: (job) => onRun(job.id)
  })

/**
 * A no-op worker that counts how often each job ran and completes `allRan`
 * once `expected` jobs have run.
 */
export const makeCounting = (expected: number) =>
  Effect.map(Deferred.make<void>(), (allRan) => {
    const runs = new Map<number, number>()
    let total = 0
    const worker = makeNoop((id) =>
      Effect.suspend(() => {
        runs.set(id, (runs.get(id) ?? 0) + 1)
        return ++total === expected ? Effect.asVoid(Deferred.succeed(allRan, undefined)) : Effect.void
      })
    )
    return { worker, runs, allRan, ran: () => total }
  })

/** For inserting no-op jobs from a process that does not run them. */
export const Noop = makeNoop(() => Effect.void)

/** The current time in milliseconds since the epoch, with sub-millisecond precision. */
export const epochMillis = (): number => performance.timeOrigin + performance.now()

/** A worker whose args carry the insert time; `onRun` gets `start - insertedAt` in ms. */
export const makeTimed = (onRun: (jobId: number, latencyMs: number) => Effect.Effect<void>) =>
  Worker.make("BenchTimed", {
    args: Schema.Struct({ insertedAt: Schema.Number }),
    perform: (job) => Effect.suspend(() => onRun(job.id, epochMillis() - job.args.insertedAt))
  })
