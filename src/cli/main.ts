/**
 * The `effect-oban` command line: runs one command and exits with a code
 * from `exitCodes.ts`. Started by bin/effect-oban.js.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { CliError, Command } from "effect/cli"
import { readFileSync } from "node:fs"
import { cron, nodes } from "./clusterCommand.ts"
import { dashboard } from "./dashboardCommand.ts"
import { serverMessage } from "../internal/serverMessage.ts"
import { isServerUnavailable, type ReasonedFailure } from "../internal/serverUnavailable.ts"
import { isIdleTransactionEnd } from "../internal/sql/transaction.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { jobs } from "./jobsCommand.ts"
import { migrate } from "./migrateCommand.ts"
import { queues } from "./queuesCommand.ts"
import { root } from "./shared.ts"

const version = (): string => {
  try {
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
}

const app = root.pipe(Command.withSubcommands([migrate, queues, jobs, nodes, cron, dashboard]))

interface Reported {
  readonly code: number
  readonly tag: string
  readonly message: string
}


/** The exit code and message of a failure. */
export const classify = (error: unknown): Reported => {
  if (error instanceof CliFailure) return { code: error.code, tag: error.tag, message: error.message }
  if (CliError.isCliError(error)) {
    // A parse error comes wrapped in ShowHelp ("Help requested"): a script wants the error itself.
    const errors = error._tag === "ShowHelp" ? error.errors : [error]
    return errors.length === 0
      ? { code: ExitCode.usage, tag: error._tag, message: error.message }
      : { code: ExitCode.usage, tag: errors[0]!._tag, message: errors.map((each) => each.message).join("; ") }
  }
  const tagged = error as {
    readonly _tag?: string
    readonly message?: string
    readonly reason?: { readonly _tag?: string; readonly operation?: string }
  }
  switch (tagged._tag) {
    case "InvalidFilterError":
    case "InvalidConfigError":
    case "InvalidPrefixError": {
      const field = (error as { readonly field?: string }).field
      const message = tagged.message ?? ""
      // The field first, unless the message starts with it already ("queue name ..." for field `queue`).
      const named = field === undefined || message.startsWith(`${field} `) ? message : `${field}: ${message}`
      return { code: ExitCode.usage, tag: tagged._tag, message: named }
    }
    case "MigrationError": {
      const { prefix, version } = error as { readonly prefix?: string; readonly version?: number }
      // A migration that failed to apply is not a schema that lacks one: the database refused it.
      if (version !== undefined) {
        return { code: ExitCode.failure, tag: tagged._tag, message: tagged.message ?? "a migration failed" }
      }
      // About no schema: the migration files that ship with the package could not be read. A broken
      // install, not a schema to migrate (4 would advise `migrate up`, which fails the same way).
      if (prefix === undefined) {
        return {
          code: ExitCode.failure,
          tag: tagged._tag,
          message: `${tagged.message ?? "cannot read migrations"} (the migration files ship with effect-oban: reinstall it)`
        }
      }
      // The library's message advises code (Migrations.run() under a layer); at a terminal, the command comes first.
      const cause = (error as { readonly cause?: unknown }).cause
      const detail = typeof cause === "object" && cause !== null ? serverMessage(cause) : undefined
      return {
        code: ExitCode.notMigrated,
        tag: tagged._tag,
        message: `schema "${prefix}" has no effect-oban tables, or was migrated by an older release: ` +
          `run \`effect-oban migrate up --prefix ${prefix}\`, or check --prefix` +
          (detail === undefined ? "" : ` (${detail})`)
      }
    }
    case "SqlError": {
      const reason = tagged.reason?._tag
      const detail = serverMessage(error as never) ?? tagged.message ?? ""
      // The server ended one of the command's transactions for sitting idle: the process stalled.
      if (isIdleTransactionEnd(error)) {
        return { code: ExitCode.unreachable, tag: "SqlError", message: `lost the database: ${tagged.message ?? detail}` }
      }
      // Refused while connecting (no such database, too many connections, starting up): unreachable too.
      if (reason === "ConnectionError" || reason === "AuthenticationError") {
        return { code: ExitCode.unreachable, tag: reason, message: `cannot reach the database: ${detail}` }
      }
      // The driver's reason for a refusal while connecting is no more than "UnknownError".
      if (tagged.reason?.operation === "connect") {
        return { code: ExitCode.unreachable, tag: "SqlError", message: `cannot reach the database: ${detail}` }
      }
      // A session the server ended during the command (a restart, pg_terminate_backend) or one that takes
      // no writes (a standby after a failover): a lost connection, not an error of the command's.
      if (isServerUnavailable(error as ReasonedFailure)) {
        return { code: ExitCode.unreachable, tag: "SqlError", message: `lost the database: ${detail}` }
      }
      return { code: ExitCode.failure, tag: reason ?? "SqlError", message: `database error: ${detail}` }
    }
    case "ConfigError":
      return { code: ExitCode.usage, tag: tagged._tag, message: tagged.message ?? "bad configuration" }
  }
  return { code: ExitCode.failure, tag: tagged._tag ?? "Error", message: tagged.message ?? String(error) }
}

const asJson = process.argv.includes("--json")

const program = Command.run(app, { version: version() }).pipe(
  Effect.provide(NodeServices.layer),
  Effect.exit,
  Effect.flatMap((exit) => {
    if (Exit.isSuccess(exit)) return Effect.succeed(ExitCode.ok)
    const failure = exit.cause.reasons.find(Cause.isFailReason)
    const reported = failure === undefined
      ? { code: ExitCode.failure, tag: "Defect", message: Cause.pretty(exit.cause) }
      : classify(failure.error)
    // effect/cli has already printed its own parse errors with the usage.
    const printed = failure !== undefined && CliError.isCliError(failure.error)
    const text = asJson
      // One line, so that a script can read it as it reads the results.
      ? JSON.stringify({ error: { tag: reported.tag, message: reported.message, exitCode: reported.code } })
      : `effect-oban: ${reported.message}`
    return Effect.as(printed && !asJson ? Effect.void : Console.error(text), reported.code)
  })
)

Effect.runPromise(program).then((code) => {
  process.exitCode = code
}, (error: unknown) => {
  console.error(error)
  process.exitCode = ExitCode.failure
})
