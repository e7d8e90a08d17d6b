/**
 * The entry point of a worker thread (or child process): serves `Perform`
 * over `NodeWorkerRunner` until the node closes it. Each worker module is
 * imported on its first job and kept; the worker is the module's export
 * whose `name` is the job's worker.
 */
// First, so that a child process ignores stop signals before it spends its start-up loading Effect.
import "./stopSignals.ts"
import * as NodeWorkerRunner from "@effect/platform-node/NodeWorkerRunner"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import { markRunner } from "./modules.ts"
import { lowerThisThread } from "./priority.ts"
import { ThreadRpcs, type ThreadWorker, toJob, toPerformError } from "./protocol.ts"

const isWorker = (value: unknown, name: string): value is ThreadWorker =>
  typeof value === "object" && value !== null && (value as { name?: unknown }).name === name &&
  typeof (value as { perform?: unknown }).perform === "function"

/** Imported modules by URL; a module that fails to import fails every job that names it. */
const modules = new Map<string, Promise<Record<string, unknown>>>()

/** The worker, and its decoder and encoder, by module and name. */
const workers = new Map<string, {
  readonly worker: ThreadWorker
  readonly decode: (args: unknown) => Effect.Effect<unknown, Schema.SchemaError>
  readonly encode: ((value: unknown) => Effect.Effect<Schema.Json, Schema.SchemaError>) | undefined
  readonly encodeError: ((error: unknown) => Schema.Json | undefined) | undefined
}>()

const findWorker = (module: string, name: string) =>
  Effect.suspend(() => {
    const key = `${name} ${module}`
    const known = workers.get(key)
    if (known !== undefined) return Effect.succeed(known)
    let imported = modules.get(module)
    if (imported === undefined) {
      imported = import(module) as Promise<Record<string, unknown>>
      modules.set(module, imported)
    }
    return Effect.flatMap(
      Effect.tryPromise({
        try: () => imported,
        catch: (cause) => new Error(`the worker thread could not import ${module}: ${String(cause)}`)
      }),
      (exports) => {
        const worker = Object.values(exports).find((value) => isWorker(value, name))
        if (worker === undefined) return Effect.fail(new Error(`${module} exports no worker named "${name}"`))
        const entry = {
          worker,
          decode: Schema.decodeUnknownEffect(worker.argsJson),
          encode: worker.resultJson === undefined ? undefined : Schema.encodeUnknownEffect(worker.resultJson),
          encodeError: worker.errorsJson === undefined ? undefined : encodeOrUndefined(worker.errorsJson)
        }
        workers.set(key, entry)
        return Effect.succeed(entry)
      }
    )
  })

/** An error the worker's `errors` schema does not encode crosses without its encoding. */
const encodeOrUndefined = (schema: Schema.Codec<any, Schema.Json>) => {
  const encode = Schema.encodeUnknownExit(schema)
  return (error: unknown): Schema.Json | undefined => {
    const exit = encode(error)
    return Exit.isSuccess(exit) ? exit.value : undefined
  }
}

const handlers = ThreadRpcs.toLayer({
  Perform: ({ args, job, module }) =>
    Effect.gen(function*() {
      // Not the worker's failures: a module that does not load, args that do not decode, a
      // result that does not encode are defects of the attempt.
      const { decode, encode, encodeError, worker } = yield* Effect.orDie(findWorker(module, job.worker))
      const decoded = yield* Effect.orDie(decode(args))
      const value = yield* Effect.mapError(worker.perform(toJob(job, decoded)), (error) => toPerformError(error, encodeError))
      return encode === undefined ? null : yield* Effect.orDie(encode(value))
    }).pipe(Effect.annotateLogs({ jobId: job.id, worker: job.worker, queue: job.queue, attempt: job.attempt }))
})

markRunner()
lowerThisThread()

Effect.runFork(
  Layer.launch(
    RpcServer.layer(ThreadRpcs).pipe(
      Layer.provide(handlers),
      Layer.provide(RpcServer.layerProtocolWorkerRunner),
      Layer.provide(NodeWorkerRunner.layer)
    )
  ).pipe(
    // A runner that cannot start throws outside any fiber, so that the node sees the thread's
    // "error" event with this error rather than a bare exit.
    Effect.tapCause((cause) =>
      Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.sync(() =>
        setTimeout(() => {
          throw Cause.squash(cause)
        }, 0)
      )
    )
  )
)
