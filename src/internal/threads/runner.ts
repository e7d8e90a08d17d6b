/**
 * The entry point of a worker thread (or child process): imports the worker
 * module named in `workerData` (or, in a child process, an environment
 * variable), finds the worker by name among its exports, and serves its
 * `Perform` RPC over `NodeWorkerRunner` until the node closes the thread.
 */
import * as NodeWorkerRunner from "@effect/platform-node/NodeWorkerRunner"
import { Cause, Effect, Layer } from "effect"
import { RpcServer } from "effect/rpc"
import { workerData } from "node:worker_threads"
import { performGroup, type ThreadWorker, toJob, toPerformError } from "./protocol.ts"
import { type RunnerData, runnerDataEnv } from "./runnerData.ts"

const isWorker = (value: unknown, name: string): value is ThreadWorker<unknown> =>
  typeof value === "object" && value !== null && (value as { name?: unknown }).name === name &&
  typeof (value as { perform?: unknown }).perform === "function"

const findWorker = (data: RunnerData) =>
  Effect.flatMap(
    Effect.promise(() => import(data.module) as Promise<Record<string, unknown>>),
    (exports) => {
      const found = Object.values(exports).find((value) => isWorker(value, data.worker))
      return found === undefined
        ? Effect.die(new Error(`${data.module} exports no worker named "${data.worker}"`))
        : Effect.succeed(found)
    }
  )

const serve = (worker: ThreadWorker<unknown>) => {
  const group = performGroup(worker)
  const handlers = group.toLayer({
    Perform: ({ args, job }) =>
      worker.perform(toJob(job, args)).pipe(
        Effect.asVoid,
        Effect.mapError(toPerformError),
        Effect.annotateLogs({ jobId: job.id, worker: job.worker, queue: job.queue, attempt: job.attempt })
      )
  })
  return RpcServer.layer(group).pipe(
    Layer.provide(handlers),
    Layer.provide(RpcServer.layerProtocolWorkerRunner),
    Layer.provide(NodeWorkerRunner.layer)
  )
}

// A runner that cannot start (the module does not load, or exports no such worker) throws
// outside any fiber: the node sees the thread's "error" event with this error, not a bare exit.
Effect.runFork(
  findWorker((workerData ?? JSON.parse(process.env[runnerDataEnv] ?? "null")) as RunnerData).pipe(
    Effect.flatMap((worker) => Layer.launch(serve(worker))),
    Effect.tapCause((cause) =>
      Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.sync(() =>
        setTimeout(() => {
          throw Cause.squash(cause)
        }, 0)
      )
    )
  )
)
