/**
 * Thread workers with services (`threads.layer`), for
 * test/threadServices.test.ts. Each thread imports this module by URL, so
 * the counts below are per thread.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { type AddressInfo, createServer } from "node:net"
import { threadId } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

export const queue = "thread-services"

/** How often this thread built each layer (attempts, failed ones included). */
const builds = { greeter: 0, flaky: 0 }

class Greeter extends Context.Service<Greeter, { readonly greet: (name: string) => string; readonly build: number }>()(
  "test/Greeter"
) {}

const GreeterLive = Layer.effect(Greeter)(Effect.sync(() => {
  builds.greeter++
  return { greet: (name: string) => `hello ${name} from thread ${threadId}`, build: builds.greeter }
}))

const Report = Schema.Struct({ greeting: Schema.String, build: Schema.Int, builds: Schema.Int, threadId: Schema.Int })

/** Uses the greeter; says which build of it served the job. */
export const Greets = Worker.make("ThreadGreets", {
  args: Schema.Struct({ name: Schema.String }),
  result: Report,
  queue,
  threads: { module: import.meta.url, layer: GreeterLive },
  perform: (job) =>
    Effect.map(Effect.service(Greeter), (greeter) => ({
      greeting: greeter.greet(job.args.name),
      build: greeter.build,
      builds: builds.greeter,
      threadId
    }))
})

/** Another worker with the same layer value: it shares the thread's build. */
export const AlsoGreets = Worker.make("ThreadAlsoGreets", {
  args: Schema.Struct({ name: Schema.String }),
  result: Report,
  queue,
  threads: { module: import.meta.url, layer: GreeterLive },
  perform: (job) =>
    Effect.map(Effect.service(Greeter), (greeter) => ({
      greeting: greeter.greet(job.args.name).toUpperCase(),
      build: greeter.build,
      builds: builds.greeter,
      threadId
    }))
})

export class ConnectError extends Schema.TaggedError<ConnectError>()("ConnectError", { message: Schema.String }) {}

class Store extends Context.Service<Store, { readonly build: number }>()("test/Store") {}

/** Fails its first build in each thread, as a connection refused at start-up would. */
const FlakyStoreLive = Layer.effect(Store)(Effect.suspend(() => {
  builds.flaky++
  return builds.flaky === 1
    ? Effect.fail(new ConnectError({ message: "connection refused" }))
    : Effect.succeed({ build: builds.flaky })
}))

export const UsesFlakyStore = Worker.make("ThreadUsesFlakyStore", {
  args: Schema.Struct({}),
  result: Schema.Struct({ build: Schema.Int }),
  queue,
  threads: { module: import.meta.url, layer: FlakyStoreLive },
  perform: () => Effect.map(Effect.service(Store), (store) => ({ build: store.build }))
})

class Listening extends Context.Service<Listening, { readonly port: number }>()("test/Listening") {}

/**
 * Keeps a listening socket open in the thread, as a database pool would: a thread holding it never
 * exits when asked to.
 */
const ListeningLive = Layer.effect(Listening)(Effect.callback<{ readonly port: number }>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ port: (server.address() as AddressInfo).port })))
}))

export const HoldsSocket = Worker.make("ThreadHoldsSocket", {
  args: Schema.Struct({}),
  queue,
  threads: { module: import.meta.url, layer: ListeningLive },
  perform: () => Effect.asVoid(Effect.service(Listening))
})
