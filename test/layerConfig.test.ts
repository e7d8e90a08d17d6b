/**
 * Oban.layerConfig: a node's options from Effect's Config (the environment by
 * default), with typed errors naming the variable for bad values.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Logger, Redacted, References, Schema, Scope } from "effect"
import { Oban, Worker } from "effect-oban"
import { configuredOver, misspeltVariables, variableNames } from "../src/internal/envOptions.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { startProxy } from "./support/proxy.ts"

const Noop = Worker.make("EnvNoop", { args: Schema.Struct({}), perform: () => Effect.void })
const prefix = uniquePrefix("envcfg")

/** Builds `Oban.layerConfig` with these variables, runs `use` on the node, and stops it. */
const withEnv = <A, E>(env: Record<string, string>, use: (oban: Oban.ObanShape) => Effect.Effect<A, E>, given: Partial<Oban.LayerOptions<typeof Noop>> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const built = yield* Layer.buildWithScope(
      Oban.layerConfig({ workers: [Noop], ...given }).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { OBAN_PREFIX: prefix, ...env } })))
      ),
      scope
    ).pipe(Effect.exit)
    if (Exit.isFailure(built)) {
      yield* Scope.close(scope, Exit.void)
      return Exit.failCause(built.cause) as Exit.Exit<A, unknown>
    }
    const result = yield* Effect.exit(use(Context.get(built.value, Oban.Oban)))
    yield* Scope.close(scope, Exit.void)
    return result as Exit.Exit<A, unknown>
  })

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure === undefined || failure._tag !== "Fail") throw new Error("expected a typed failure")
  return failure.error as { readonly _tag: string; readonly message: string }
}

describe("Oban.layerConfig", () => {
  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("reads queues, node name and intervals from OBAN_ variables; code gives the defaults", () =>
      Effect.gen(function*() {
        const exit = yield* withEnv({
          // "constructor" was refused as "given twice": names were looked up on a plain object.
          OBAN_QUEUES: "default:3, mailers:7:paused, constructor:2",
          OBAN_NODE: "env-node",
          OBAN_SHUTDOWN_GRACE_PERIOD: "2 seconds"
        }, (oban) =>
          Effect.gen(function*() {
            yield* oban.ready
            return [
              oban.node,
              yield* oban.checkQueue("default"),
              yield* oban.checkQueue("mailers"),
              yield* oban.checkQueue("constructor")
            ] as const
          }), { node: "code-node", pollInterval: "2 seconds" })
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        if (Exit.isSuccess(exit)) {
          const [node, plain, mailers, named] = exit.value
          assert.strictEqual(node, "env-node")
          assert.deepStrictEqual([plain.limit, plain.paused], [3, false])
          assert.deepStrictEqual([mailers.limit, mailers.paused], [7, true])
          assert.strictEqual(named.limit, 2)
        }
      }))

    it.effect("fails with ConfigError naming the variable for a bad value, before starting anything", () =>
      Effect.gen(function*() {
        const queues = failureOf(yield* withEnv({ OBAN_QUEUES: "default:ten" }, () => Effect.void))
        assert.strictEqual(queues._tag, "ConfigError")
        assert.match(queues.message, /OBAN_QUEUES: "default:ten"/)
        const poll = failureOf(yield* withEnv({ OBAN_POLL_INTERVAL: "soon" }, () => Effect.void))
        assert.strictEqual(poll._tag, "ConfigError")
        // The variable as it is written, and the value (Effect's own reader gives a path of pieces).
        assert.include(poll.message, `OBAN_POLL_INTERVAL: "soon" is not a duration`)
        const grace = failureOf(yield* withEnv({ OBAN_SHUTDOWN_GRACE_PERIOD: "5" }, () => Effect.void))
        assert.include(grace.message, `OBAN_SHUTDOWN_GRACE_PERIOD: "5" is not a duration`)
        const flag = failureOf(yield* withEnv({ OBAN_DELETE_COMPLETED: "maybe" }, () => Effect.void))
        assert.include(flag.message, `OBAN_DELETE_COMPLETED: "maybe" is not a boolean`)
        const twice = failureOf(yield* withEnv({ OBAN_QUEUES: "a:1,a:2" }, () => Effect.void))
        assert.match(twice.message, /given twice/)
        // A well-formed value that the node refuses is the node's own typed error.
        const zero = failureOf(yield* withEnv({ OBAN_QUEUES: "default:0" }, () => Effect.void))
        assert.strictEqual(zero._tag, "InvalidConfigError")
        const threads = failureOf(yield* withEnv({ OBAN_THREADS: "some" }, () => Effect.void))
        assert.strictEqual(threads._tag, "ConfigError")
        assert.include(threads.message, `OBAN_THREADS: "some" is not an integer`)
        // What Effect's own integer reader took still reads: "+5" is 5 threads, not a bad value.
        const plus = yield* withEnv({ OBAN_THREADS: "+5", OBAN_PRUNER: "No" }, () => Effect.void)
        assert.isTrue(Exit.isSuccess(plus))
        const noThreads = failureOf(yield* withEnv({ OBAN_THREADS: "0" }, () => Effect.void))
        assert.deepStrictEqual([noThreads._tag, (noThreads as { field?: string }).field], ["InvalidConfigError", "threads.size"])
      }))

    it.effect("OBAN_DIRECT_DATABASE_URL takes the node's own connections (LISTEN, heartbeats) there; a bad address is refused without being shown", () =>
      Effect.gen(function*() {
        const bad = failureOf(yield* withEnv({ OBAN_DIRECT_DATABASE_URL: "db.internal:5432" }, () => Effect.void))
        assert.strictEqual(bad._tag, "ConfigError")
        assert.include(bad.message, "OBAN_DIRECT_DATABASE_URL is not a PostgreSQL URL")
        assert.notInclude(bad.message, "db.internal")
        const inCode = failureOf(
          yield* withEnv({}, () => Effect.void, { directConnection: { url: Redacted.make("db.internal:5432") } })
        )
        assert.deepStrictEqual([inCode._tag, (inCode as { field?: string }).field], ["InvalidConfigError", "directConnection.url"])
        assert.notInclude(inCode.message, "db.internal")
        // Credentials alone would send the node's own connections to localhost: it needs an address.
        const noAddress = failureOf(yield* withEnv({}, () => Effect.void, { directConnection: { username: "app" } }))
        assert.deepStrictEqual([noAddress._tag, (noAddress as { field?: string }).field], ["InvalidConfigError", "directConnection"])
        // Through a proxy of its own: the node's LISTEN and heartbeat connections are the ones it sees.
        const proxy = yield* startProxy(databaseUrl())
        const exit = yield* withEnv({ OBAN_DIRECT_DATABASE_URL: proxy.url }, (oban) =>
          Effect.andThen(oban.ready, Effect.sleep("500 millis")))
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        assert.strictEqual(yield* proxy.accepted, 2)
      }).pipe(Effect.scoped))

    it.effect("a near miss of a variable's name in the process's environment is a warning at start", () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const capture = Logger.make(({ message }) => {
          lines.push(Array.isArray(message) ? message.join(" ") : String(message))
        })
        process.env["OBAN_QUEUS"] = "fast:2"
        const exit = yield* withEnv({}, (oban) => oban.ready).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
          // The suite logs errors only; this warning is captured whatever the level.
          Effect.provideService(References.MinimumLogLevel, "All"),
          Effect.ensuring(Effect.sync(() => delete process.env["OBAN_QUEUS"]))
        )
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        assert.include(lines, "the environment has OBAN_QUEUS, which effect-oban does not read: did you mean OBAN_QUEUES?")
      }))

    it.effect("OBAN_QUEUES=none runs no queue over the code's; an empty OBAN_QUEUES is unset and keeps them", () =>
      Effect.gen(function*() {
        const queueOf = (env: Record<string, string>) =>
          withEnv(env, (oban) => Effect.andThen(oban.ready, Effect.exit(oban.checkQueue("default"))), { queues: { default: 2 } })
        const none = yield* queueOf({ OBAN_QUEUES: " None " })
        assert.isTrue(Exit.isSuccess(none), String(none))
        if (Exit.isSuccess(none)) assert.strictEqual(Exit.isFailure(none.value) && failureOf(none.value)._tag, "UnknownQueueError")
        const empty = yield* queueOf({ OBAN_QUEUES: "" })
        assert.isTrue(Exit.isSuccess(empty) && Exit.isSuccess(empty.value), String(empty))
        if (Exit.isSuccess(empty) && Exit.isSuccess(empty.value)) assert.strictEqual(empty.value.value.limit, 2)
        // `none` is a word of its own, not a queue: beside others, it is refused.
        const mixed = failureOf(yield* withEnv({ OBAN_QUEUES: "none,default:1" }, () => Effect.void))
        assert.match(mixed.message, /OBAN_QUEUES: "none" is not name:limit .*nor none \(no queue\)/)
        // Only commas and spaces say neither: refused, not read as no queue.
        const commas = failureOf(yield* withEnv({ OBAN_QUEUES: " , " }, () => Effect.void))
        assert.match(commas.message, /OBAN_QUEUES: " , " names no queue; write none for a node that runs no queue/)
      }))

    it.effect("OBAN_QUEUES names the queues and their limits; each keeps the cluster-wide limits given in code", () =>
      Effect.gen(function*() {
        const exit = yield* withEnv({ OBAN_QUEUES: "exports:20,default:4" }, (oban) =>
          Effect.gen(function*() {
            yield* oban.ready
            const exports = yield* oban.checkQueue("exports")
            const other = yield* Effect.flip(oban.checkQueue("other"))
            return [exports, other._tag] as const
          }), {
          queues: { exports: { limit: 10, global: 2, rate: { limit: 5, period: "1 minute" } }, other: 3 }
        })
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        if (Exit.isSuccess(exit)) {
          const [exports, other] = exit.value
          assert.strictEqual(exports.limit, 20)
          // Before, the variable's queues replaced the code's whole: no cluster-wide limit was left.
          assert.deepInclude(exports.cluster, { global: 2 })
          assert.strictEqual(exports.cluster?.rate?.limit, 5)
          assert.strictEqual(other, "UnknownQueueError")
        }
      }))
  })
})

describe("misspeltVariables", () => {
  it("knows exactly the variables Oban.config reads", () => {
    // A provider that has nothing and notes each path asked for: the variables `options` reads.
    const asked = new Set<string>()
    const recording = ConfigProvider.make((path) => {
      asked.add(path.join("_"))
      return Effect.succeed(undefined)
    })
    Effect.runSync(Effect.provide(
      Effect.gen(function*() {
        return yield* Oban.config
      }),
      ConfigProvider.layer(recording)
    ))
    assert.deepStrictEqual([...asked].sort(), [...variableNames].sort())
  })


  it("names a near miss of a variable's name with the one meant, and leaves an application's own OBAN_ variables alone", () => {
    const ownOfAnApplication = [
      "OBAN_PORT", "OBAN_HOST", "OBAN_MODE", "OBAN_NAME", "OBAN_ROLE", "OBAN_CODE", "OBAN_INDEX", "OBAN_NODES",
      "OBAN_NODE_ENV", "OBAN_NODE_NAME", "OBAN_NODE_ID", "OBAN_USER", "OBAN_PEER", "OBAN_PAUSED",
      "OBAN_QUEUES_MAILERS", "OBAN_QUEUES_FILE", "OBAN_QUEUE_NAME", "OBAN_PRUNER_INTERVAL", "OBAN_DELETE_AFTER",
      "OBAN_PREFIX_PATH", "OBAN_THREADS_MAX", "OBAN_LOG_LEVEL", "OBAN_DATABASE_URL", "OBAN_POOL_SIZE",
      "OBAN_DASHBOARD_TOKEN", "OBAN_TEST_LOG", "OBAN_TEST_REPORT", "oban_queues"
    ]
    assert.deepStrictEqual(
      misspeltVariables({
        ...Object.fromEntries(ownOfAnApplication.map((name) => [name, "x"])),
        OBAN_QUEUE: "fast:2",
        OBAN_SHUTDOWN_GRACE: "5 seconds",
        OBAN_HEARTBEAT_INTERVALL: "1 second",
        OBAN_QUEUES: "default:1",
        PATH: "/bin"
      }),
      [
        "the environment has OBAN_QUEUE, which effect-oban does not read: did you mean OBAN_QUEUES?",
        "the environment has OBAN_SHUTDOWN_GRACE, which effect-oban does not read: did you mean OBAN_SHUTDOWN_GRACE_PERIOD?",
        "the environment has OBAN_HEARTBEAT_INTERVALL, which effect-oban does not read: did you mean OBAN_HEARTBEAT_INTERVAL?"
      ]
    )
  })
})

describe("configuredOver", () => {
  it("reads OBAN_PRUNER=true as pruning on, over pruner: false in code", () => {
    const read = Effect.runSync(Effect.provide(
      Effect.gen(function*() {
        return yield* Oban.config
      }),
      ConfigProvider.layer(ConfigProvider.fromEnv({ env: { OBAN_PRUNER: "true" } }))
    ))
    assert.deepStrictEqual(read.pruner, {})
    assert.deepStrictEqual(configuredOver({ pruner: false }, read).pruner, {})
    assert.deepStrictEqual(configuredOver({ pruner: { maxAge: "1 hour" } }, read).pruner, { maxAge: "1 hour" })
    assert.strictEqual(configuredOver({ pruner: false }, {}).pruner, false)
    assert.strictEqual(configuredOver({ pruner: { maxAge: "1 hour" } }, { pruner: false }).pruner, false)
  })

  it("a queue from OBAN_QUEUES keeps only the code's cluster-wide limits: its limit and pause are the variable's", () => {
    const given = { queues: { media: { limit: 5, paused: true, global: 2 }, other: 3 } }
    assert.deepStrictEqual(configuredOver(given, { queues: { media: { limit: 8 } } }).queues, { media: { limit: 8, global: 2 } })
    assert.deepStrictEqual(configuredOver(given, { queues: { media: { limit: 8, paused: true }, other: { limit: 1 } } }).queues, {
      media: { limit: 8, paused: true, global: 2 },
      other: { limit: 1 }
    })
  })
})
