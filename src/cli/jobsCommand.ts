/**
 * `effect-oban jobs list|show|retry|cancel|delete|reschedule|rescue`: the CLI face of `Jobs` (and of the rescuer).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as References from "effect/References"
import { SqlClient } from "effect/sql/SqlClient"
import { Argument, Command, Flag } from "effect/cli"
import type { Job } from "../Job.ts"
import * as Jobs from "../Jobs.ts"
import { bulk as runBulkAction } from "../internal/bulkAction.ts"
import { matchesEveryJob } from "../internal/jobFilter.ts"
import type { BulkAction } from "../internal/sql/bulkJobs.ts"
import { defaultRescueAfter } from "../internal/lateness.ts"
import { jobWithResult } from "../internal/recordedResult.ts"
import { rescueLine } from "../internal/rescueLine.ts"
import { rescueRun } from "../internal/rescueRun.ts"
import { type AnsweringNode, answeringNodes } from "../internal/sql/maintenance.ts"
import { plain } from "../internal/sql/plain.ts"
import * as Rescuer from "../Rescuer.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { cell, print, table } from "./output.ts"
import { filterFlags, type FilterInput, jobIdArgument, parseDate, root, toFilter, withDatabase } from "./shared.ts"

const shortArgs = (job: Job): string => {
  const text = JSON.stringify(job.args)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

const list = Command.make("list", {
  ...filterFlags,
  sort: Flag.Literals("sort", ["id", "scheduled_at", "inserted_at"]).pipe(
    Flag.withDescription("Sort by (then by id)"),
    Flag.withDefault("id")
  ),
  order: Flag.Literals("order", ["asc", "desc"]).pipe(Flag.withDefault("desc")),
  limit: Flag.Int("limit").pipe(Flag.withDescription("Jobs per page, 1 to 1000"), Flag.withDefault(50)),
  cursor: Flag.String("cursor").pipe(Flag.withDescription("The next-page cursor a previous list printed"), Flag.optional)
}, (input) =>
  Effect.gen(function*() {
    const globals = yield* root
    const filter = yield* toFilter(input)
    const page = yield* withDatabase(globals, Jobs.list({
      filter,
      sort: { by: input.sort === "id" ? "id" : input.sort === "scheduled_at" ? "scheduledAt" : "insertedAt", order: input.order },
      limit: input.limit,
      cursor: Option.getOrUndefined(input.cursor)
    }))
    yield* print(globals.json, { jobs: page.jobs, next: page.next ?? null }, () => {
      const rows = page.jobs.map((job) => [
        job.id, job.state, job.queue, job.worker, `${job.attempt}/${job.maxAttempts}`, job.scheduledAt, shortArgs(job)
      ])
      const text = table(["ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "SCHEDULED AT", "ARGS"], rows)
      return page.next === undefined ? text : `${text}\n\nnext page: --cursor ${page.next}`
    })
  })).pipe(Command.withDescription("List jobs matching the filter flags, newest first, one page at a time"))

const show = Command.make("show", { id: jobIdArgument("id") }, ({ id }) =>
  Effect.gen(function*() {
    const globals = yield* root
    const found = yield* withDatabase(globals, jobWithResult(id))
    if (Option.isNone(found)) return yield* Effect.fail(new CliFailure(ExitCode.notFound, `no job with id ${id}`, "JobNotFound"))
    const { job, result } = found.value
    yield* print(globals.json, { ...job, result: Option.getOrNull(result) }, () => {
      const fields: ReadonlyArray<readonly [string, unknown]> = [
        ["id", job.id], ["state", job.state], ["queue", job.queue], ["worker", job.worker],
        ["attempt", `${job.attempt} of ${job.maxAttempts}`], ["priority", job.priority], ["tags", job.tags.join(", ") || "-"],
        ["args", JSON.stringify(job.args)], ["meta", JSON.stringify(job.meta)],
        ["result", Option.match(result, { onNone: () => null, onSome: (value) => JSON.stringify(value) })],
        ["inserted at", job.insertedAt], ["scheduled at", job.scheduledAt], ["attempted at", job.attemptedAt],
        ["completed at", job.completedAt], ["discarded at", job.discardedAt], ["cancelled at", job.cancelledAt],
        ["cancel asked", job.cancelRequestedAt], ["attempted by", job.attemptedBy?.join(" ") ?? null]
      ]
      const lines = fields.map(([name, value]) => `${name.padEnd(13)} ${cell(value)}`)
      const errors = job.errors.map((entry) =>
        `  attempt ${entry.attempt} at ${entry.at} (${entry.kind}): ${entry.message}` +
        (entry.cause === undefined ? "" : `\n    ${entry.cause.split("\n").join("\n    ")}`)
      )
      return [...lines, `errors        ${errors.length === 0 ? "-" : `\n${errors.join("\n")}`}`].join("\n")
    })
  })).pipe(Command.withDescription("Show one job: args, meta, recorded result, tags, timestamps and its latest 20 errors entries"))

const bulkFlags = {
  ...filterFlags,
  ids: jobIdArgument("id").pipe(Argument.withDescription("Job ids (optional when filter flags are given)"), Argument.variadic()),
  all: Flag.Boolean("all").pipe(Flag.withDescription("Act on every job (no id and no filter)"), Flag.withDefault(false)),
  batchSize: Flag.Int("batch-size").pipe(Flag.withDescription("Jobs per transaction, 1 to 10000"), Flag.withDefault(1000))
}

type BulkInput = FilterInput & { readonly ids: ReadonlyArray<number>; readonly all: boolean; readonly batchSize: number }

/** Of the ids a command named, those it did not change: left alone (with their state), or not found. */
const accountFor = (ids: ReadonlyArray<number>, changed: ReadonlySet<number>, skipped: ReadonlySet<number>) =>
  Effect.gen(function*() {
    const unaccounted = Array.from(new Set(ids)).filter((id) => !changed.has(id) && !skipped.has(id))
    const states = new Map<number, string>()
    // A page holds at most 1,000 jobs: one list per 1,000 ids.
    for (let start = 0; start < unaccounted.length; start += 1_000) {
      const page = yield* Jobs.list({ filter: { ids: unaccounted.slice(start, start + 1_000) }, limit: 1_000 })
      for (const job of page.jobs) states.set(job.id, job.state)
    }
    const left = unaccounted.flatMap((id) => {
      const state = states.get(id)
      return state === undefined ? [] : [{ id, state }]
    })
    return { left, missing: unaccounted.filter((id) => !states.has(id)) }
  })

/**
 * Checks that the command names its jobs, runs the action over them, and prints what changed. Of the
 * ids it names, each one left alone is said with its state (a delete leaves executing jobs, say), and
 * ids no job has fail the command with exit code 5 after the others were acted on.
 */
const runBulk = (name: string, verb: string, input: BulkInput, action: BulkAction) =>
  Effect.gen(function*() {
    const globals = yield* root
    const filter = yield* toFilter(input, input.ids)
    // No flag at all, or only flags every job satisfies (--args '{}'): the library would refuse it too.
    if (!input.all && matchesEveryJob(filter)) {
      return yield* Effect.fail(
        new CliFailure(
          ExitCode.usage,
          `${name} needs job ids or at least one filter flag that narrows it; pass --all to ${name} every job`,
          "InvalidInput"
        )
      )
    }
    const changed = new Set<number>()
    // The states the changed jobs were in: a retry by worker alone re-runs completed jobs too, which
    // the output says rather than leave to be found in the side effects.
    const from: Record<string, number> = {}
    const { left, missing, result } = yield* withDatabase(
      globals,
      Effect.gen(function*() {
        const result = yield* runBulkAction(action, filter, { batchSize: input.batchSize, all: input.all }, (rows) =>
          Effect.sync(() => {
            for (const row of rows) {
              changed.add(row.id)
              from[row.previous_state] = (from[row.previous_state] ?? 0) + 1
            }
          }))
        const accounted = yield* accountFor(input.ids, changed, new Set(result.skipped.map((skip) => skip.id)))
        return { ...accounted, result }
      })
    )
    const named = input.ids.length === 0 ? {} : { left, missing }
    const states = Object.entries(from).sort(([, a], [, b]) => b - a)
    const completedRetried = action._tag === "retry" ? from["completed"] ?? 0 : 0
    const requested = result.requested
    // Running jobs whose node no longer answers for them: finished at once, and perhaps still running there.
    const cutShort = action._tag === "cancel" ? (from["executing"] ?? 0) - requested : 0
    yield* print(globals.json, { ...result, from, ...named }, () =>
      [
        `${verb} ${result.changed} job${result.changed === 1 ? "" : "s"} (${result.batches} batch${result.batches === 1 ? "" : "es"})${
          states.length === 0 ? "" : `: ${states.map(([state, n]) => `${n} ${state}`).join(", ")}`
        }`,
        ...(completedRetried === 0 || input.state.length > 0
          ? []
          : [`note: ${completedRetried} of them had completed and will run again (narrow a retry with --state)`]),
        ...(requested === 0 ? [] : [
          `note: ${requested === 1 ? "1 of them is running: its row stays" : `${requested} of them are running: their rows stay`} ` +
          `executing until stopped, then ${requested === 1 ? "says" : "say"} cancelled (a retry waits until then); ` +
          "if a node was killed, cancel again once it has " +
          `been silent for its rescueAfter (${Duration.toSeconds(defaultRescueAfter)} s by default) to finish them at once, ` +
          "or let a rescue end them (the leader's, or effect-oban jobs rescue)"
        ]),
        ...(cutShort <= 0 ? [] : [
          `note: ${cutShort === 1 ? "1 of them was" : `${cutShort} of them were`} executing under a node that no longer answers ` +
          "(gone, or silent past its rescueAfter), so cancelled at once: if that node is stalled rather than dead, the attempt " +
          "may still run there, and a retry or a new unique job may run beside it"
        ]),
        ...result.skipped.map((skip) => `skipped job ${skip.id}: ${skip.reason}`),
        ...left.map((job) => `left job ${job.id} alone: it is ${job.state}`)
      ].join("\n"))
    if (missing.length > 0) {
      return yield* Effect.fail(
        new CliFailure(ExitCode.notFound, `no job with id ${missing.join(", ")}`, "JobNotFound")
      )
    }
  })

const bulk = (name: "retry" | "cancel" | "delete", verb: string, description: string) =>
  Command.make(name, bulkFlags, (input) => runBulk(name, verb, input, { _tag: name })).pipe(
    Command.withDescription(description)
  )

const reschedule = Command.make("reschedule", {
  ...bulkFlags,
  at: Flag.String("at").pipe(Flag.withDescription("When to run them (ISO 8601, e.g. 2026-05-01T12:00:00Z)"))
}, (input) =>
  Effect.flatMap(parseDate("at", Option.some(input.at)), (at) =>
    runBulk("reschedule", "rescheduled", input, { _tag: "reschedule", at: at! }))
).pipe(Command.withDescription("Move matching available, scheduled or retryable jobs to run at --at"))

/**
 * `jobs rescue`: the leader's rescue, run now by the operator. Without a node running (all of them crashed, or
 * a queue no node runs any more), jobs left `executing` by a dead node stayed so: a retry or delete leaves
 * executing jobs alone, and a cancel ends them rather than running them again.
 */
const rescue = Command.make("rescue", {}, () =>
  Effect.gen(function*() {
    const globals = yield* root
    const { answering, result } = yield* withDatabase(
      globals,
      Effect.flatMap(SqlClient, (sql) =>
        Effect.all({
          result: rescueRun({
            sql,
            prefix: globals.prefix,
            afterMillis: "reported",
            // The nodes' own forgetAfter is theirs to apply: rows they keep longer keep the commands stored for them.
            forgetAfterMillis: undefined,
            batchSize: Rescuer.defaults.batchSize,
            spared: []
          }).pipe(Effect.provideService(References.MinimumLogLevel, "None")),
          // What is left executing, and when each node's jobs would be rescued (silent past its rescueAfter).
          answering: answeringNodes(plain(sql), globals.prefix)
        }, { concurrency: 1 }))
    )
    const total = result.rescued + result.discarded + result.cancelled
    yield* print(globals.json, { ...result, answering }, () =>
      [
        total === 0 ? "no orphaned job" : rescueLine(result),
        ...answeringLines(answering)
      ].join("\n"))
  })).pipe(Command.withDescription(
    "Put back now the jobs of nodes silent past their rescueAfter, as the leader's rescuer would (no node needs to run)"
  ))

/** Per node still answering for executing jobs: how many, how long silent, and when they would be rescued. */
const answeringLines = (answering: ReadonlyArray<AnsweringNode>): ReadonlyArray<string> =>
  answering.length === 0 ? [] : [
    "left executing under nodes that still answer for them:",
    ...answering.map(({ jobs, node, rescueAfterSeconds: after, silentSeconds: silent }) =>
      `  ${node}: ${jobs} job(s); heard from ${silent} s ago, rescued once silent ${after} s (in ${Math.max(0, after - silent)} s at the earliest)`)
  ]

/** `effect-oban jobs ...` */
export const jobs = Command.make("jobs").pipe(
  Command.withDescription("Find, inspect, retry, cancel and delete jobs"),
  Command.withSubcommands([
    list,
    show,
    bulk("retry", "retried", "Make matching finished or waiting jobs available now (not executing or available ones)"),
    bulk("cancel", "cancelled", "Cancel matching unfinished jobs; executing ones are interrupted on their node"),
    bulk("delete", "deleted", "Delete matching jobs that are not executing"),
    reschedule,
    rescue
  ])
)
