/**
 * `effect-oban migrate up|down|status|sql`: the CLI face of `Migrations`.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Command, Flag } from "effect/cli"
import { isTarget } from "../internal/migrationFiles.ts"
import * as Migrations from "../Migrations.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { print, table } from "./output.ts"
import { root, withDatabase } from "./shared.ts"

const reportRun = (json: boolean, report: Migrations.Report, verb: string) =>
  print(json, report, () =>
    report.versions.length === 0
      ? `schema "${report.prefix}" is at version ${report.from}: nothing to do`
      : `${verb} ${report.versions.join(", ")} on schema "${report.prefix}" (now at version ${report.to})`)

const up = Command.make("up", {
  to: Flag.Int("to").pipe(Flag.withDescription("Stop at this version (default: the latest)"), Flag.optional)
}, ({ to }) =>
  Effect.gen(function*() {
    const globals = yield* root
    const report = yield* withDatabase(globals, Migrations.run({ prefix: globals.prefix, to: Option.getOrUndefined(to) }))
    yield* reportRun(globals.json, report, "applied")
  })).pipe(Command.withDescription("Apply pending migrations (safe to run on many nodes at once)"))

const down = Command.make("down", {
  to: Flag.Int("to").pipe(Flag.withDescription("Roll back every version above this one (0: remove every table)")),
  yes: Flag.Boolean("yes").pipe(
    Flag.withDescription("Roll back for real (without it, the command only says what it would roll back)"),
    Flag.withDefault(false)
  )
}, ({ to, yes }) =>
  Effect.gen(function*() {
    const globals = yield* root
    if (!yes) {
      // A rollback can drop tables and the jobs in them: say what it would do, and do nothing.
      const status = yield* withDatabase(globals, Migrations.status({ prefix: globals.prefix }))
      if (!isTarget(to, status.latest)) {
        return yield* Effect.fail(
          new CliFailure(ExitCode.usage, `--to must be an integer from 0 to ${status.latest}, got ${to}`, "InvalidInput")
        )
      }
      const versions = status.applied.map((row) => row.version).filter((version) => version > to).sort((a, b) => b - a)
      return yield* Effect.fail(
        new CliFailure(
          ExitCode.usage,
          versions.length === 0
            ? `schema "${status.prefix}" is at version ${status.current}: nothing above ${to} to roll back`
            : `this would roll back ${versions.join(", ")} on schema "${status.prefix}"` +
              (to === 0 ? ", removing every effect-oban table and every job in them" : "") +
              `; run again with --yes to do it`,
          "ConfirmationRequired"
        )
      )
    }
    const report = yield* withDatabase(globals, Migrations.down({ prefix: globals.prefix, to }))
    yield* reportRun(globals.json, report, "rolled back")
  })).pipe(Command.withDescription("Roll back migrations above --to, newest first (needs --yes)"))

const status = Command.make("status", {}, () =>
  Effect.gen(function*() {
    const globals = yield* root
    const status = yield* withDatabase(globals, Migrations.status({ prefix: globals.prefix }))
    yield* print(globals.json, status, () =>
      `schema "${status.prefix}": version ${status.current} of ${status.latest}` +
      (status.current < status.latest ? " (behind: run effect-oban migrate up)" : " (up to date)") + "\n\n" +
      table(["VERSION", "NAME", "APPLIED AT"], [
        ...status.applied.map((row) => [row.version, row.name, row.appliedAt]),
        ...status.pending.map((row) => [row.version, row.name, "pending"])
      ]))
    // Printed either way; the exit code says whether the schema is ready for this release, so a deploy
    // can gate on it (`effect-oban migrate status || effect-oban migrate up`).
    if (status.current < status.latest) {
      return yield* Effect.fail(
        new CliFailure(
          ExitCode.notMigrated,
          `schema "${status.prefix}" is at version ${status.current} of ${status.latest}: ` +
            `run \`effect-oban migrate up --prefix ${status.prefix}\``,
          "NotMigrated"
        )
      )
    }
  })).pipe(Command.withDescription("Applied and pending migrations of the schema (exit 4 when behind)"))

const sql = Command.make("sql", {
  down: Flag.Boolean("down").pipe(Flag.withDescription("Print the rollback instead"), Flag.withDefault(false)),
  from: Flag.Int("from").pipe(Flag.optional),
  to: Flag.Int("to").pipe(Flag.optional)
}, (input) =>
  Effect.gen(function*() {
    const globals = yield* root
    const text = yield* Migrations.sql({
      prefix: globals.prefix,
      direction: input.down ? "down" : "up",
      from: Option.getOrUndefined(input.from),
      to: Option.getOrUndefined(input.to)
    })
    yield* globals.json ? Console.log(JSON.stringify({ prefix: globals.prefix, sql: text })) : Console.log(text.trimEnd())
  })).pipe(Command.withDescription("Print the migrations' SQL for your own migration tool (no database needed)"))

/** `effect-oban migrate ...` */
export const migrate = Command.make("migrate").pipe(
  Command.withDescription("Apply, roll back, inspect or print the schema migrations"),
  Command.withSubcommands([up, down, status, sql])
)
