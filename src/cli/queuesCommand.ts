/**
 * `effect-oban queues status|pause|resume|scale`: queue counts and the
 * producers that run them, and queue commands for one node or all.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Argument, Command, Flag } from "effect/cli"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../Cluster.ts"
import * as Jobs from "../Jobs.ts"
import { noJobs } from "../internal/counts.ts"
import { pausedSummary } from "../internal/pausedSummary.ts"
import { runQueueCommand } from "../internal/queueCommand.ts"
import { limitsText, unlimited } from "../internal/queueLimits.ts"
import { queueSummaries } from "../internal/queueSummaries.ts"
import { plain } from "../internal/sql/plain.ts"
import { allQueueLimits } from "../internal/sql/queues.ts"
import type { CommandResult } from "../internal/sql/cluster.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { print, table } from "./output.ts"
import { root, withDatabase } from "./shared.ts"

const status = Command.make("status", {
  queue: Argument.String("queue").pipe(Argument.withDescription("Only this queue"), Argument.optional)
}, ({ queue }) =>
  Effect.gen(function*() {
    const globals = yield* root
    const [view, counts, limits] = yield* withDatabase(
      globals,
      Effect.all([Cluster.view, Jobs.counts(), Effect.flatMap(SqlClient, (sql) => allQueueLimits(plain(sql), globals.prefix))])
    )
    const all = queueSummaries(view, counts.queues)
    const wanted = Option.match(queue, { onNone: () => all, onSome: (name) => all.filter((entry) => entry.queue === name) })
    if (Option.isSome(queue) && wanted.length === 0) {
      return yield* Effect.fail(
        new CliFailure(ExitCode.notFound, `queue "${queue.value}" has no jobs and no running node`, "QueueNotFound")
      )
    }
    const queues = wanted.map((entry) => ({
      queue: entry.queue,
      producers: entry.producers,
      // Every state, 0 included, as the table shows: a queue without jobs has no entry in the counts.
      counts: entry.states ?? noJobs(),
      /** When it was paused for every node, a pause kept for nodes that start later; null when it is not. */
      pausedSince: entry.pausedSince ?? null,
      /** Its cluster-wide limits (global, partition, rate; see docs/limits.md); null when it has none. */
      clusterLimits: limits.get(entry.queue) ?? null
    }))
    yield* print(globals.json, { queues, estimated: counts.estimated }, () => {
      const rows = wanted.map(({ limit, pausedSince, producers, queue, running, states }) => {
        const state = (name: string) => (states as Record<string, number> | undefined)?.[name] ?? 0
        return [
          queue,
          producers.length,
          limit,
          limitsText(limits.get(queue) ?? unlimited),
          running,
          pausedSummary(producers, pausedSince !== undefined),
          state("available"), state("scheduled"), state("executing"), state("retryable"),
          state("completed"), state("discarded"), state("cancelled")
        ]
      })
      const note = counts.estimated.length > 0 ? `\n\n(estimated: ${counts.estimated.join(", ")})` : ""
      return table([
        "QUEUE", "NODES", "LIMIT", "CLUSTER LIMITS", "RUNNING", "PAUSED", "AVAILABLE", "SCHEDULED", "EXECUTING", "RETRYABLE",
        "COMPLETED", "DISCARDED", "CANCELLED"
      ], rows) + note
    })
  })).pipe(Command.withDescription("Jobs per state, the producers (limit, running, paused) and the cluster-wide limits of every queue"))

const nodeFlag = Flag.String("node").pipe(Flag.withDescription("Only on this node (default: every node)"), Flag.optional)
const queueArgument = Argument.String("queue")

/** What a pause or resume left of the pause kept for the queue (for nodes that start later), in words. */
const keptNote = (action: "pause" | "resume", queue: string, node: Option.Option<string>, result: CommandResult): string =>
  !result.keptPause
    ? result.keptChanged ? "; the pause kept for nodes that start later is cleared" : ""
    : action === "pause" && Option.isNone(node)
    ? "; nodes that start it later start it paused"
    : `; it stays paused for nodes that start later (kept): \`queues resume ${queue}\` clears that`

const report = (
  verb: string,
  queue: string,
  node: Option.Option<string>,
  json: boolean,
  command: CommandResult,
  pause?: { readonly action: "pause" | "resume"; readonly result: CommandResult }
) => {
  const producers = command.producers
  // The rows a node judged dead left (cut off, or crashed) keep a command for it: it applies when the node is
  // back, or restarts under its name, within rescuer.forgetAfter. That did something too.
  const away = command.deadProducers > 0 && Option.isSome(node)
  const none = `no running node${Option.isSome(node) ? ` named "${node.value}"` : ""} has queue "${queue}"` + (away
    ? "; the rows its last run left keep the command, for when it is back or restarts under its name within " +
      "rescuer.forgetAfter"
    : "")
  // A pause for every node is kept for the queue even when no node runs it, and a resume may clear it: each did something.
  const keptOnly = away ||
    Option.isNone(node) && pause !== undefined && (pause.action === "pause" || pause.result.keptChanged)
  if (producers === 0 && !keptOnly) return Effect.fail(new CliFailure(ExitCode.notFound, none, "QueueNotFound"))
  const note = pause === undefined ? "" : keptNote(pause.action, queue, node, pause.result)
  return print(
    json,
    {
      queue,
      node: Option.getOrNull(node),
      producers,
      deadProducers: command.deadProducers,
      ...(pause === undefined ? {} : { keptPause: pause.result.keptPause })
    },
    () =>
      producers === 0
        ? `${verb} queue ${queue}: ${none}${note}`
        : `${verb} queue ${queue} on ${producers} producer${producers === 1 ? "" : "s"}${note}`
  )
}

const command = (name: "pause" | "resume", verb: string, description: string) =>
  Command.make(name, { queue: queueArgument, node: nodeFlag }, ({ node, queue }) =>
    Effect.gen(function*() {
      const globals = yield* root
      const result = yield* withDatabase(globals, runQueueCommand({ action: name, queue }, Option.getOrUndefined(node)))
      yield* report(verb, queue, node, globals.json, result, { action: name, result })
    })).pipe(Command.withDescription(description))

const scale = Command.make("scale", {
  queue: queueArgument,
  limit: Argument.Int("limit").pipe(Argument.withDescription("Jobs of the queue each node runs at once, 1 to 10000")),
  node: nodeFlag
}, ({ limit, node, queue }) =>
  Effect.gen(function*() {
    const globals = yield* root
    const result = yield* withDatabase(globals, runQueueCommand({ action: "scale", queue, limit }, Option.getOrUndefined(node)))
    yield* report(`scaled to ${limit}:`, queue, node, globals.json, result)
  })).pipe(Command.withDescription("Set how many jobs of a queue run at once, on every node or one"))

/** `effect-oban queues ...` */
export const queues = Command.make("queues").pipe(
  Command.withDescription("Queue status, and pause / resume / scale on every node or one"),
  Command.withSubcommands([
    status,
    command("pause", "paused", "Stop fetching jobs of a queue (running jobs finish), on every node (and nodes that start later) or one"),
    command("resume", "resumed", "Resume a paused queue, on every node or one"),
    scale
  ])
)
