/**
 * `effect-oban dashboard`: the web dashboard on its own server, bound to
 * 127.0.0.1 unless `--host` says otherwise, guarded by a token (from
 * `--token`, EFFECT_OBAN_DASHBOARD_TOKEN, or made up and printed at start).
 * Runs until SIGINT or SIGTERM.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Command, Flag } from "effect/cli"
import * as Cluster from "../Cluster.ts"
import * as Dashboard from "../Dashboard.ts"
import { strongEnough, tokenRule } from "../internal/dashboard/security.ts"
import { CliFailure, ExitCode } from "./exitCodes.ts"
import { root, withDatabase } from "./shared.ts"

const untilSignal = Effect.callback<void>((resume) => {
  const stop = () => resume(Effect.void)
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
  return Effect.sync(() => {
    process.off("SIGINT", stop)
    process.off("SIGTERM", stop)
  })
})

export const dashboard = Command.make("dashboard", {
  port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on (0 picks a free one)"), Flag.withDefault(4000)),
  host: Flag.String("host").pipe(
    Flag.withDescription("Address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)"),
    Flag.withDefault("127.0.0.1")
  ),
  token: Flag.String("token").pipe(
    Flag.withDescription("The token to require (default: EFFECT_OBAN_DASHBOARD_TOKEN, else a new random one, printed)"),
    Flag.optional
  ),
  readOnly: Flag.Boolean("read-only").pipe(Flag.withDescription("Only look: refuse every action"), Flag.withDefault(false)),
  pollInterval: Flag.Int("poll-interval").pipe(
    Flag.withDescription("Seconds between live updates (one set of queries for every open page)"),
    Flag.withDefault(2)
  )
}, (flags) =>
  Effect.gen(function*() {
    const globals = yield* root
    const given = Option.getOrUndefined(flags.token) ?? process.env["EFFECT_OBAN_DASHBOARD_TOKEN"]
    const token = given ?? Dashboard.generateToken()
    if (!strongEnough(token)) {
      return yield* Effect.fail(new CliFailure(ExitCode.usage, `--token: ${tokenRule}`, "InvalidInput"))
    }
    if (flags.pollInterval < 1 || flags.pollInterval > 3600) {
      return yield* Effect.fail(new CliFailure(ExitCode.usage, "--poll-interval: 1 to 3600 seconds", "InvalidInput"))
    }
    yield* withDatabase(
      globals,
      Effect.scoped(Effect.gen(function*() {
        // Fail now, with the CLI's exit codes, on an unreachable or unmigrated database.
        yield* Cluster.view
        const { url } = yield* Dashboard.serve({
          port: flags.port,
          host: flags.host,
          token,
          readOnly: flags.readOnly,
          pollInterval: `${flags.pollInterval} seconds`
        })
        yield* Console.log(`effect-oban dashboard: ${url}/ (schema ${globals.prefix}${flags.readOnly ? ", read-only" : ""})`)
        // A token the caller chose is theirs to know: printing it would only copy it into logs.
        yield* Console.log(
          given === undefined
            ? `sign in with any user name and the token as password: ${token}`
            : "sign in with any user name and your token as password"
        )
        yield* Console.log(`(scripts: Authorization: Bearer <token>) press Ctrl-C to stop`)
        yield* untilSignal
      }))
    )
  })).pipe(Command.withDescription("Serve the web dashboard (queues, jobs, nodes, cron, actions) on 127.0.0.1"))
