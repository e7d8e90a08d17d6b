/**
 * The services of a thread worker (`threads.layer`): built where `perform`
 * runs, once per thread (or child process) on the first job that needs them,
 * and kept for its life, so a database pool or an HTTP client in the layer
 * serves every job the thread runs. Workers whose modules share one layer
 * value share one build. A build that fails fails that attempt as a defect
 * and is tried again by the next one.
 *
 * Nothing closes the scope the services live in: a thread is terminated
 * (by a timeout, a cancel, or the node's shutdown) rather than stopped, so
 * their finalizers would not run anyway; the OS closes their sockets.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"

/** The scope every thread worker's services live in, in this thread. */
const scope = Scope.makeUnsafe()

/** Each layer's build, by layer: done, or in progress for the jobs that wait for it. */
const builds = new Map<Layer.Layer<never, unknown, never>, Deferred.Deferred<Context.Context<never>, Error>>()

/** The services of `layer` in this thread, built on the first call. Fails with what to record when the build fails. */
const servicesOf = (worker: string, layer: Layer.Layer<never, unknown, never>): Effect.Effect<Context.Context<never>, Error> =>
  Effect.suspend(() => {
    const known = builds.get(layer)
    if (known !== undefined) return Deferred.await(known)
    const deferred = Deferred.makeUnsafe<Context.Context<never>, Error>()
    builds.set(layer, deferred)
    return Layer.buildWithScope(layer, scope).pipe(
      Effect.mapError((error) =>
        new Error(`the services of worker "${worker}" (its threads.layer) could not be built: ${Cause.pretty(Cause.fail(error))}`)
      ),
      Effect.onExit((exit) => {
        // A failed (or interrupted) build is not kept: the next attempt builds again.
        if (Exit.isFailure(exit)) builds.delete(layer)
        return Deferred.done(deferred, exit)
      })
    )
  })

/**
 * `perform` with the services of `layer` added to its context, built in the
 * thread that runs it. A build that fails is a defect of the attempt.
 */
export const withThreadServices = <J, A, E, R>(
  worker: string,
  perform: (job: J) => Effect.Effect<A, E, R>,
  layer: Layer.Layer<R, unknown, never>
): (job: J) => Effect.Effect<A, E> =>
(job) =>
  Effect.flatMap(
    Effect.orDie(servicesOf(worker, layer as Layer.Layer<never, unknown, never>)),
    (services) =>
      Effect.updateContext(
        perform(job),
        (context: Context.Context<never>) => Context.merge(context, services) as Context.Context<R>
      )
  )
