/**
 * A node's options read with Effect's `Config`: from the environment by
 * default (`OBAN_QUEUES`, `OBAN_PREFIX`, ...), or from whatever
 * `ConfigProvider` the program provides. Bad values fail with `ConfigError`
 * naming the variable.
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { isPostgresUrl } from "./directConnection.ts"
import { distance } from "./optionKeys.ts"
import type { QueueConfig, RuntimeOptions } from "./runtimeConfig.ts"

const configError = (message: string) => new Config.ConfigError(new ConfigProvider.SourceError({ message }))

/**
 * Queues as `name:limit` pairs separated by commas, each optionally followed
 * by `:paused`: `default:10,mailers:20,media:5:paused`; `none` for no queue
 * (a node that only inserts). An empty value cannot say that: Effect's
 * providers read `OBAN_QUEUES=` as unset, which keeps the code's queues; a
 * value of only commas and spaces is refused rather than read as either.
 * Limits are checked by `Oban.layer` like any other.
 */
export const parseQueues = (text: string): Effect.Effect<Record<string, QueueConfig>, Config.ConfigError> =>
  Effect.suspend(() => {
    if (text.trim().toLowerCase() === "none") return Effect.succeed({})
    // No prototype: a queue may be named "constructor" or "__proto__".
    const queues: Record<string, QueueConfig> = Object.create(null)
    const entries = text.split(",").map((part) => part.trim()).filter((part) => part !== "")
    if (entries.length === 0) {
      return Effect.fail(configError(
        `OBAN_QUEUES: ${JSON.stringify(text)} names no queue; write none for a node that runs no queue, ` +
          `or name:limit pairs (for example default:10,media:5:paused)`
      ))
    }
    for (const entry of entries) {
      const [name, limit, flag, ...rest] = entry.split(":").map((part) => part.trim())
      const parsed = Number(limit)
      if (name === undefined || name === "" || limit === undefined || !/^\d+$/.test(limit) || rest.length > 0 ||
        (flag !== undefined && flag !== "paused")) {
        return Effect.fail(configError(
          `OBAN_QUEUES: "${entry}" is not name:limit or name:limit:paused (for example default:10,media:5:paused), ` +
            `nor none (no queue)`
        ))
      }
      if (Object.hasOwn(queues, name)) return Effect.fail(configError(`OBAN_QUEUES: queue "${name}" is given twice`))
      queues[name] = flag === "paused" ? { limit: parsed, paused: true } : { limit: parsed }
    }
    return Effect.succeed(Object.fromEntries(Object.entries(queues)))
  })

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/** Leaves out the fields that were not set, so that they keep their defaults. */
const defined = <A extends object>(fields: A): Partial<A> =>
  Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<A>

/**
 * The variable `name` read as text and parsed by `parse` (undefined: not
 * such a value). A bad value fails naming the variable as it is written
 * (`OBAN_POLL_INTERVAL: "soon" is not a duration ...`), which Effect's own
 * readers give only as a path of pieces.
 */
const variable = <A>(name: string, expected: string, parse: (text: string) => A | undefined): Config.Config<A | undefined> =>
  optional(Config.String(name)).pipe(Config.mapEffect((text) => {
    if (text === undefined) return Effect.succeed(undefined)
    const value = parse(text.trim())
    return value === undefined
      ? Effect.fail(configError(`OBAN_${name}: ${JSON.stringify(text)} is not ${expected}`))
      : Effect.succeed(value)
  }))

const durationOf = (text: string): Duration.Duration | undefined =>
  Option.getOrUndefined(Duration.fromInput(text as Duration.Input))

/** What Effect's `Config.Boolean` reads (its `BooleanLiterals`, not exported on their own), in any case. */
const trueWords: ReadonlyArray<string> = ["true", "yes", "on", "1", "y"]
const falseWords: ReadonlyArray<string> = ["false", "no", "off", "0", "n"]

const booleanOf = (text: string): boolean | undefined => {
  const lower = text.toLowerCase()
  return trueWords.includes(lower) ? true : falseWords.includes(lower) ? false : undefined
}

const integerOf = (text: string): number | undefined => {
  const value = Number(text)
  return text !== "" && Number.isSafeInteger(value) ? value : undefined
}

const durations = (names: Record<string, string>): Config.Config<Record<string, Duration.Duration | undefined>> =>
  Config.all(Object.fromEntries(Object.entries(names).map(([field, name]) => [
    field,
    variable(name, "a duration (for example \"5 seconds\" or \"500 millis\")", durationOf)
  ])))

/**
 * The node's options under `OBAN_`: `QUEUES` (see `parseQueues`), `PREFIX`,
 * `NODE`, `POLL_INTERVAL`, `STAGE_INTERVAL`, `SHUTDOWN_GRACE_PERIOD`,
 * `HEARTBEAT_INTERVAL`, `RESCUE_AFTER`, `PRUNER_MAX_AGE` (durations such as
 * `5 seconds`), `DELETE_COMPLETED` and `PRUNER` (booleans; `PRUNER=false`
 * turns pruning off, `true` on), `THREADS` (the size of the thread pool),
 * `DIRECT_DATABASE_URL` (`directConnection`'s `url`). Every variable is
 * optional.
 */
export const options: Config.Config<RuntimeOptions> = Config.all({
  queues: optional(Config.String("QUEUES")).pipe(
    Config.mapEffect((text) => text === undefined ? Effect.succeed(undefined) : parseQueues(text))
  ),
  prefix: optional(Config.String("PREFIX")),
  node: optional(Config.String("NODE")),
  deleteCompleted: variable("DELETE_COMPLETED", "a boolean (true or false)", booleanOf),
  pruner: variable("PRUNER", "a boolean (true or false)", booleanOf),
  threads: variable("THREADS", "an integer", integerOf),
  directUrl: optional(Config.Redacted("DIRECT_DATABASE_URL")).pipe(Config.mapEffect((url) =>
    url === undefined || isPostgresUrl(Redacted.value(url))
      ? Effect.succeed(url)
      // The value itself is not echoed: it may hold a password.
      : Effect.fail(configError("OBAN_DIRECT_DATABASE_URL is not a PostgreSQL URL (postgres://user@host:port/database)"))
  )),
  times: durations({
    pollInterval: "POLL_INTERVAL",
    stageInterval: "STAGE_INTERVAL",
    shutdownGracePeriod: "SHUTDOWN_GRACE_PERIOD",
    heartbeatInterval: "HEARTBEAT_INTERVAL",
    rescueAfter: "RESCUE_AFTER",
    prunerMaxAge: "PRUNER_MAX_AGE"
  })
}).pipe(
  Config.map(({ queues, prefix, node, deleteCompleted, pruner, threads, directUrl, times }): RuntimeOptions => {
    const { rescueAfter, prunerMaxAge, ...intervals } = times
    return {
      ...defined({ queues, prefix, node, deleteCompleted, ...intervals }),
      ...(rescueAfter === undefined ? {} : { rescuer: { rescueAfter } }),
      ...(threads === undefined ? {} : { threads: { size: threads } }),
      ...(directUrl === undefined ? {} : { directConnection: { url: directUrl } }),
      ...(pruner === false
        ? { pruner: false }
        : prunerMaxAge !== undefined
        ? { pruner: { maxAge: prunerMaxAge } }
        // Set to true, it turns pruning on over a `pruner: false` in code.
        : pruner === true
        ? { pruner: {} }
        : {})
    }
  }),
  Config.nested("OBAN")
)

/**
 * The options `read` from a configuration on top of those `given` in code: a
 * value read wins, a value given is the default. The queues read replace the
 * queues given (the node runs exactly those listed), each keeping what the
 * variable cannot express (its cluster-wide `global`, `partition` and `rate`
 * limits) from the same queue given in code. `pruner` read as `false` turns
 * pruning off and as on (`{}` or a max age) turns it on over a `false` given.
 */
export const configuredOver = (given: RuntimeOptions, read: RuntimeOptions): RuntimeOptions => ({
  ...given,
  ...read,
  queues: read.queues === undefined ? given.queues : queuesOver(given.queues, read.queues),
  rescuer: { ...given.rescuer, ...read.rescuer },
  threads: { ...given.threads, ...read.threads },
  pruner: read.pruner === false || given.pruner === false && read.pruner === undefined
    ? false
    : { ...(given.pruner === false ? {} : given.pruner), ...read.pruner }
})

const queuesOver = (
  given: RuntimeOptions["queues"],
  read: NonNullable<RuntimeOptions["queues"]>
): NonNullable<RuntimeOptions["queues"]> =>
  Object.fromEntries(Object.entries(read).map(([name, queue]) => {
    const code = given?.[name]
    // Only what the variable cannot express: its limit and pause are its own (no `:paused`, not paused).
    const kept = typeof code === "object" ? clusterLimitsOf(code) : {}
    return [name, typeof queue === "number" ? { ...kept, limit: queue } : { ...kept, ...queue }]
  }))

const clusterLimitsOf = (queue: QueueConfig): Partial<QueueConfig> =>
  defined({ global: queue.global, partition: queue.partition, rate: queue.rate })

/** The variables `options` reads, as written in the environment. */
export const variableNames: ReadonlyArray<string> = [
  "QUEUES",
  "PREFIX",
  "NODE",
  "POLL_INTERVAL",
  "STAGE_INTERVAL",
  "SHUTDOWN_GRACE_PERIOD",
  "HEARTBEAT_INTERVAL",
  "RESCUE_AFTER",
  "PRUNER_MAX_AGE",
  "DELETE_COMPLETED",
  "PRUNER",
  "THREADS",
  "DIRECT_DATABASE_URL"
].map((name) => `OBAN_${name}`)

/**
 * A line for each variable of `env` that is not one `options` reads but is a
 * near miss of one: a typo in a deployment's manifest is otherwise ignored,
 * and the code's value runs. Strict, so that an application's own `OBAN_`
 * variables (OBAN_PORT, OBAN_NODE_ENV, OBAN_DATABASE_URL) pass: one edit away
 * from a name of 5 or more letters after `OBAN_` (two from one of 9 or
 * more), or cut short at a `_` (OBAN_SHUTDOWN_GRACE).
 */
export const misspeltVariables = (env: Readonly<Record<string, string | undefined>>): ReadonlyArray<string> =>
  Object.keys(env).flatMap((name) => {
    if (!name.startsWith("OBAN_") || variableNames.includes(name)) return []
    const meant = variableNames.find((known) => nearMiss(name.slice(5), known.slice(5)))
    return meant === undefined
      ? []
      : [`the environment has ${name}, which effect-oban does not read: did you mean ${meant}?`]
  })

const nearMiss = (given: string, known: string): boolean =>
  known.startsWith(`${given}_`) ||
  (given.length >= 5 && known.length >= 5 && distance(given, known) <= (known.length >= 9 ? 2 : 1))
