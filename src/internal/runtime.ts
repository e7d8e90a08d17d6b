/**
 * Assembles a node: notifier, executor, one producer per queue, stager, and
 * the fiber that routes notifications to them. Everything is acquired in the
 * caller's scope in that order, so closing it releases in reverse: the stager
 * and producers stop first, running jobs get their grace period, acks are
 * flushed, and the LISTEN connection closes last.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, PubSub, type Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { channel } from "../Config.ts"
import { InvalidConfigError, type InvalidPrefixError, UnknownQueueError } from "../Errors.ts"
import * as Executor from "../Executor.ts"
import * as Notifier from "../Notifier.ts"
import * as Producer from "../Producer.ts"
import * as Stager from "../Stager.ts"
import type * as Worker from "../Worker.ts"
import { resolve, type RuntimeOptions } from "./runtimeConfig.ts"

/** Where a queue command applies: this node only, or every node of the prefix. */
export type QueueScope = "node" | "all"

export type QueueCommand =
  | { readonly action: "pause"; readonly queue: string }
  | { readonly action: "resume"; readonly queue: string }
  | { readonly action: "scale"; readonly queue: string; readonly limit: number }

export interface Runtime {
  readonly prefix: string
  readonly node: string
  readonly maxArgsBytes: number
  readonly cancelLocal: (jobId: number) => Effect.Effect<void>
  readonly control: (
    command: QueueCommand,
    scope: QueueScope
  ) => Effect.Effect<void, SqlError | UnknownQueueError>
  readonly checkQueue: (queue: string) => Effect.Effect<Producer.QueueState, UnknownQueueError>
}

export const isValidLimit = (limit: number) => Number.isInteger(limit) && limit >= 1 && limit <= 10_000

export const makeRuntime = <R>(
  options: RuntimeOptions & { readonly workers: ReadonlyArray<Worker.Any> }
): Effect.Effect<
  Runtime,
  InvalidConfigError | InvalidPrefixError,
  PgClient.PgClient | SqlClient | R | Scope.Scope
> =>
  Effect.gen(function*() {
    const config = yield* resolve(options)
    const sql = yield* SqlClient
    const context = yield* Effect.context<R>()
    const names = new Set<string>()
    for (const worker of options.workers) {
      if (names.has(worker.name)) {
        return yield* new InvalidConfigError({ field: "workers", message: `two workers are named "${worker.name}"` })
      }
      names.add(worker.name)
    }

    const notifier = yield* Notifier.make({ prefix: config.prefix, node: config.node })
    const executor = yield* Executor.make<R>({
      sql,
      prefix: config.prefix,
      node: config.node,
      workers: options.workers as unknown as ReadonlyArray<Executor.RunnableWorker<R>>,
      shutdownGracePeriod: config.shutdownGracePeriod,
      context: context as Context.Context<R>
    })

    const producers = new Map<string, Producer.Producer>()

    const apply = (command: QueueCommand): Effect.Effect<void> => {
      const producer = producers.get(command.queue)
      if (producer === undefined) return Effect.void
      switch (command.action) {
        case "pause":
          return producer.pause
        case "resume":
          return producer.resume
        case "scale":
          return isValidLimit(command.limit) ? producer.scale(command.limit) : Effect.void
      }
    }

    const route = (notification: Notifier.Notification): Effect.Effect<void> => {
      const payload = notification.payload
      if (notification.channel === "insert") {
        return typeof payload["queue"] === "string" ? producers.get(payload["queue"])?.wake ?? Effect.void : Effect.void
      }
      if (notification.channel !== "signal") return Effect.void
      if (payload["node"] !== undefined && payload["node"] !== config.node) return Effect.void
      const action = payload["action"]
      if (action === "cancel" && typeof payload["job_id"] === "number") {
        return Effect.asVoid(executor.cancel(payload["job_id"]))
      }
      if ((action === "pause" || action === "resume") && typeof payload["queue"] === "string") {
        return apply({ action, queue: payload["queue"] })
      }
      if (action === "scale" && typeof payload["queue"] === "string" && typeof payload["limit"] === "number") {
        return apply({ action, queue: payload["queue"], limit: payload["limit"] })
      }
      return Effect.void
    }

    const subscription = yield* notifier.subscribe
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(PubSub.take(subscription), route)))

    for (const queue of config.queues) {
      producers.set(
        queue.name,
        yield* Producer.make({
          sql,
          prefix: config.prefix,
          node: config.node,
          queue: queue.name,
          limit: queue.limit,
          paused: queue.paused,
          pollInterval: config.pollInterval,
          executor
        })
      )
    }

    yield* Effect.forkScoped(Stager.loop({
      sql,
      prefix: config.prefix,
      interval: config.stageInterval,
      onStaged: (queue) => producers.get(queue)?.wake ?? Effect.void
    }))

    yield* Effect.logInfo(
      `node ${config.node} running queues ${config.queues.map((q) => `${q.name}(${q.limit})`).join(", ") || "(none)"}`
    )

    const runtime: Runtime = {
      prefix: config.prefix,
      node: config.node,
      maxArgsBytes: config.maxArgsBytes,
      cancelLocal: (jobId) => Effect.asVoid(executor.cancel(jobId)),
      control: (command, scope) =>
        Effect.gen(function*() {
          if (scope === "node") {
            if (!producers.has(command.queue)) {
              return yield* new UnknownQueueError({ queue: command.queue, node: config.node })
            }
            return yield* apply(command)
          }
          yield* apply(command)
          yield* sql`SELECT pg_notify(${channel(config.prefix, "signal")}, ${JSON.stringify(command)})`
        }),
      checkQueue: (queue) => {
        const producer = producers.get(queue)
        return producer === undefined ? Effect.fail(new UnknownQueueError({ queue, node: config.node })) : producer.check
      }
    }
    return runtime
  }).pipe(Effect.annotateLogs({ package: "effect-oban" }))
