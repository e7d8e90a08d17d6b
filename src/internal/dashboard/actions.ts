/**
 * The dashboard's actions, each in two steps: a POST without `confirmed`
 * answers with a page saying what will happen (for a bulk action, how many
 * jobs match now); the confirmation posts the same fields with
 * `confirmed=yes` and runs the action through `Jobs` or `Cluster`, then
 * shows what changed. The caller has checked access and the CSRF token.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "../sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import * as Cluster from "../../Cluster.ts"
import { Settings } from "../../Config.ts"
import { type InvalidConfigError, InvalidFilterError, type MigrationError } from "../../Errors.ts"
import * as Jobs from "../../Jobs.ts"
import { getJob } from "../../Oban.ts"
import { matchesEveryJob, validateFilter } from "../jobFilter.ts"
import { orNotMigrated } from "../notMigrated.ts"
import { countMatching } from "../sql/matchingJobs.ts"
import {
  decodeJobId,
  decodeQueueForm,
  JobAction,
  parseListQuery,
  QueueAction,
  QueueName,
  toFilter
} from "./forms.ts"
import { html } from "./html.ts"
import type { PageContext } from "./layout.ts"
import { confirmPage } from "./messagePages.ts"

/** What an action answers: a page to show, or a result (shown as a page or as JSON). */
export type Outcome =
  | { readonly _tag: "Confirm"; readonly page: ReturnType<typeof confirmPage>; readonly message: string }
  | {
    readonly _tag: "Done"
    readonly title: string
    readonly message: string
    readonly changed: number
    readonly skipped?: number | undefined
    readonly back: string
  }
  | { readonly _tag: "NotFound"; readonly message: string }

type Failure = InvalidFilterError | InvalidConfigError | MigrationError | SqlError

const invalid = (field: string) => (error: { readonly message: string }) => new InvalidFilterError({ field, message: error.message })

const verbs = {
  retry: ["Retry", "retried"],
  cancel: ["Cancel", "cancelled"],
  delete: ["Delete", "deleted"]
} as const

const runBulk = (action: JobAction, filter: Jobs.Filter) =>
  action === "retry" ? Jobs.retry(filter) : action === "cancel" ? Jobs.cancel(filter) : Jobs.remove(filter)

const plural = (n: number, word: string) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`

export const jobAction = (
  context: PageContext,
  rawId: string,
  rawAction: string,
  form: URLSearchParams
): Effect.Effect<Outcome, Failure, SqlClient> =>
  Effect.gen(function*() {
    const id = yield* decodeJobId(rawId)
    const action = yield* Schema.decodeUnknownEffect(JobAction)(rawAction).pipe(Effect.mapError(invalid("action")))
    const [verb, done] = verbs[action]
    const back = `${context.base}/jobs/${id}`
    const found = yield* getJob(id)
    if (Option.isNone(found)) return { _tag: "NotFound", message: `job ${id} does not exist` } as const
    const job = found.value
    if (form.get("confirmed") !== "yes") {
      const message = `${verb} job ${id} (${job.worker}, ${job.state})?`
      return {
        _tag: "Confirm",
        message,
        page: confirmPage(context, { title: `${verb} job ${id}`, question: message, action: `${back}/${action}`, fields: [], back })
      } as const
    }
    const result = yield* runBulk(action, { ids: [id] })
    // A running job is only asked to stop: its row finishes once it has.
    const requested = action === "cancel" && result.changed === 1 && job.state === "executing" &&
      Option.exists(yield* getJob(id), (now) => now.state === "executing" && now.cancelRequestedAt !== null)
    const message = requested
      ? `Job ${id}: cancel requested. It is running; it ends cancelled once its node has stopped it (until then it cannot be retried).`
      : result.changed === 1
      ? `Job ${id} ${done}.`
      : result.skipped.length > 0
      ? `Job ${id} was not ${done}: another job holds its unique key.`
      : `Job ${id} was not ${done}: it is ${job.state} (a job cannot be ${done} while ${
        action === "retry" ? "executing or available" : action === "cancel" ? "finished" : "executing"
      }).`
    return {
      _tag: "Done",
      title: `${verb} job ${id}`,
      message,
      changed: result.changed,
      skipped: result.skipped.length,
      back: action === "delete" && result.changed === 1 ? `${context.base}/jobs` : back
    } as const
  })

/** The most matching jobs the confirmation counts. */
export const confirmCountCap = 10_000

export const bulkAction = (
  context: PageContext,
  rawAction: string,
  form: URLSearchParams
): Effect.Effect<Outcome, Failure, SqlClient> =>
  Effect.gen(function*() {
    const action = yield* Schema.decodeUnknownEffect(JobAction)(rawAction).pipe(Effect.mapError(invalid("action")))
    const query = yield* parseListQuery(form)
    const filter = toFilter(query)
    if (matchesEveryJob(filter)) {
      return yield* new InvalidFilterError({ field: "filter", message: "a bulk action needs a filter (it would touch every job)" })
    }
    const [verb, done] = verbs[action]
    // Checked before anything reads it: JSON nested too deep would overflow the stack of JSON.stringify.
    const validated = yield* validateFilter(filter)
    const description = JSON.stringify(validated)
    const fields = Array.from(form.entries()).filter(([name]) => name !== "_csrf" && name !== "confirmed")
    const back = `${context.base}/jobs?${new URLSearchParams(fields)}`
    if (form.get("confirmed") !== "yes") {
      const sql = plain(yield* SqlClient)
      const { prefix } = yield* Settings
      const n = yield* orNotMigrated(prefix)(countMatching(sql, prefix, validated, confirmCountCap))
      const count = n > confirmCountCap ? `more than ${plural(confirmCountCap, "job")}` : plural(n, "job")
      const matchNow = n === 1 ? "matches now" : "match now"
      const message = `${verb} every job matching ${description}? ${count} ${matchNow}.`
      return {
        _tag: "Confirm",
        message,
        page: confirmPage(context, {
          title: `${verb} matching jobs`,
          question: html`${verb} every job matching <code>${description}</code>? <strong id="matching">${count}</strong> ${matchNow}.`,
          action: `${context.base}/bulk/${action}`,
          fields,
          back
        })
      } as const
    }
    const result = yield* runBulk(action, filter)
    const skipped = result.skipped.length > 0 ? ` (${plural(result.skipped.length, "job")} skipped: another job holds the unique key)` : ""
    return {
      _tag: "Done",
      title: `${verb} matching jobs`,
      message: `${plural(result.changed, "job")} ${done}${skipped}.${
        result.requested === 0 ? "" : result.requested === 1
          ? " 1 of them is running: it stays executing until its node has stopped it."
          : ` ${result.requested.toLocaleString("en-US")} of them are running: they stay executing until their nodes have stopped them.`
      }`,
      changed: result.changed,
      skipped: result.skipped.length,
      back
    } as const
  })

export const queueAction = (
  context: PageContext,
  rawQueue: string,
  rawAction: string,
  form: URLSearchParams
): Effect.Effect<Outcome, Failure, SqlClient> =>
  Effect.gen(function*() {
    const queue = yield* Schema.decodeUnknownEffect(QueueName)(rawQueue).pipe(Effect.mapError(invalid("queue")))
    const action = yield* Schema.decodeUnknownEffect(QueueAction)(rawAction).pipe(Effect.mapError(invalid("action")))
    const { limit, node } = yield* decodeQueueForm(form)
    if (action === "scale" && limit === undefined) {
      return yield* new InvalidFilterError({ field: "limit", message: "scale needs a limit from 1 to 10000" })
    }
    // A pause for every node is kept for the queue (migration 20): say so before it is confirmed.
    const where = node === undefined ? action === "pause" ? "every node, and on nodes that start later" : "every node" : `node ${node}`
    const what = action === "scale" ? `Scale queue ${queue} to ${limit} on ${where}` : `${action === "pause" ? "Pause" : "Resume"} queue ${queue} on ${where}`
    const back = `${context.base}/`
    if (form.get("confirmed") !== "yes") {
      const fields = Array.from(form.entries()).filter(([name]) => name !== "_csrf" && name !== "confirmed")
      return {
        _tag: "Confirm",
        message: `${what}?`,
        page: confirmPage(context, {
          title: what,
          question: `${what}?`,
          action: `${context.base}/queues/${encodeURIComponent(queue)}/${action}`,
          fields,
          back
        })
      } as const
    }
    const options = { node }
    const told = action === "pause"
      ? yield* Cluster.pauseQueue(queue, options)
      : action === "resume"
      ? yield* Cluster.resumeQueue(queue, options)
      : yield* Cluster.scaleQueue(queue, limit!, options)
    return {
      _tag: "Done",
      title: what,
      message: told === 0
        ? `No running node has queue ${queue}: nothing was told.`
        : `${what}: ${plural(told, "producer")} told; nodes apply it at once (or at their next heartbeat).`,
      changed: told,
      back
    } as const
  })
