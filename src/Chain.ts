/**
 * Chains: jobs sharing a chain key run strictly one after another, in the
 * order they were inserted, across the cluster (an ordered queue per
 * entity). Each job waits, `suspended`, for the one inserted before it to
 * finish, and is released in the transaction that finishes it.
 *
 * Inserts into one chain are serialised in the database (a transaction
 * advisory lock on the key), so jobs inserted from many processes at once
 * still form one line in insertion order; different keys do not wait for
 * each other and run in parallel. A chain is a workflow with the id
 * `chain:<key>` whose steps are numbered `1`, `2`, ...
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import { type InvalidJobError, InvalidWorkflowError, type MigrationError } from "./Errors.ts"
import type { Inserted } from "./Oban.ts"
import type { JobRequest } from "./Worker.ts"
import type * as Workflow from "./Workflow.ts"
import { textProblem } from "./internal/jsonText.ts"
import { orNotMigrated } from "./internal/notMigrated.ts"
import { chainTail, lockChain } from "./internal/sql/workflows.ts"
import { callerTraceparent, hasTracingBackend, withInsertSpan } from "./internal/telemetry.ts"
import { insertWorkflow } from "./internal/workflowInsert.ts"
import { unknownKey } from "./internal/optionKeys.ts"
import { transaction } from "./internal/sql/transaction.ts"

/**
 * What a job does when the job before it in the chain is discarded or
 * cancelled: `"run"` (default: the chain goes on), `"wait"` (the chain
 * stops until that job is retried and completes), or `"cancel"` (the rest
 * of the chain inserted so far is cancelled).
 *
 * @since 0.1.0
 */
export type OnFailure = Workflow.OnFailure

/**
 * The workflow id of a chain.
 *
 * @since 0.1.0
 */
export const workflowId = (key: string): string => `chain:${key}`

/**
 * Appends jobs to the chain `key`, in order, in the caller's transaction
 * when there is one (the chain's lock is then held until it ends). Returns
 * the jobs: the first is `available` when the chain was empty or its last
 * job has completed, or ended discarded or cancelled under `onFailure`
 * `"run"` (the default) or `"cancel"` (which starts the chain afresh), and
 * `suspended` while the last job has not finished or, under `"wait"`, failed;
 * the others `suspended`.
 *
 * @since 0.1.0
 */
export const insert = (
  key: string,
  requests: ReadonlyArray<JobRequest>,
  options: { readonly onFailure?: OnFailure | undefined } = {}
): Effect.Effect<ReadonlyArray<Inserted>, InvalidWorkflowError | InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    if (typeof key !== "string" || key.length === 0 || key.length > 200) {
      return yield* new InvalidWorkflowError({ workflowId: String(key), message: "a chain key is 1 to 200 characters" })
    }
    const keyProblem = textProblem(key)
    if (keyProblem !== undefined) {
      return yield* new InvalidWorkflowError({ workflowId: key, message: `the chain key ${keyProblem}` })
    }
    // An option read from JavaScript or JSON that `insert` does not know (`onFailur`) would be ignored.
    const unknown = unknownKey(options, ["onFailure"], "the chain's options")
    if (unknown !== undefined) return yield* new InvalidWorkflowError({ workflowId: workflowId(key), message: unknown.message })
    const onFailure = options.onFailure ?? "run"
    // Checked here, not only as a dependency of a job already in the chain (an empty chain has none).
    if (onFailure !== "cancel" && onFailure !== "run" && onFailure !== "wait") {
      return yield* new InvalidWorkflowError({
        workflowId: workflowId(key),
        message: `onFailure must be "cancel", "run" or "wait", got ${JSON.stringify(onFailure)}`
      })
    }
    if (requests.length === 0) return []
    const sql = plain(yield* SqlClient)
    const { prefix } = yield* Settings
    const id = workflowId(key)
    // Without a tracing backend the jobs carry the caller's span, not the span of the transaction below.
    const traced = yield* Effect.withFiber((fiber) =>
      Effect.succeed(hasTracingBackend(fiber) ? undefined : { traceparent: callerTraceparent(fiber) })
    )
    return yield* transaction(sql, Effect.gen(function*() {
      yield* orNotMigrated(prefix)(lockChain(sql, prefix, id))
      let found = yield* chainTail(sql, prefix, id)
      while (found === "gone") found = yield* chainTail(sql, prefix, id)
      const first = found === undefined ? 1 : Number(found.step) + 1
      // Under "cancel", a failure cancels the jobs inserted so far: a job inserted after it starts afresh.
      const failed = found !== undefined && (found.state === "discarded" || found.state === "cancelled")
      const tail = found === undefined || (failed && onFailure === "cancel") ? undefined : found.step
      // The new jobs only (their deps on earlier ones are external), in order. Built as one array: adding
      // them one by one to a `Workflow` copies its steps each time, which took seconds for 20,000 jobs in
      // this transaction, and the server ends a transaction of ours idle for 10 s.
      const steps = requests.map((request, index): Workflow.Step => {
        const previous = index === 0 ? tail : String(first + index - 1)
        return { name: String(first + index), request, deps: previous === undefined ? [] : [{ step: previous, onFailure }] }
      })
      // Announced inside this transaction, after its COMMIT (see `insertWorkflow`).
      return yield* insertWorkflow(id, steps, { traced })
    }))
  }).pipe(withInsertSpan("oban.chain.insert", { attributes: { "oban.chain.key": key } }))
