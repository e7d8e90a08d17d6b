/**
 * A queue command given from outside any node (`Cluster`, the CLI): the
 * queue's name (and the node's, when it names one) checked, then stored and
 * signalled by `commandQueue` in the configured prefix. Returns what it did,
 * the pause kept for the queue included, which the CLI reports and `Cluster`
 * leaves out.
 */
import * as Effect from "effect/Effect"
import { withPrefix } from "./notMigrated.ts"
import { checkNodeName, checkQueueName } from "./queueName.ts"
import { checkLimit } from "./runtime.ts"
import { commandQueue, type QueueCommand } from "./sql/cluster.ts"

export const runQueueCommand = (command: QueueCommand, node: string | undefined) =>
  Effect.flatMap(
    Effect.andThen(
      Effect.andThen(checkQueueName("queue", command.queue), command.action === "scale" ? checkLimit(command.limit) : Effect.void),
      node === undefined ? Effect.void : checkNodeName(node)
    ),
    () => withPrefix((sql, prefix) => commandQueue(sql, prefix, command, node))
  )
