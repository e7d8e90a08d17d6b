/**
 * The entry point of a worker thread (or child process): serves `Perform`
 * and `Events` over `NodeWorkerRunner` until the node closes it. Each worker
 * module is imported on its first job and kept; the worker is the module's
 * export whose `name` is the job's worker. The thread's logger and tracer
 * are a `Recorder`'s, which sends the logs and spans of each attempt on the
 * `Events` stream, to be replayed on the node.
 */
// First, so that a child process ignores stop signals before it spends its start-up loading Effect.
import "./stopSignals.ts"
import * as NodeWorkerRunner from "@effect/platform-node/NodeWorkerRunner"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import type { RequestId } from "effect/rpc/RpcMessage"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { resultMismatchMessage } from "../resultMismatch.ts"
import { markRunner } from "./modules.ts"
import { lowerThisThread } from "./priority.ts"
import { type ParentSpan, type ThreadJob, ThreadFailure, ThreadRpcs, type ThreadWorker, toJob, toPerformError } from "./protocol.ts"
import * as Recorder from "./recorder.ts"

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

/** The exports of `module`, imported once per thread. */
const importOnce = (module: string): Promise<Record<string, unknown>> => {
  let imported = modules.get(module)
  if (imported === undefined) {
    imported = import(module) as Promise<Record<string, unknown>>
    modules.set(module, imported)
  }
  return imported
}

const findWorker = (module: string, name: string) =>
  Effect.suspend(() => {
    const key = `${name} ${module}`
    const known = workers.get(key)
    if (known !== undefined) return Effect.succeed(known)
    const imported = importOnce(module)
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

const recorder = Recorder.make()

/**
 * The attempt's number (whose fibers the recorder records), the job's span
 * as the parent of the worker's, and the node's minimum log level, around an attempt.
 */
const inJobContext = (
  attempt: number,
  span: typeof ParentSpan.Type | undefined,
  minimumLogLevel: LogLevel.LogLevel | undefined
) =>
<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.updateContext(effect, (context: Context.Context<never>) => {
    let next = Context.add(context, Recorder.CurrentAttempt, attempt)
    if (span !== undefined) next = Context.add(next, Tracer.ParentSpan, Tracer.externalSpan(span))
    if (minimumLogLevel !== undefined) next = Context.add(next, References.MinimumLogLevel, minimumLogLevel)
    return next
  })

/** One attempt: the worker, its args decoded, its outcome as it crosses. */
const attemptOf = (args: Schema.Json, job: ThreadJob, module: string) =>
  Effect.gen(function*() {
    // Not the worker's failures: a module that does not load or args that do not decode are
    // defects of the attempt. A result that does not encode fails it as on the main thread.
    const { decode, encode, encodeError, worker } = yield* Effect.orDie(findWorker(module, job.worker))
    const decoded = yield* Effect.orDie(decode(args))
    const value = yield* Effect.mapError(worker.perform(toJob(job, decoded)), (error) => toPerformError(error, encodeError))
    if (encode === undefined) return null
    return yield* Effect.mapError(encode(value), (error) =>
      new ThreadFailure({
        message: resultMismatchMessage(Cause.fail(error)),
        invalidResult: true
      }))
  })

const handlers = ThreadRpcs.toLayer(Effect.gen(function*() {
  const protocol = yield* RpcServer.Protocol
  return {
    Perform: ({ args, job, minimumLogLevel, module, span }) =>
      Effect.suspend(() => attemptOf(args, job, module).pipe(
        inJobContext(recorder.begin(job.id), span, minimumLogLevel),
        // Sent before the outcome, on the same channel: the node has the events when the attempt ends.
        Effect.ensuring(Effect.sync(recorder.end))
      )),
    // Chunks go out through the protocol directly, synchronously (see recorder.ts); the stream
    // itself never ends, so the request stays open for the thread's life.
    Events: (_: void, { client, requestId }) =>
      Stream.unwrap(Effect.sync(() => {
        eventsRequest = requestId
        recorder.connect((values) =>
          Effect.runSync(protocol.send(client.id, { _tag: "Chunk", requestId, values }))
        )
        return Stream.never
      })).pipe(Stream.ensuring(Effect.sync(() => recorder.connect(undefined)))),
    // An import that fails is not this request's failure: the attempts of its workers report it.
    Preload: ({ modules }) =>
      Effect.forEach(modules, (module) => Effect.promise(() => importOnce(module).then(() => {}, () => {})), {
        discard: true
      })
  }
}))

/** The `Events` request, whose acks `acknowledgingProtocol` passes on to the recorder. */
let eventsRequest: RequestId | undefined

/**
 * The worker runner's protocol, which also tells the recorder of each `Ack`
 * of the `Events` stream as it arrives (the server itself only opens a latch
 * that nothing of ours waits on): the recorder counts the log lines the node
 * has not taken yet, to bound them (see recorder.ts).
 */
const acknowledgingProtocol = Effect.map(RpcServer.makeProtocolWorkerRunner, (protocol) =>
  RpcServer.Protocol.of({
    ...protocol,
    run: (handle) =>
      protocol.run((clientId, message) => {
        if (message._tag === "Ack" && message.requestId === eventsRequest) recorder.acknowledge()
        return handle(clientId, message)
      })
  }))

const ProtocolLive = Layer.effect(RpcServer.Protocol)(acknowledgingProtocol).pipe(Layer.provide(NodeWorkerRunner.layer))

const TelemetryLive = Layer.mergeAll(
  Logger.layer([recorder.logger]),
  Layer.succeed(Tracer.Tracer, recorder.tracer)
)

markRunner()
lowerThisThread()

Effect.runFork(
  Layer.launch(
    // A job's defect is that request's outcome (with its stack, see `Perform`), not a fatal
    // defect of the server, which would end every open request of the node, its Events too.
    RpcServer.layer(ThreadRpcs, { disableTracing: true, disableFatalDefects: true }).pipe(
      Layer.provide(handlers),
      Layer.provide(ProtocolLive),
      Layer.provide(TelemetryLive)
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
