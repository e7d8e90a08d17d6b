/**
 * Validates the configuration of `Oban.layer` and fills in defaults.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { availableParallelism, hostname } from "node:os"
import * as Config from "../Config.ts"
import { InvalidConfigError, type InvalidPrefixError } from "../Errors.ts"
import * as Cron from "../Cron.ts"
import * as Leader from "../Leader.ts"
import * as Pruner from "../Pruner.ts"
import * as Rescuer from "../Rescuer.ts"
import * as Stager from "../Stager.ts"
import type { ThreadPoolOptions } from "./threads/pool.ts"
import { defaultNice } from "./threads/priority.ts"
import { hasLimitFields, type LimitsInput, type QueueLimits, resolveLimits } from "./queueLimits.ts"
import { checkNodeName, checkQueueName } from "./queueName.ts"
import { duration, oneOf, positiveInt } from "./optionChecks.ts"
import { checkKeys } from "./optionKeys.ts"
import { type DirectConnection, directConnectionKeys, isPostgresUrl } from "./directConnection.ts"
import { defaultHeartbeatInterval } from "./liveness.ts"

const Limit = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 10_000 }))

const QueueSpec = Schema.Union([
  Limit,
  Schema.Struct({
    limit: Limit,
    paused: Schema.optional(Schema.Boolean),
    // Checked by resolveLimits.
    global: Schema.optional(Schema.Unknown),
    partition: Schema.optional(Schema.Unknown),
    rate: Schema.optional(Schema.Unknown)
  })
])

const Queues = Schema.Record(Schema.String, QueueSpec)

/** The options of a queue given as an object. */
const queueOptionKeys = ["limit", "paused", "global", "partition", "rate"]


/**
 * A queue in `Oban.layer`: its local `limit` (jobs this node runs at once),
 * and optionally cluster-wide limits (see docs/limits.md): `global` (jobs
 * executing at once across all nodes, per partition with `partition`) and
 * `rate` (jobs started per fixed window). A node whose config gives any of
 * these writes them to the database at start; a node whose config gives none
 * follows the limits stored there.
 */
export interface QueueConfig extends LimitsInput {
  readonly limit: number
  readonly paused?: boolean | undefined
}

export interface ResolvedQueue {
  readonly name: string
  readonly limit: number
  readonly paused: boolean
  /** Cluster-wide limits to write at start; none: follow the stored ones. */
  readonly limits: QueueLimits | undefined
}

export interface ResolvedConfig {
  readonly prefix: string
  readonly node: string
  readonly maxArgsBytes: number
  readonly queues: ReadonlyArray<ResolvedQueue>
  readonly pollInterval: Duration.Duration
  readonly stageInterval: Duration.Duration
  readonly shutdownGracePeriod: Duration.Duration
  readonly deleteCompleted: boolean
  readonly heartbeatInterval: Duration.Duration
  readonly leader: Leader.Config
  readonly rescuer: Rescuer.Config
  readonly pruner: Pruner.Config | false
  readonly crontab: ReadonlyArray<Cron.Entry>
  readonly threads: ThreadPoolOptions
  readonly directConnection: DirectConnection | undefined
}

export interface RuntimeOptions {
  readonly queues?: Readonly<Record<string, number | QueueConfig>> | undefined
  /** The schema with the tables. Default: the `ObanConfig.Settings` provided, else `public`. */
  readonly prefix?: string | undefined
  readonly node?: string | undefined
  readonly pollInterval?: Duration.Input | undefined
  readonly stageInterval?: Duration.Input | undefined
  readonly shutdownGracePeriod?: Duration.Input | undefined
  /**
   * Delete a job when it completes, in the statement that would mark it
   * `completed`, instead of keeping it for the pruner. Faster (a delete is far
   * cheaper for PostgreSQL than writing a new row version), but completed jobs
   * can no longer be looked up, listed or counted. Failed, cancelled and
   * discarded jobs are kept as always, and so are completed jobs whose row
   * still matters: those holding their unique key (cron slots among them),
   * those that recorded a result, and those whose cancel was requested.
   * Default false.
   */
  readonly deleteCompleted?: boolean | undefined
  readonly maxArgsBytes?: number | undefined
  /**
   * A direct address (a `url`, or `host`, `port`, ...) for the node's own two connections: LISTEN,
   * and heartbeats with the leader lease. For a pool whose connections go through a pooler in
   * transaction mode (PgBouncer, Supavisor, RDS Proxy): a pooler cannot carry LISTEN, and heartbeats
   * queued behind its saturated pool would make a live node look dead. It replaces the client's
   * address and credentials for those two connections. Default: the client's.
   */
  readonly directConnection?: DirectConnection | undefined
  /** How often each producer refreshes its row in `oban_producers`. Default 10 s. */
  readonly heartbeatInterval?: Duration.Input | undefined
  /** The leader lease: `ttl` (default 30 s) and `renewInterval` (default 15 s). */
  readonly leader?: { readonly ttl?: Duration.Input | undefined; readonly renewInterval?: Duration.Input | undefined } | undefined
  /**
   * Orphan rescue: `rescueAfter` (default 60 s), `interval` (default 15 s), and `forgetAfter`
   * (default 24 h), how long a dead producer's row is kept for its node to take back.
   */
  readonly rescuer?: {
    readonly rescueAfter?: Duration.Input | undefined
    readonly interval?: Duration.Input | undefined
    readonly batchSize?: number | undefined
    readonly forgetAfter?: Duration.Input | undefined
  } | undefined
  /** Pruning of finished jobs (default: older than 5 minutes, every 10 s); `false` turns it off. */
  readonly pruner?: false | {
    readonly maxAge?: Duration.Input | undefined
    readonly interval?: Duration.Input | undefined
    readonly batchSize?: number | undefined
    readonly maxBatches?: number | undefined
  } | undefined
  /** Jobs inserted on cron schedules by the holder of the cron lease; build entries with `Cron.entry`. */
  readonly crontab?: ReadonlyArray<Cron.Entry> | undefined
  /**
   * The node's pool of worker threads, for the workers defined with
   * `threads` (none started without them): `size` (default: one per
   * core), `resourceLimits` per thread (e.g.
   * `{ maxOldGenerationSizeMb: 512 }`), `recycleAfter` (replace a thread
   * after this many attempts), `isolation` (`"process"` for child processes),
   * `nice` (their scheduling priority, 0-19, default 10: the node's own loop
   * runs first; never below the node's own; per thread on Linux only, per
   * process everywhere).
   */
  readonly threads?: {
    readonly size?: number | undefined
    readonly resourceLimits?: ThreadPoolOptions["resourceLimits"]
    readonly recycleAfter?: number | undefined
    readonly isolation?: "thread" | "process" | undefined
    readonly nice?: number | undefined
  } | undefined
}

/** Every option `RuntimeOptions` has (the compiler keeps this list whole), and those of its parts. */
const runtimeOptionKeys: { readonly [K in keyof Required<RuntimeOptions>]: true } = {
  queues: true,
  prefix: true,
  node: true,
  pollInterval: true,
  stageInterval: true,
  shutdownGracePeriod: true,
  deleteCompleted: true,
  maxArgsBytes: true,
  heartbeatInterval: true,
  leader: true,
  rescuer: true,
  pruner: true,
  crontab: true,
  threads: true,
  directConnection: true
}
/** What `Oban.layer` and `Oban.layerConfig` take besides. */
const layerOnlyKeys = ["workers", "config"]
const partKeys: ReadonlyArray<readonly [keyof RuntimeOptions, ReadonlyArray<string>]> = [
  ["leader", ["ttl", "renewInterval"]],
  ["rescuer", ["rescueAfter", "interval", "batchSize", "forgetAfter"]],
  ["pruner", ["maxAge", "interval", "batchSize", "maxBatches"]],
  ["threads", ["size", "resourceLimits", "recycleAfter", "isolation", "nice"]],
  ["directConnection", directConnectionKeys]
]

/** A direct address whose `url` is no PostgreSQL URL would fail only later, at every connection attempt. */
const checkDirectConnection = (
  direct: DirectConnection | undefined
): Effect.Effect<DirectConnection | undefined, InvalidConfigError> => {
  if (direct === undefined) return Effect.succeed(undefined)
  // It replaces the client's whole address: without one of its own, the node would go to localhost.
  if (direct.url === undefined && direct.host === undefined && direct.path === undefined) {
    return Effect.fail(
      new InvalidConfigError({
        field: "directConnection",
        message: "directConnection needs an address: a url, a host or a path (it replaces the client's address and credentials)"
      })
    )
  }
  return direct.url === undefined || (Redacted.isRedacted(direct.url) && isPostgresUrl(Redacted.value(direct.url)))
    ? Effect.succeed(direct)
    : Effect.fail(
      new InvalidConfigError({
        field: "directConnection.url",
        // The value itself is not shown: it may hold a password.
        message: "directConnection.url must be a Redacted PostgreSQL URL (postgres://user@host:port/database)"
      })
    )
}

/** Refuses options no one reads, at the top and in each part (a queue's are checked with the queues). */
const checkOptionKeys = (options: RuntimeOptions): Effect.Effect<void, InvalidConfigError> =>
  Effect.gen(function*() {
    yield* checkKeys("", options, [...Object.keys(runtimeOptionKeys), ...layerOnlyKeys])
    for (const [part, keys] of partKeys) yield* checkKeys(part, options[part], keys)
  })

/** A name unique to this process: host, pid and a random part. */
export const defaultNode = (): string =>
  `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

const ensure = (condition: boolean, field: string, message: string) =>
  condition ? Effect.void : Effect.fail(new InvalidConfigError({ field, message }))

const decodeOrFail = <S extends Schema.Codec<any, any>>(field: string, schema: S, input: unknown) =>
  // A key the schema does not have is refused: `{ limit: 5, pausd: true }` would start the queue unpaused.
  Schema.decodeUnknownEffect(schema)(input, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => new InvalidConfigError({ field, message: `${field}: ${error.message}` }))
  )

/**
 * The `queues` option, decoded queue by queue so that a misspelt option (named
 * with the one meant, before the schema refuses it) or a bad limit names its
 * queue (`queues.fast: Expected ...`). Only a missing `queues` means none:
 * `null` (from JSON, say) or an array is refused as a whole.
 */
const decodeQueues = (given: unknown): Effect.Effect<typeof Queues.Type, InvalidConfigError> =>
  Effect.gen(function*() {
    if (given === undefined) return {}
    if (typeof given !== "object" || given === null || Array.isArray(given)) return yield* decodeOrFail("queues", Queues, given)
    const decoded: Array<readonly [string, typeof QueueSpec.Type]> = []
    for (const [name, spec] of Object.entries(given)) {
      yield* checkKeys(`queues.${name}`, spec, queueOptionKeys)
      decoded.push([name, yield* decodeOrFail(`queues.${name}`, QueueSpec, spec)])
    }
    // Defined as own properties: a queue may be named "__proto__".
    return Object.fromEntries(decoded)
  })

const ResourceLimits = Schema.Struct({
  maxOldGenerationSizeMb: Schema.optional(Schema.Finite.check(Schema.isGreaterThan(0))),
  maxYoungGenerationSizeMb: Schema.optional(Schema.Finite.check(Schema.isGreaterThan(0))),
  codeRangeSizeMb: Schema.optional(Schema.Finite.check(Schema.isGreaterThan(0))),
  stackSizeMb: Schema.optional(Schema.Finite.check(Schema.isGreaterThan(0)))
})

const maxThreads = 256

/**
 * The default pool: one thread per core. The threads run at a lower priority
 * than the node (`threads.nice`), so its own loop needs no core kept for it.
 */
export const defaultThreads = (): number => availableParallelism()

/** Checks a node's `threads` options and fills in the defaults. */
export const resolveThreads = (input: RuntimeOptions["threads"]): Effect.Effect<ThreadPoolOptions, InvalidConfigError> =>
  Effect.gen(function*() {
    if (input === undefined) return { size: defaultThreads() }
    yield* ensure(typeof input === "object" && input !== null, "threads", "threads must be an object")
    const size = yield* positiveInt("threads.size", input.size, defaultThreads())
    yield* ensure(size <= maxThreads, "threads.size", `threads.size must be at most ${maxThreads}, got ${size}`)
    const recycleAfter = input.recycleAfter === undefined
      ? undefined
      : yield* positiveInt("threads.recycleAfter", input.recycleAfter, 1)
    yield* oneOf("threads.isolation", input.isolation, ["thread", "process"])
    const resourceLimits = input.resourceLimits === undefined
      ? undefined
      : yield* decodeOrFail("threads.resourceLimits", ResourceLimits, input.resourceLimits)
    const nice = input.nice ?? defaultNice
    yield* ensure(
      Number.isSafeInteger(nice) && nice >= 0 && nice <= 19,
      "threads.nice",
      `threads.nice must be an integer from 0 to 19, got ${String(input.nice)}`
    )
    return { size, resourceLimits, recycleAfter, isolation: input.isolation, nice }
  })

export const resolve = (
  options: RuntimeOptions
): Effect.Effect<ResolvedConfig, InvalidConfigError | InvalidPrefixError> =>
  Effect.gen(function*() {
    yield* checkOptionKeys(options)
    const settings = yield* Config.resolve({ prefix: options.prefix, maxArgsBytes: options.maxArgsBytes })
    const queues = yield* decodeQueues(options.queues)
    for (const name of Object.keys(queues)) yield* checkQueueName("queues", name)
    const node = options.node === undefined ? defaultNode() : yield* checkNodeName(options.node)
    const ms = Duration.millis(10)
    const heartbeatInterval = yield* duration("heartbeatInterval", options.heartbeatInterval, defaultHeartbeatInterval, ms)
    const leader: Leader.Config = {
      ttl: yield* duration("leader.ttl", options.leader?.ttl, Leader.defaults.ttl, ms),
      renewInterval: yield* duration("leader.renewInterval", options.leader?.renewInterval, Leader.defaults.renewInterval, ms)
    }
    yield* ensure(
      Duration.isLessThan(leader.renewInterval, leader.ttl),
      "leader.renewInterval",
      "leader.renewInterval must be shorter than leader.ttl"
    )
    const rescuer: Rescuer.Config = {
      rescueAfter: yield* duration("rescuer.rescueAfter", options.rescuer?.rescueAfter, Rescuer.defaults.rescueAfter, ms),
      interval: yield* duration("rescuer.interval", options.rescuer?.interval, Rescuer.defaults.interval, ms),
      batchSize: yield* positiveInt("rescuer.batchSize", options.rescuer?.batchSize, Rescuer.defaults.batchSize),
      forgetAfter: yield* duration("rescuer.forgetAfter", options.rescuer?.forgetAfter, Rescuer.defaults.forgetAfter, Duration.zero)
    }
    yield* ensure(
      Duration.isLessThan(heartbeatInterval, rescuer.rescueAfter),
      "heartbeatInterval",
      `heartbeatInterval (${Duration.format(heartbeatInterval)}) must be shorter than rescuer.rescueAfter ` +
        `(${Duration.format(rescuer.rescueAfter)}), or live producers would look dead ` +
        "(set in code, or by OBAN_HEARTBEAT_INTERVAL and OBAN_RESCUE_AFTER with Oban.layerConfig)"
    )
    const pruner: Pruner.Config | false = options.pruner === false ? false : {
      maxAge: yield* duration("pruner.maxAge", options.pruner?.maxAge, Pruner.defaults.maxAge, Duration.zero),
      interval: yield* duration("pruner.interval", options.pruner?.interval, Pruner.defaults.interval, ms),
      batchSize: yield* positiveInt("pruner.batchSize", options.pruner?.batchSize, Pruner.defaults.batchSize),
      maxBatches: yield* positiveInt("pruner.maxBatches", options.pruner?.maxBatches, Pruner.defaults.maxBatches)
    }
    // A new leader inserts the slots of the last minute that have no row; a slot whose finished row
    // the pruner removed sooner would run again.
    yield* ensure(
      pruner === false || (options.crontab ?? []).length === 0 || !Duration.isLessThan(pruner.maxAge, Cron.defaults.catchUp),
      "pruner.maxAge",
      `pruner.maxAge must be at least ${Duration.format(Cron.defaults.catchUp)} when the node has a crontab: a new leader looks back that far for missed slots, and a slot whose job was pruned sooner would run twice`
    )
    // A crashed node's cron lease passes on when it expires; the slots in between must still be in
    // the new holder's look back, with time to spare for the takeover itself.
    const longestCronTtl = Duration.subtract(Cron.defaults.catchUp, Duration.seconds(10))
    yield* ensure(
      (options.crontab ?? []).length === 0 || !Duration.isGreaterThan(leader.ttl, longestCronTtl),
      "leader.ttl",
      `leader.ttl must be at most ${Duration.format(longestCronTtl)} when the node has a crontab: after a crash the next node takes over when the lease expires and looks back ${Duration.format(Cron.defaults.catchUp)} for missed slots, so the slots of a longer lease would be lost`
    )
    return {
      heartbeatInterval,
      leader,
      rescuer,
      pruner,
      crontab: options.crontab ?? [],
      threads: yield* resolveThreads(options.threads),
      directConnection: yield* checkDirectConnection(options.directConnection),
      prefix: settings.prefix,
      maxArgsBytes: settings.maxArgsBytes,
      node,
      queues: yield* Effect.forEach(Object.entries(queues), ([name, spec]) =>
        typeof spec === "number"
          ? Effect.succeed({ name, limit: spec, paused: false, limits: undefined })
          : Effect.map(
            hasLimitFields(spec as LimitsInput)
              ? resolveLimits(`queues.${name}`, spec as LimitsInput)
              : Effect.succeed(undefined),
            (limits) => ({ name, limit: spec.limit, paused: spec.paused ?? false, limits })
          )),
      pollInterval: yield* duration("pollInterval", options.pollInterval, Duration.seconds(1), Duration.millis(10)),
      stageInterval: yield* duration("stageInterval", options.stageInterval, Stager.defaults.interval, Duration.millis(10)),
      deleteCompleted: options.deleteCompleted ?? false,
      shutdownGracePeriod: yield* duration(
        "shutdownGracePeriod",
        options.shutdownGracePeriod,
        Duration.seconds(15),
        Duration.zero
      )
    }
  })
