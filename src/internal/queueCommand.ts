/**
 * A queue command given from outside any node (`Cluster`, the CLI): the
 * queue's name (and the node's, when it names one) checked, then stored and
 * signalled by `commandQueue` in the configured prefix. Returns what it did,
 * the pause kept for the queue included, which the CLI reports and `Cluster`
 * leaves out.
 */
import * as Effect from "effect/Effect"
import { InvalidConfigError } from "../Errors.ts"
import { withPrefix } from "./notMigrated.ts"
import { checkNodeName, checkQueueName } from "./queueName.ts"
import { isValidLimit } from "./runtime.ts"
import { commandQueue, type QueueCommand } from "./sql/cluster.ts"

const checkLimit = (command: QueueCommand): Effect.Effect<void, InvalidConfigError> =>
  command.action !== "scale" || isValidLimit(command.limit)
    ? Effect.void
    : Effect.fail(
      new InvalidConfigError({ field: "limit", message: `limit must be an integer from 1 to 10000, got ${command.limit}` })
    )

export const runQueueCommand = (command: QueueCommand, node: string | undefined) =>
  Effect.flatMap(
    Effect.andThen(
      Effect.andThen(checkQueueName("queue", command.queue), checkLimit(command)),
      node === undefined ? Effect.void : checkNodeName(node)
    ),
    () => withPrefix((sql, prefix) => commandQueue(sql, prefix, command, node))
  )
