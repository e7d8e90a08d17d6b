/**
 * A node's background loops: the stager, rescuer, pruner and cron (each
 * acting only while this node holds the lease it needs), its own reconciler,
 * and the available-jobs gauge. Forked in the node's scope.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import * as Cron from "../Cron.ts"
import type * as Executor from "../Executor.ts"
import type * as Producer from "../Producer.ts"
import * as Pruner from "../Pruner.ts"
import * as Rescuer from "../Rescuer.ts"
import * as Stager from "../Stager.ts"
import type { Leases } from "./leases.ts"
import type { Liveness } from "./liveness.ts"
import { periodic } from "./periodic.ts"
import * as Reconciler from "./reconciler.ts"
import type { ResolvedConfig } from "./runtimeConfig.ts"
import { countAvailable } from "./sql/jobs.ts"
import { setAvailable } from "./telemetry.ts"

export const startMaintenance = (options: {
  readonly sql: SqlClient
  readonly config: ResolvedConfig
  readonly leases: Leases
  readonly liveness: Liveness
  readonly producers: ReadonlyMap<string, Producer.Producer>
  readonly executor: Executor.ExecutorShape
  readonly crontab: ReadonlyArray<Cron.Parsed>
  /** Stops a job here that this node no longer answers for. */
  readonly stop: (jobId: number) => Effect.Effect<void>
}): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { config, crontab, executor, leases, liveness, producers, sql } = options
    const { leader } = leases
    const prefix = config.prefix
    const queueNames = config.queues.map((queue) => queue.name)
    const ownProducers = Array.from(producers.values(), (producer) => producer.id)

    yield* Effect.forkScoped(Stager.loop({
      sql,
      prefix,
      interval: config.stageInterval,
      onStaged: (queue) => producers.get(queue)?.wake ?? Effect.void,
      when: Effect.map(Effect.all([leader.isLeader, leader.leaderKnown]), ([leads, known]) => leads || !known)
    }))
    // Only after this node has itself been connected for rescueAfter: right after an outage (or a pause
    // of this process) every producer looks silent, and the live ones need a moment to beat again.
    const mayRescue = Effect.zipWith(
      leader.isLeader,
      liveness.connectedForMillis,
      (leads, connected) => leads && connected >= Duration.toMillis(config.rescuer.rescueAfter)
    )
    yield* Effect.forkScoped(periodic({
      name: "Rescuer",
      interval: config.rescuer.interval,
      // Never this node's own producers: after a stall of the process, their heartbeats are late too.
      // Asked again before each batch commits: the process may have paused since the check below.
      run: Rescuer.runOnce({ sql, prefix, ...config.rescuer, liveProducers: ownProducers, confirm: mayRescue }),
      when: mayRescue
    }))
    // Every node: its own claims that it no longer answers for (an outcome or a claim lost on the way).
    yield* Effect.forkScoped(periodic({
      name: "Reconciler",
      interval: config.rescuer.interval,
      run: Effect.suspend(() =>
        Reconciler.runOnce({
          sql,
          prefix,
          producers: Array.from(producers.values()),
          executor,
          rescueAfter: config.rescuer.rescueAfter,
          stop: options.stop
        })
      )
    }))
    if (config.pruner !== false) {
      yield* Effect.forkScoped(periodic({
        name: "Pruner",
        interval: config.pruner.interval,
        run: Pruner.runOnce({ sql, prefix, ...config.pruner }),
        when: leader.isLeader
      }))
    }
    // The available-jobs gauge, sampled for this node's queues.
    yield* Effect.forkScoped(periodic({
      name: "Sampler",
      interval: Duration.seconds(5),
      run: Effect.flatMap(
        countAvailable(sql, prefix, queueNames),
        (counts) => Effect.forEach(queueNames, (queue) => setAvailable(queue, counts.get(queue) ?? 0), { discard: true })
      )
    }))
    if (leases.cron !== undefined) {
      yield* Effect.forkScoped(Cron.loop({
        sql,
        prefix,
        entries: crontab,
        isLeader: leases.cron.isLeader,
        maxAge: config.pruner === false ? undefined : config.pruner.maxAge
      }))
    }
  })
