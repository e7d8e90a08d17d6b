/**
 * `effect-oban nodes` and `effect-oban cron`: the cluster view.
 */
import * as Effect from "effect/Effect"
import { Command } from "effect/cli"
import * as Cluster from "../Cluster.ts"
import { print, table } from "./output.ts"
import { root, withDatabase } from "./shared.ts"

const ago = (millis: number): string =>
  millis < 1000 ? `${millis} ms ago` : millis < 120_000 ? `${Math.round(millis / 1000)} s ago` : `${Math.round(millis / 60_000)} min ago`

/** `effect-oban nodes` */
export const nodes = Command.make("nodes", {}, () =>
  Effect.gen(function*() {
    const globals = yield* root
    const view = yield* withDatabase(globals, Cluster.view)
    yield* print(globals.json, { now: view.now, leader: view.leader, nodes: view.nodes }, () => {
      const rows = view.nodes.flatMap((node) =>
        node.producers.map((producer) => [
          node.node, producer.leader ? "yes" : "", producer.queue, producer.limit, producer.running,
          producer.paused ? "yes" : "no", `${ago(producer.silentForMillis)}${producer.late ? " (late)" : ""}`, producer.id
        ])
      )
      const leader = view.leader === undefined ? "leader: none" : `leader: ${view.leader.node} (since ${view.leader.since.toISOString()})`
      return `${leader}\n\n${table(["NODE", "LEADER", "QUEUE", "LIMIT", "RUNNING", "PAUSED", "LAST HEARTBEAT", "PRODUCER"], rows)}`
    })
  })).pipe(Command.withDescription("Running nodes, their queues (limit, running, paused, last heartbeat) and the leader"))

/** `effect-oban cron` */
export const cron = Command.make("cron", {}, () =>
  Effect.gen(function*() {
    const globals = yield* root
    const view = yield* withDatabase(globals, Cluster.view)
    yield* print(globals.json, { now: view.now, cronLeader: view.cronLeader, crons: view.crons }, () =>
      [
        table(
          ["NAME", "EXPRESSION", "TIMEZONE", "WORKER", "QUEUE", "NEXT RUN", "NODES"],
          view.crons.map((entry) => [
            entry.name, entry.expression, entry.timezone ?? "UTC", entry.worker, entry.queue,
            entry.nextRun ?? `(${entry.error ?? "none"})`, entry.nodes.join(", ")
          ])
        ),
        view.cronLeader === undefined ? "inserted by: no node (none holds the cron lease)" : `inserted by: ${view.cronLeader.node}`
      ].join("\n"))
  })).pipe(Command.withDescription("Crontab entries of the running nodes, with their next run"))
