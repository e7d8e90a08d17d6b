/**
 * What every `effect-oban` command shares: the global flags (database URL,
 * prefix, JSON output), the database connection they need, and the job
 * filter flags of `jobs list|retry|cancel|delete`.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Argument, Command, Flag } from "effect/cli"
import type { SqlClient } from "effect/sql/SqlClient"
import * as ObanConfig from "../Config.ts"
import type { Filter } from "../Jobs.ts"
import { jsonObjectIn } from "../internal/jsonParse.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { isPostgresUrl } from "../internal/directConnection.ts"

const globalFlags = {
  databaseUrl: Flag.String("database-url").pipe(
    Flag.withDescription("PostgreSQL URL (default: the DATABASE_URL environment variable)"),
    Flag.optional
  ),
  prefix: Flag.String("prefix").pipe(
    Flag.withDescription("The schema that holds effect-oban's tables (default: public)"),
    Flag.withDefault("public")
  ),
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print JSON for scripts instead of tables"), Flag.withDefault(false))
}

/** The root command; subcommands read the global flags with `yield* root`. */
export const root = Command.make("effect-oban").pipe(
  Command.withSharedFlags(globalFlags),
  Command.withDescription("Operate effect-oban queues: migrations, queues, jobs, nodes and cron.")
)

export interface Globals {
  readonly databaseUrl: Option.Option<string>
  readonly prefix: string
  readonly json: boolean
}

/** The database URL from the flag or DATABASE_URL, or a usage failure naming both. */
const databaseUrl = (globals: Globals): Effect.Effect<string, CliFailure> =>
  Option.match(globals.databaseUrl, {
    onSome: Effect.succeed,
    onNone: () =>
      Effect.mapError(Config.String("DATABASE_URL"), (error) => error).pipe(
        Effect.mapError(() =>
          new CliFailure(ExitCode.usage, "no database given: pass --database-url or set DATABASE_URL", "MissingDatabaseUrl")
        )
      )
  })

/** Runs `effect` with a small pool on the database and the prefix's settings. */
export const withDatabase = <A, E>(
  globals: Globals,
  effect: Effect.Effect<A, E, SqlClient>
): Effect.Effect<A, unknown> =>
  Effect.gen(function*() {
    const url = yield* databaseUrl(globals)
    if (!isPostgresUrl(url)) {
      // The URL itself is not echoed: it may hold a password.
      return yield* Effect.fail(
        new CliFailure(
          ExitCode.usage,
          "--database-url (or DATABASE_URL) is not a PostgreSQL URL: expected postgres://user@host:port/database",
          "InvalidDatabaseUrl"
        )
      )
    }
    const settings = yield* ObanConfig.make({ prefix: globals.prefix })
    const client = PgClient.layer({
      url: Redacted.make(url),
      // A command runs at most two statements at once.
      maxConnections: 2,
      connectTimeout: "5 seconds",
      // A command runs a handful of statements, most of them once: preparing them buys nothing, and
      // through a pooler in transaction mode (PgBouncer before 1.21) a statement prepared on one
      // server connection is missing on the next (the driver then prepares it again).
      prepare: false,
      applicationName: "effect-oban-cli"
    })
    return yield* Effect.provide(Effect.provideService(effect, ObanConfig.Settings, settings), client)
  })

const many = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withDescription(description), Flag.atLeast(0))

const date = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withDescription(`${description} (ISO 8601, e.g. 2026-05-01T12:00:00Z)`), Flag.optional)

/**
 * A job id on the command line: a whole number from 1 to 2^53 - 1, in digits. `Argument.Int` reads
 * `1e2` as 100 (a `cancel 1e2` cancelled job 100) and lets 0 and negatives through to "no such job".
 */
export const jobIdArgument = (name: string) =>
  Argument.String(name).pipe(
    Argument.filterMap(
      (text) => {
        const id = Number(text)
        return /^[0-9]+$/.test(text) && id >= 1 && Number.isSafeInteger(id) ? Option.some(id) : Option.none()
      },
      () => `a job id: a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, in digits`
    )
  )

/** The filter flags: the same filter as `Jobs.Filter`, checked by it. */
export const filterFlags = {
  queue: many("queue", "Only jobs of this queue (repeat for several)"),
  state: many("state", "Only jobs in this state (repeat for several)"),
  worker: many("worker", "Only jobs of this worker (repeat for several)"),
  tag: many("tag", "Only jobs carrying this tag (repeat: all of them)"),
  anyTag: Flag.Boolean("any-tag").pipe(
    Flag.withDescription("With several --tag: jobs carrying any of them"),
    Flag.withDefault(false)
  ),
  args: Flag.String("args").pipe(Flag.withDescription("Jobs whose args contain this JSON object"), Flag.optional),
  meta: Flag.String("meta").pipe(Flag.withDescription("Jobs whose meta contains this JSON object"), Flag.optional),
  insertedAfter: date("inserted-after", "Inserted at or after"),
  insertedBefore: date("inserted-before", "Inserted before"),
  scheduledAfter: date("scheduled-after", "Scheduled at or after"),
  scheduledBefore: date("scheduled-before", "Scheduled before"),
  attemptedAfter: date("attempted-after", "Last attempted at or after"),
  attemptedBefore: date("attempted-before", "Last attempted before"),
  completedAfter: date("completed-after", "Completed at or after"),
  completedBefore: date("completed-before", "Completed before")
}

type Infer<T> = { readonly [K in keyof T]: T[K] extends Flag.Flag<infer A> ? A : never }

export type FilterInput = Infer<typeof filterFlags>

const usage = (message: string) => new CliFailure(ExitCode.usage, message, "InvalidInput")

export const parseDate = (flag: string, value: Option.Option<string>): Effect.Effect<Date | undefined, CliFailure> => {
  if (Option.isNone(value)) return Effect.succeed(undefined)
  const parsed = new Date(value.value)
  return Number.isNaN(parsed.getTime())
    ? Effect.fail(usage(`--${flag}: "${value.value}" is not a date (use ISO 8601, e.g. 2026-05-01T12:00:00Z)`))
    : Effect.succeed(parsed)
}

const parseObject = (flag: string, value: Option.Option<string>): Effect.Effect<Record<string, unknown> | undefined, CliFailure> => {
  if (Option.isNone(value)) return Effect.succeed(undefined)
  const parsed = jsonObjectIn(value.value)
  if (parsed !== undefined) return Effect.succeed(parsed)
  return Effect.fail(usage(`--${flag}: expected a JSON object, e.g. '{"user_id": 42}', got ${value.value}`))
}

const range = (after: Date | undefined, before: Date | undefined) =>
  after === undefined && before === undefined
    ? undefined
    : { ...(after === undefined ? {} : { after }), ...(before === undefined ? {} : { before }) }

/** The filter the flags describe (still to be checked by `Jobs`), and whether it has any part. */
export const toFilter = (input: FilterInput, ids: ReadonlyArray<number> = []): Effect.Effect<Filter, CliFailure> =>
  Effect.gen(function*() {
    const args = yield* parseObject("args", input.args)
    const meta = yield* parseObject("meta", input.meta)
    const inserted = range(yield* parseDate("inserted-after", input.insertedAfter), yield* parseDate("inserted-before", input.insertedBefore))
    const scheduled = range(yield* parseDate("scheduled-after", input.scheduledAfter), yield* parseDate("scheduled-before", input.scheduledBefore))
    const attempted = range(yield* parseDate("attempted-after", input.attemptedAfter), yield* parseDate("attempted-before", input.attemptedBefore))
    const completed = range(yield* parseDate("completed-after", input.completedAfter), yield* parseDate("completed-before", input.completedBefore))
    const filter: Record<string, unknown> = {}
    if (ids.length > 0) filter["ids"] = ids
    if (input.queue.length > 0) filter["queues"] = input.queue
    if (input.state.length > 0) filter["states"] = input.state
    if (input.worker.length > 0) filter["workers"] = input.worker
    if (input.tag.length > 0) filter["tags"] = input.tag
    if (input.anyTag) filter["tagsMatch"] = "any"
    if (args !== undefined) filter["args"] = args
    if (meta !== undefined) filter["meta"] = meta
    if (inserted !== undefined) filter["inserted"] = inserted
    if (scheduled !== undefined) filter["scheduled"] = scheduled
    if (attempted !== undefined) filter["attempted"] = attempted
    if (completed !== undefined) filter["completed"] = completed
    // Checked by Jobs with the filter's schema (states, empty names, ranges): unknown input is fine here.
    return filter as Filter
  })
