/**
 * Validates the configuration of `Oban.layer` and fills in defaults.
 */
import { Duration, Effect, Option, Schema } from "effect"
import { hostname } from "node:os"
import * as Config from "../Config.ts"
import { InvalidConfigError, type InvalidPrefixError } from "../Errors.ts"
import * as Stager from "../Stager.ts"

const Limit = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 10_000 }))

const QueueSpec = Schema.Union([
  Limit,
  Schema.Struct({ limit: Limit, paused: Schema.optional(Schema.Boolean) })
])

const Queues = Schema.Record(Schema.String, QueueSpec)

const Node = Schema.String.check(Schema.isBetweenLength(1, 255))

export interface QueueConfig {
  readonly limit: number
  readonly paused?: boolean | undefined
}

export interface ResolvedConfig {
  readonly prefix: string
  readonly node: string
  readonly maxArgsBytes: number
  readonly queues: ReadonlyArray<{ readonly name: string; readonly limit: number; readonly paused: boolean }>
  readonly pollInterval: Duration.Duration
  readonly stageInterval: Duration.Duration
  readonly shutdownGracePeriod: Duration.Duration
}

export interface RuntimeOptions {
  readonly queues?: Readonly<Record<string, number | QueueConfig>> | undefined
  readonly prefix?: string | undefined
  readonly node?: string | undefined
  readonly pollInterval?: Duration.Input | undefined
  readonly stageInterval?: Duration.Input | undefined
  readonly shutdownGracePeriod?: Duration.Input | undefined
  readonly maxArgsBytes?: number | undefined
}

/** A name unique to this process: host, pid and a random part. */
export const defaultNode = (): string =>
  `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

const duration = (
  field: string,
  input: Duration.Input | undefined,
  fallback: Duration.Duration,
  minimum: Duration.Duration
): Effect.Effect<Duration.Duration, InvalidConfigError> => {
  if (input === undefined) return Effect.succeed(fallback)
  const parsed = Duration.fromInput(input)
  if (Option.isNone(parsed) || !Duration.isFinite(parsed.value) || Duration.isLessThan(parsed.value, minimum)) {
    return Effect.fail(
      new InvalidConfigError({
        field,
        message: `${field} must be a finite duration of at least ${Duration.format(minimum)}, got ${String(input)}`
      })
    )
  }
  return Effect.succeed(parsed.value)
}

const decodeOrFail = <S extends Schema.Codec<any, any>>(field: string, schema: S, input: unknown) =>
  Schema.decodeUnknownEffect(schema)(input).pipe(
    Effect.mapError((error) => new InvalidConfigError({ field, message: `${field}: ${error.message}` }))
  )

export const resolve = (
  options: RuntimeOptions
): Effect.Effect<ResolvedConfig, InvalidConfigError | InvalidPrefixError> =>
  Effect.gen(function*() {
    const settings = yield* Config.make({
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.maxArgsBytes === undefined ? {} : { maxArgsBytes: options.maxArgsBytes })
    })
    const queues = yield* decodeOrFail("queues", Queues, options.queues ?? {})
    const badName = Object.keys(queues).find((name) => name.length === 0 || name.length > 128)
    if (badName !== undefined) {
      return yield* new InvalidConfigError({
        field: "queues",
        message: `queue names must be 1 to 128 characters, got ${JSON.stringify(badName)}`
      })
    }
    const node = options.node === undefined ? defaultNode() : yield* decodeOrFail("node", Node, options.node)
    return {
      prefix: settings.prefix,
      maxArgsBytes: settings.maxArgsBytes,
      node,
      queues: Object.entries(queues).map(([name, spec]) =>
        typeof spec === "number"
          ? { name, limit: spec, paused: false }
          : { name, limit: spec.limit, paused: spec.paused ?? false }
      ),
      pollInterval: yield* duration("pollInterval", options.pollInterval, Duration.seconds(1), Duration.millis(10)),
      stageInterval: yield* duration("stageInterval", options.stageInterval, Stager.defaults.interval, Duration.millis(10)),
      shutdownGracePeriod: yield* duration(
        "shutdownGracePeriod",
        options.shutdownGracePeriod,
        Duration.seconds(15),
        Duration.zero
      )
    }
  })
