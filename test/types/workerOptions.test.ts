/**
 * Type tests (checked by `npm run typecheck`; at run time they only call
 * expectTypeOf): a worker's error type comes from `perform` alone, and
 * inserts return jobs typed by their worker's args.
 */
import { describe, expectTypeOf, it } from "@effect/vitest"
import type { PgClient } from "@effect/sql-pg"
import { type Config, Context, Effect, Layer, Schema } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import { Cron, type InvalidConfigError, type InvalidPrefixError, type MigrationError, Oban, Worker } from "effect-oban"

class Refused extends Schema.TaggedError<Refused>()("Refused", { permanent: Schema.Boolean }) {}

describe("worker option types", () => {
  it("infers the error type from perform only, never from retryable", () => {
    const Last = Worker.make("RetryableLast", {
      args: Schema.Struct({ id: Schema.String }),
      perform: (job) => job.args.id === "" ? Effect.fail(new Refused({ permanent: true })) : Effect.void,
      retryable: (error) => !error.permanent
    })
    // Written before perform, retryable needs its parameter annotated (TypeScript types the
    // untyped callbacks of an object in order); the annotation does not change the worker's type.
    const First = Worker.make("RetryableFirst", {
      args: Schema.Struct({ id: Schema.String }),
      retryable: (error: Refused) => !error.permanent,
      perform: (job) => job.args.id === "" ? Effect.fail(new Refused({ permanent: true })) : Effect.void
    })
    // With the errors' schema given, no option's order matters and nothing needs annotating.
    const Declared = Worker.make("ErrorsDeclared", {
      args: Schema.Struct({ id: Schema.String }),
      errors: Refused,
      retryable: (error) => {
        expectTypeOf(error).toEqualTypeOf<Refused>()
        return !error.permanent
      },
      perform: (job) => job.args.id === "" ? Effect.fail(new Refused({ permanent: true })) : Effect.void
    })
    expectTypeOf(Last.retryable).toEqualTypeOf<((error: Refused) => boolean) | undefined>()
    expectTypeOf(First.retryable).toEqualTypeOf<((error: Refused) => boolean) | undefined>()
    expectTypeOf(Declared.retryable).toEqualTypeOf<((error: Refused) => boolean) | undefined>()
  })

  it("returns inserted jobs typed by their worker's args", () => {
    const Dated = Worker.make("Dated", {
      args: Schema.Struct({ at: Schema.Date, count: Schema.Number }),
      perform: () => Effect.void
    })
    const insert = Oban.insert(Dated.job({ at: new Date(0), count: 1 }))
    expectTypeOf<Effect.Success<typeof insert>["args"]>().toEqualTypeOf<{ readonly at: Date; readonly count: number }>()
    expectTypeOf<Effect.Success<typeof insert>["conflict"]>().toEqualTypeOf<boolean>()
    // insertAll: typed by the worker, a union for requests of several workers, from any iterable.
    const Named = Worker.make("Named", { args: Schema.Struct({ name: Schema.String }), perform: () => Effect.void })
    const same = Oban.insertAll([Dated.job({ at: new Date(0), count: 1 }), Dated.job({ at: new Date(1), count: 2 })])
    expectTypeOf<Effect.Success<typeof same>[number]["args"]>().toEqualTypeOf<
      { readonly at: Date; readonly count: number }
    >()
    const mixed = Oban.insertAll([Dated.job({ at: new Date(0), count: 1 }), Named.job({ name: "n" })])
    expectTypeOf<Effect.Success<typeof mixed>[number]["args"]>().toEqualTypeOf<
      { readonly at: Date; readonly count: number } | { readonly name: string }
    >()
    const generated = Oban.insertAll(new Set([Named.job({ name: "n" })]))
    expectTypeOf<Effect.Success<typeof generated>[number]["args"]>().toEqualTypeOf<{ readonly name: string }>()
    const untyped: ReadonlyArray<Worker.JobRequest> = []
    expectTypeOf<Effect.Success<ReturnType<typeof Oban.insertAll<Worker.JobRequest>>>[number]["args"]>()
      .toEqualTypeOf<unknown>()
    expectTypeOf(Oban.insertAll(untyped)).toEqualTypeOf<ReturnType<typeof Oban.insertAll<Worker.JobRequest>>>()
    // The running node's service types them the same way.
    const viaService = Effect.flatMap(Effect.service(Oban.Oban), (oban) =>
      Effect.all([oban.insert(Named.job({ name: "n" })), oban.insertAll([Named.job({ name: "m" })])]))
    expectTypeOf<Effect.Success<typeof viaService>[0]["args"]>().toEqualTypeOf<{ readonly name: string }>()
    expectTypeOf<Effect.Success<typeof viaService>[1][number]["args"]>().toEqualTypeOf<{ readonly name: string }>()
  })

  it("layerConfig adds ConfigError to the layer's errors and needs what its workers need", () => {
    class Mailer extends Context.Service<Mailer, { readonly send: Effect.Effect<void> }>()("types/Mailer") {}
    const Mail = Worker.make("TypedMail", {
      args: Schema.Struct({}),
      perform: () => Effect.flatMap(Effect.service(Mailer), (mailer) => mailer.send)
    })
    const live = Oban.layerConfig({ workers: [Mail] })
    expectTypeOf(live).toEqualTypeOf<
      Layer.Layer<
        Oban.Oban,
        Config.ConfigError | InvalidConfigError | InvalidPrefixError | MigrationError,
        PgClient.PgClient | SqlClient | Mailer
      >
    >()
  })

  it("threads needs a layer for the services perform needs, and then the node needs none", () => {
    class Store extends Context.Service<Store, { readonly get: Effect.Effect<number> }>()("types/Store") {}
    const Pure = Worker.make("TypedThreadPure", {
      args: Schema.Struct({ n: Schema.Number }),
      threads: { module: import.meta.url },
      perform: (job) => Effect.succeed(job.args.n * 2)
    })
    expectTypeOf(Pure.threads).toEqualTypeOf<{ readonly module: URL } | undefined>()
    Worker.make("TypedThreadNeedsStore", {
      args: Schema.Struct({}),
      // @ts-expect-error: the services would not cross to the thread
      threads: { module: import.meta.url },
      perform: () => Effect.flatMap(Effect.service(Store), (store) => store.get)
    })
    class Other extends Context.Service<Other, { readonly n: number }>()("types/Other") {}
    Worker.make("TypedThreadWrongLayer", {
      args: Schema.Struct({}),
      // @ts-expect-error: the layer does not provide Store
      threads: { module: import.meta.url, layer: Layer.succeed(Other, { n: 1 }) },
      perform: () => Effect.flatMap(Effect.service(Store), (store) => store.get)
    })
    const WithStore = Worker.make("TypedThreadWithStore", {
      args: Schema.Struct({}),
      threads: { module: import.meta.url, layer: Layer.succeed(Store, { get: Effect.succeed(1) }) },
      perform: () => Effect.flatMap(Effect.service(Store), (store) => store.get)
    })
    // Built in the thread: the worker, and so the node, needs nothing.
    expectTypeOf(WithStore.perform).returns.toEqualTypeOf<Effect.Effect<number, never, never>>()
    expectTypeOf<Worker.Requirements<typeof WithStore>>().toEqualTypeOf<never>()
  })

  it("a crontab entry takes no schedule and no unique option: the cron's own", () => {
    const Tick = Worker.make("TypedTick", { args: Schema.Struct({}), perform: () => Effect.void })
    Cron.entry("* * * * *", Tick, {}, { priority: 1, tags: ["t"], timezone: "Europe/Paris", name: "tick" })
    // @ts-expect-error: a slot's job is due at its slot
    Cron.entry("* * * * *", Tick, {}, { scheduleIn: "1 minute" })
    // @ts-expect-error: a slot's job is unique per slot
    Cron.entry("* * * * *", Tick, {}, { unique: { period: "1 hour" } })
  })

  it("a worker of any args, errors, services and result fits Worker.Worker with any, and keeps its own error type", () => {
    class Store extends Context.Service<Store, { readonly get: Effect.Effect<number> }>()("TypedAnyStore") {}
    const Plain = Worker.make("TypedAnyPlain", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })
    const Full = Worker.make("TypedAnyFull", {
      args: Schema.Struct({ userId: Schema.String }).pipe(Schema.encodeKeys({ userId: "user_id" })),
      errors: Refused,
      result: Schema.Number,
      retryable: (error) => !error.permanent,
      perform: () => Effect.flatMap(Effect.service(Store), (store) => store.get)
    })
    const all: ReadonlyArray<Worker.Worker<string, any, any, any, any>> = [Plain, Full]
    expectTypeOf(all).toEqualTypeOf<ReadonlyArray<Worker.Worker<string, any, any, any, any>>>()
    const failsWithNothing: Worker.Worker<"TypedAnyPlain", { readonly n: number }> = Plain
    expectTypeOf(failsWithNothing.name).toEqualTypeOf<"TypedAnyPlain">()
    // @ts-expect-error: Full fails with Refused, which a worker that fails with nothing does not
    const notNever: Worker.Worker<"TypedAnyFull", { readonly userId: string }, never, Store, number> = Full
    expectTypeOf(Full.retryable).toEqualTypeOf<((error: Refused) => boolean) | undefined>()
    void notNever
  })
})
