/**
 * A new thread's import of the node's thread-worker modules, before the pool
 * hands it out (see `Preload` in protocol.ts): so that a job's timeout, which
 * starts when it gets a thread, never pays for the import.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as RpcClient from "effect/rpc/RpcClient"
import type { RpcClientError } from "effect/rpc/RpcClientError"
import { realSleep } from "../statementTimeout.ts"
import type { ThreadRpcs } from "./protocol.ts"

/** How long a new thread may take to import the modules before it takes jobs anyway, by default. */
export const defaultPreloadMillis = 30_000

/**
 * Imports `modules` in the thread behind `client`. Returns the error of a
 * thread that stopped meanwhile (its first attempt fails with it, as a crash);
 * an import that has not ended after `millis` (a module waiting at its
 * top level) is left to go on, with a warning, so that a queue never waits for
 * a thread forever: the attempts' timeouts then include the rest of it. Timed
 * in real time: on a test's clock, the wait would never end, or end at once.
 */
export const preloadWorkers = (
  client: RpcClient.FromGroup<typeof ThreadRpcs, RpcClientError>,
  modules: ReadonlyArray<string>,
  what: "thread" | "process",
  millis: number = defaultPreloadMillis
): Effect.Effect<RpcClientError | undefined> =>
  modules.length === 0 ? Effect.succeed(undefined) : Effect.raceFirst(
    client.Preload({ modules }).pipe(
      Effect.as(Option.some<RpcClientError | undefined>(undefined)),
      Effect.catch((error) => Effect.succeed(Option.some(error)))
    ),
    Effect.as(realSleep(millis), Option.none<RpcClientError | undefined>())
  ).pipe(
    Effect.flatMap((done) =>
      Option.isSome(done) ? Effect.succeed(done.value) : Effect.as(
        Effect.logWarning(
          `a worker ${what} has not imported ${modules.join(", ")} after ${millis / 1000} s; ` +
            "it takes jobs now, and their timeouts include what is left of the import"
        ),
        undefined
      )
    )
  )
