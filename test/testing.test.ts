/**
 * The testing kit as a user would use it: imported from the subpath, on
 * TestClock, against real PostgreSQL.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Logger, Random, Ref, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Backoff, InvalidResultError, Migrations, Oban, ObanConfig, Stager, Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { dropSchemaOnClose, pgLayer, uniquePrefix } from "./support/db.ts"

class Declined extends Schema.TaggedError<Declined>()("Declined", { message: Schema.String }) {}

const sent = Ref.makeUnsafe<ReadonlyArray<string>>([])

const SendEmail = Worker.make("SendEmail", {
  args: Schema.Struct({ to: Schema.String }),
  queue: "mailers",
  perform: (job) => Ref.update(sent, (all) => [...all, job.args.to])
})

const Charge = Worker.make("Charge", {
  args: Schema.Struct({ amount: Schema.Int }),
  maxAttempts: 3,
  perform: (job): Effect.Effect<void, Declined | Worker.Snooze | Worker.Discard> =>
    job.args.amount > 100
      ? Effect.fail(new Declined({ message: "too much" }))
      : job.args.amount < 0
      ? Worker.discard("negative amount")
      : job.args.amount === 0
      ? Worker.snooze("1 minute")
      : Effect.void
})

const Slow = Worker.make("Slow", {
  args: Schema.Struct({}),
  timeout: "30 seconds",
  perform: () => Effect.sleep("1 minute")
})

/** Args that are not their JSON: a Date stored as text. */
const Remind = Worker.make("Remind", {
  args: Schema.Struct({ at: Schema.Date, note: Schema.String }),
  perform: () => Effect.void
})

/** A signup that sends a welcome mail, then a reminder in 1 hour. */
const SignUp = Worker.make("SignUp", {
  args: Schema.Struct({ email: Schema.String }),
  perform: (job) =>
    Effect.gen(function*() {
      yield* Oban.insert(SendEmail.job({ to: job.args.email }))
      yield* Oban.insert(SendEmail.job({ to: `reminder:${job.args.email}` }, { scheduleIn: "1 hour" }))
    })
})

const Flaky = Worker.make("Flaky", {
  args: Schema.Struct({}),
  maxAttempts: 4,
  backoff: Schedule.exponential("10 seconds").pipe(Schedule.jittered),
  perform: () => Effect.fail("always")
})

/** Snoozes for no time at all: `snoozes` times, or forever when it is negative. */
const naps = Ref.makeUnsafe(0)
const Napper = Worker.make("Napper", {
  args: Schema.Struct({ snoozes: Schema.Int }),
  queue: "naps",
  perform: (job) =>
    Effect.flatMap(Ref.updateAndGet(naps, (n) => n + 1), (n) =>
      job.args.snoozes < 0 || n <= job.args.snoozes ? Worker.snooze("0 seconds") : Effect.void)
})

/** Fails with an error whose `message` cannot be read: the attempt's outcome cannot be worked out. */
const Unreadable = Worker.make("Unreadable", {
  args: Schema.Struct({}),
  queue: "unreadable",
  perform: () =>
    Effect.fail(Object.defineProperty({}, "message", {
      get: () => {
        throw new Error("no message for you")
      }
    }))
})

const workers = [SendEmail, Charge, SignUp, Flaky, Napper, Unreadable]

/** Drains `queue`, keeping the lines the drain logs. */
const drainLogged = (queue: string) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const capture = Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const drained = yield* ObanTest.drainQueue({ queue }).pipe(Effect.provideService(Logger.CurrentLoggers, new Set([capture])))
    return { drained, lines }
  })

const database = (prefix: string) =>
  Layer.effectDiscard(Effect.gen(function*() {
    yield* dropSchemaOnClose(prefix)
    yield* Migrations.run({ prefix })
  })).pipe(Layer.provideMerge(pgLayer()))

const truncate = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
    yield* Ref.set(sent, [])
  })

describe("performJob (no database)", () => {
  layer(Layer.empty)((it) => {
    it.effect("reports every outcome", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* ObanTest.performJob(Charge, { amount: 5 }), { _tag: "Completed" })
        const failed = yield* ObanTest.performJob(Charge, { amount: 500 })
        assert.strictEqual(failed._tag, "Failed")
        if (failed._tag === "Failed") assert.deepStrictEqual([failed.error._tag, failed.willRetry], ["Declined", true])
        // Its last attempt: a node would discard it.
        const last = yield* ObanTest.performJob(Charge, { amount: 500 }, { attempt: 3 })
        assert.deepStrictEqual([last._tag, last._tag === "Failed" && last.willRetry], ["Failed", false])
        assert.deepStrictEqual(yield* ObanTest.performJob(Charge, { amount: 0 }), { _tag: "Snoozed", millis: 60_000 })
        assert.deepStrictEqual(yield* ObanTest.performJob(Charge, { amount: -1 }), {
          _tag: "Discarded",
          reason: "negative amount"
        })
      }))

    it.effect("judges the result and retryable as a node does: the value read back, a mismatch, a failure not retried", () =>
      Effect.gen(function*() {
        const Halves = Worker.make("Halves", {
          args: Schema.Struct({ n: Schema.Number }),
          result: Schema.Struct({ half: Schema.Int, at: Schema.Date }),
          perform: (job) => Effect.succeed({ half: job.args.n / 2, at: new Date(0) })
        })
        // The value a dependent reads: through its JSON (the Date came back from its ISO text).
        assert.deepStrictEqual(yield* ObanTest.performJob(Halves, { n: 8 }), {
          _tag: "Completed",
          value: { half: 4, at: new Date(0) }
        })
        // On a node this attempt fails with InvalidResultError and is retried; performJob said Completed.
        const odd = yield* ObanTest.performJob(Halves, { n: 9 })
        assert.strictEqual(odd._tag, "InvalidResult")
        if (odd._tag === "InvalidResult") {
          assert.deepStrictEqual([odd.error._tag, odd.error.reason, odd.willRetry], ["InvalidResultError", "encode", true])
          assert.include(odd.error.message, "Expected an integer")
        }
        class Permanent extends Schema.TaggedError<Permanent>()("Permanent", {}) {}
        const Picky = Worker.make("Picky", {
          args: Schema.Struct({}),
          retryable: (error: Permanent | string) => typeof error === "string",
          perform: () => Effect.fail(new Permanent())
        })
        const notRetried = yield* ObanTest.performJob(Picky, {})
        assert.deepStrictEqual([notRetried._tag, notRetried._tag === "Failed" && notRetried.willRetry], ["Failed", false])
        // A worker's own InvalidResultError (a step passing on Workflow.results' error) is its failure, not a result check's.
        const PassesOn = Worker.make("PassesOn", {
          args: Schema.Struct({}),
          result: Schema.Int,
          perform: () => Effect.fail(new InvalidResultError({ worker: "Up", jobId: 1, reason: "missing", message: "no result" }))
        })
        const passed = yield* ObanTest.performJob(PassesOn, {})
        assert.deepStrictEqual([passed._tag, passed._tag === "Failed" && passed.error.reason], ["Failed", "missing"])
        // A snooze that is no finite duration: a failed attempt on a node, never a Snoozed with Infinity.
        const Forever = Worker.make("Forever", { args: Schema.Struct({}), perform: () => Worker.snooze(Duration.infinity) })
        const forever = yield* ObanTest.performJob(Forever, {})
        assert.deepStrictEqual([forever._tag, forever._tag === "Crashed" && forever.willRetry], ["Crashed", true])
      }))

    it.effect("a perform that throws before returning an effect is Crashed, not a defect of performJob", () =>
      Effect.gen(function*() {
        const Buggy = Worker.make("Buggy", {
          args: Schema.Struct({}),
          perform: (): Effect.Effect<void> => {
            throw new TypeError("bug in the body")
          }
        })
        const result = yield* ObanTest.performJob(Buggy, {})
        assert.strictEqual(result._tag, "Crashed")
        if (result._tag === "Crashed") assert.strictEqual((result.defect as Error).message, "bug in the body")
      }))

    it.effect("a timeout elapses on TestClock", () =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(ObanTest.performJob(Slow, {}))
        // Its last attempt: a node would discard it after this timeout.
        const last = yield* Effect.forkChild(ObanTest.performJob(Slow, {}, { attempt: 2, maxAttempts: 2 }))
        yield* TestClock.adjust("30 seconds")
        assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "TimedOut", millis: 30_000, willRetry: true })
        assert.deepStrictEqual(yield* Fiber.join(last), { _tag: "TimedOut", millis: 30_000, willRetry: false })
      }))

    it.effect("a job's own timeout applies instead of the worker's, and is in its meta as a stored job's is", () =>
      Effect.gen(function*() {
        const seen: Array<Readonly<Record<string, unknown>>> = []
        const Timed = Worker.make("TimedOwn", {
          args: Schema.Struct({}),
          timeout: "30 seconds",
          perform: (job) => Effect.andThen(Effect.sync(() => seen.push(job.meta)), Effect.never)
        })
        const own = yield* Effect.forkChild(ObanTest.performJob(Timed, {}, { timeout: "5 seconds", meta: { from: "test" } }))
        yield* TestClock.adjust("5 seconds")
        assert.deepStrictEqual(yield* Fiber.join(own), { _tag: "TimedOut", millis: 5_000, willRetry: true })
        // Where an insert with { timeout: "5 seconds" } stores it in the job.
        assert.deepStrictEqual(seen[0], { from: "test", "oban:timeout_ms": 5_000 })
        const bad = yield* ObanTest.performJob(Timed, {}, { timeout: "0 millis" }).pipe(Effect.flip)
        assert.deepStrictEqual([bad._tag, bad.field], ["InvalidJobError", "timeout"])
      }))

    it.effect("args that do not encode are an InvalidJobError", () =>
      Effect.gen(function*() {
        const error = yield* ObanTest.performJob(Charge, { amount: 1.5 }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidJobError")
      }))
  })
})

describe("manual mode", () => {
  const prefix = uniquePrefix("kit_manual")
  const TestLive = ObanTest.layer({ mode: "manual", workers, prefix }).pipe(Layer.provideMerge(database(prefix)))
  layer(TestLive)((it) => {
    it.effect("jobs wait until drained; assertions see them", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        yield* Oban.insert(SignUp.job({ email: "ada@example.com" }))
        const queued = yield* ObanTest.assertEnqueued({ worker: SignUp, args: { email: "ada@example.com" } })
        assert.strictEqual(queued.state, "available")
        yield* ObanTest.refuteEnqueued({ worker: SendEmail })
        assert.deepStrictEqual(yield* ObanTest.drainQueue({ queue: "default" }), {
          completed: 1,
          failed: 0,
          snoozed: 0,
          cancelled: 0,
          discarded: 0
        })
        yield* ObanTest.assertEnqueued({ worker: SendEmail, queue: "mailers", args: { to: "ada@example.com" } })
        const reminder = yield* ObanTest.assertEnqueued({ worker: SendEmail, state: "scheduled" })
        assert.strictEqual(reminder.scheduledAt.getTime() - reminder.insertedAt.getTime(), 3_600_000)
        const missing = yield* ObanTest.assertEnqueued({ worker: "Nope" }).pipe(Effect.flip)
        assert.strictEqual(missing._tag, "ObanTestError")
        assert.match(missing.message, /found none; no job of Nope exists in any state$/)
        // A job of the worker in another state is listed, with its args as stored: the near miss shows why.
        const elsewhere = yield* ObanTest.assertEnqueued({ worker: SignUp, state: "completed", args: { email: "bob@example.com" } })
          .pipe(Effect.flip)
        assert.match(
          elsewhere.message,
          /found none; the newest 1 job\(s\) of SignUp: \d+ completed \{"email": "ada@example.com"\}$/
        )
      }))

    it.effect("tags match as they were written: quotes, backslashes and line breaks included", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const tags = ["line\nbreak", "quo\"te", "back\\slash", "tab\there", "plain"]
        const inserted = yield* Oban.insert(SignUp.job({ email: "tags@example.com" }, { tags }))
        assert.strictEqual((yield* ObanTest.assertEnqueued({ tags })).id, inserted.id)
        assert.strictEqual((yield* ObanTest.assertEnqueued({ tags: ["line\nbreak"] })).id, inserted.id)
        yield* ObanTest.refuteEnqueued({ tags: ["linenbreak"] })
      }))

    it.effect("given a worker definition, the assertions return its jobs with their args decoded and typed", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const at = new Date("2026-12-05T10:00:00.000Z")
        yield* Oban.insert(Remind.job({ at, note: "call Ada" }))
        const job = yield* ObanTest.assertEnqueued({ worker: Remind, args: { note: "call Ada" } })
        // A Date in the filter matches as the ISO text the schema stored.
        assert.strictEqual((yield* ObanTest.assertEnqueued({ worker: Remind, args: { at } })).id, job.id)
        // Typed by the schema: `at` is a Date, not the text the row holds.
        const when: Date = job.args.at
        assert.instanceOf(when, Date)
        assert.strictEqual(when.getTime(), at.getTime())
        const [all] = yield* ObanTest.allEnqueued({ worker: Remind })
        assert.strictEqual(all!.args.note, "call Ada")
        // By name, as stored.
        const stored = yield* ObanTest.assertEnqueued({ worker: "Remind" })
        assert.deepStrictEqual(stored.args, { at: "2026-12-05T10:00:00.000Z", note: "call Ada" })

        // A row whose args the schema refuses: the typed query says which job and how to see it.
        const sql = yield* SqlClient
        const [bad] = yield* sql<{ id: number }>`
          INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, args) VALUES ('default', 'Remind', '{"at": "soon"}')
          RETURNING id::int AS id`
        const refused = yield* ObanTest.allEnqueued({ worker: Remind }).pipe(Effect.flip)
        assert.strictEqual(refused._tag, "ObanTestError")
        assert.include(refused.message, `job ${bad!.id}'s args do not decode with Remind's args schema`)
        assert.include(refused.message, `pass the worker's name: { worker: "Remind" }`)
        assert.strictEqual((yield* ObanTest.allEnqueued({ worker: "Remind" })).length, 2)
        // refuteEnqueued counts it as the job it is, not as an error.
        const refuted = yield* ObanTest.refuteEnqueued({ worker: Remind, args: { at: "soon" } }).pipe(Effect.flip)
        assert.include(refuted.message, `found 1 (ids ${bad!.id})`)
      }))

    it.effect("an args filter names only the worker's fields, and a value JSON cannot hold is refused, not dropped", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        yield* Oban.insert(SendEmail.job({ to: "ada@example.com" }))
        // By name the args are untyped, as stored.
        yield* ObanTest.assertEnqueued({ worker: "SendEmail", args: { to: "ada@example.com" } })
        const maybe: string | undefined = undefined
        const refusals = yield* Effect.forEach([
          // JSON.stringify would drop the field, and the filter match every job.
          ObanTest.refuteEnqueued({ worker: SendEmail, args: { to: maybe } }),
          // JSON.stringify would throw: a defect, not a failed assertion.
          ObanTest.assertEnqueued({ worker: "SendEmail", args: { to: 1n } })
        ], Effect.flip)
        assert.deepStrictEqual(refusals.map((error) => error._tag), ["ObanTestError", "ObanTestError"])
        assert.match(refusals[0]!.message, /^the filter's args\.to .*undefined.*; write args as they are stored/)
        assert.match(refusals[1]!.message, /^the filter's args\.to .*bigint/)
        // A misspelt field would match no job, and a refute pass for the wrong reason: refused by the types,
        // and past them (a cast, or args that are a Class) when the filter runs.
        // @ts-expect-error `too` is no field of SendEmail's args
        const typo = yield* ObanTest.refuteEnqueued({ worker: SendEmail, args: { too: "ada@example.com" } }).pipe(Effect.flip)
        assert.match(typo.message, /^the filter's args name "too", which SendEmail's args do not have as stored \(their fields: to\)/)
        // A renamed field matches by its stored name, through the worker definition (its jobs come back
        // decoded) or its name; the decoded name is refused by the types, and past them when the filter runs.
        const Renamed = Worker.make("Renamed", {
          args: Schema.Struct({ userId: Schema.String }).pipe(Schema.encodeKeys({ userId: "user_id" })),
          perform: () => Effect.void
        })
        const renamed = yield* Oban.insert(Renamed.job({ userId: "u1" }))
        const typed = yield* ObanTest.assertEnqueued({ worker: Renamed, args: { user_id: "u1" } })
        assert.deepStrictEqual([typed.id, typed.args.userId], [renamed.id, "u1"])
        assert.strictEqual(yield* ObanTest.refuteEnqueued({ worker: Renamed, args: { user_id: "u2" } }), undefined)
        // @ts-expect-error `userId` is the decoded name; the args are stored as `user_id`
        const decodedName = yield* ObanTest.assertEnqueued({ worker: Renamed, args: { userId: "u1" } }).pipe(Effect.flip)
        assert.include(decodedName.message, `which Renamed's args do not have as stored (their fields: user_id)`)
        assert.strictEqual((yield* ObanTest.assertEnqueued({ worker: "Renamed", args: { user_id: "u1" } })).worker, "Renamed")
        // A worker annotated without its stored names is typed by its args' own (compiled, never run).
        const annotated: Worker.Worker<"SendEmail", { readonly to: string }> = SendEmail
        // @ts-expect-error `too` is no field of SendEmail's args
        void (() => ObanTest.refuteEnqueued({ worker: annotated, args: { too: "ada@example.com" } }))
      }))

    it.effect("a drained job of a worker the kit was not given fails as unknown_worker, and the drain says so", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const job = yield* Oban.insert(Slow.job({}, { queue: "forgotten" }))
        const { drained, lines } = yield* drainLogged("forgotten")
        assert.strictEqual(drained.failed, 1)
        const row = yield* ObanTest.assertEnqueued({ worker: "Slow", state: "retryable" })
        assert.deepStrictEqual([row.id, row.errors[0]?.kind], [job.id, "unknown_worker"])
        assert.isTrue(lines.some((line) => line.includes(`no worker "Slow" among ObanTest.layer's workers`)), lines.join("\n"))
      }))

    it.effect("an attempt whose outcome cannot be worked out is a defect, retried after the default backoff, as on a node", () =>
      Effect.gen(function*() {
        const job = yield* Oban.insert(Unreadable.job({}))
        const { drained, lines } = yield* drainLogged("unreadable")
        assert.strictEqual(drained.failed, 1)
        const row = yield* ObanTest.assertEnqueued({ worker: Unreadable, state: "retryable" })
        assert.deepStrictEqual([row.id, row.attempt, row.errors[0]?.kind], [job.id, 1, "defect"])
        assert.strictEqual(row.errors[0]?.message, "the attempt's outcome could not be determined")
        assert.include(row.errors[0]?.cause ?? "", "no message for you")
        assert.isAbove(row.scheduledAt.getTime() - new Date(row.errors[0]!.at).getTime(), 15_000, "the default backoff")
        assert.isTrue(lines.some((line) => line.includes("could not determine its outcome")), lines.join("\n"))
      }))

    it.effect("ObanTest.layer refuses an option it does not know, and a mode or clock it has not, by name", () =>
      Effect.gen(function*() {
        const refused = (options: object) =>
          Effect.flip(Effect.provide(Effect.void, ObanTest.layer(options as ObanTest.LayerOptions<never>))).pipe(
            Effect.map((error) => ({ _tag: error._tag, field: "field" in error ? error.field : "", message: error.message }))
          )
        const unknown = yield* refused({ mode: "manual", wokers: workers })
        assert.deepStrictEqual([unknown._tag, unknown.field], ["InvalidConfigError", "wokers"])
        assert.include(unknown.message, `did you mean "workers"?`)
        const mode = yield* refused({ mode: "inlin" })
        assert.deepStrictEqual([mode._tag, mode.field], ["InvalidConfigError", "mode"])
        assert.include(mode.message, `"manual" or "inline", got "inlin"`)
        const clock = yield* refused({ clock: "wall" })
        assert.deepStrictEqual([clock._tag, clock.field], ["InvalidConfigError", "clock"])
      }))

    it.effect("on a schema that is not migrated, the assertions fail with MigrationError naming it", () =>
      Effect.gen(function*() {
        const error = yield* ObanTest.assertEnqueued({ worker: SignUp }).pipe(
          Effect.provide(ObanConfig.layer({ prefix: "kit_never_migrated" })),
          Effect.flip
        )
        assert.strictEqual(error._tag, "MigrationError")
        assert.include(error.message, "kit_never_migrated")
        // So does a drain: the call a test that forgot to migrate makes first.
        const drained = yield* ObanTest.drainQueue({ queue: "mailers" }).pipe(
          Effect.provide(ObanTest.layer({ mode: "manual", workers })),
          Effect.provide(ObanConfig.layer({ prefix: "kit_never_migrated" })),
          Effect.flip
        )
        assert.strictEqual(drained._tag, "MigrationError")
        assert.include(drained.message, "kit_never_migrated")
      }))

    it.effect("a drain or an assertion with options no call could mean fails with ObanTestError saying which", () =>
      Effect.gen(function*() {
        const refusals = yield* Effect.forEach([
          ObanTest.drainQueue({ queue: "" }),
          ObanTest.drainQueue({ queue: "mailers", withRecursion: true, maxStalledRounds: 0 }),
          ObanTest.drainQueue({ queue: "mailers", maxStalledRounds: 1.5 }),
          // Past the types, as untyped callers get there.
          ObanTest.drainQueue({ queue: 5 as unknown as string }),
          ObanTest.assertEnqueued({ state: "bogus" as ObanTest.EnqueuedFilter["state"] & string }),
          ObanTest.refuteEnqueued({ state: [] }),
          ObanTest.allEnqueued({ state: [undefined] as unknown as ObanTest.EnqueuedFilter["state"] }),
          ObanTest.assertEnqueued({ state: null as unknown as ObanTest.EnqueuedFilter["state"] })
        ], Effect.flip)
        assert.deepStrictEqual(refusals.map((error) => error._tag), Array(8).fill("ObanTestError"))
        const messages = refusals.map((error) => error.message)
        assert.strictEqual(messages[0], `drainQueue: queue name "" must not be empty`)
        assert.strictEqual(messages[1], "drainQueue: maxStalledRounds must be an integer of at least 1 (or Infinity), got 0")
        assert.strictEqual(messages[2], "drainQueue: maxStalledRounds must be an integer of at least 1 (or Infinity), got 1.5")
        assert.strictEqual(messages[3], "drainQueue: queue name 5 (number) must be a string")
        assert.match(messages[4]!, /^state must be one of available, scheduled, .* got "bogus"$/)
        assert.match(messages[5]!, /^state must be one of .* got \[\]$/)
      }))

    it.effect("a job scheduled in 1 hour does not run until TestClock.adjust('1 hour'), then runs", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const sql = yield* SqlClient
        yield* Oban.insert(SendEmail.job({ to: "later" }, { scheduleIn: "1 hour" }))
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "mailers", withScheduled: true })).completed, 0)
        assert.strictEqual((yield* Stager.runOnce({ sql, prefix })).staged, 0)
        yield* TestClock.adjust("59 minutes")
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "mailers", withScheduled: true })).completed, 0)
        yield* TestClock.adjust("1 minute")
        assert.strictEqual((yield* Stager.runOnce({ sql, prefix })).staged, 1)
        assert.strictEqual((yield* ObanTest.drainQueue({ queue: "mailers" })).completed, 1)
        assert.deepStrictEqual(yield* Ref.get(sent), ["later"])
      }))

    it.effect("a failing job retries exactly at its backoff times (seeded Random)", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        // The delays the worker's jittered schedule gives under this seed.
        const expected = yield* Effect.forEach([1, 2, 3], (attempt) =>
          Backoff.delayFor(Flaky.backoff, attempt, 4).pipe(Effect.map(Duration.toMillis), Random.withSeed("retries")))
        // exponential 10 s, jittered within [0.8, 1.2]
        assert.isTrue(expected.every((delay, i) => delay >= 8_000 * 2 ** i && delay <= 12_000 * 2 ** i))
        const job = yield* Oban.insert(Flaky.job({}))
        const attemptsAt: Array<number> = []
        const drain = Effect.gen(function*() {
          const result = yield* ObanTest.drainQueue({ queue: "default", withScheduled: true })
          if (result.failed > 0) attemptsAt.push(yield* Effect.clockWith((clock) => clock.currentTimeMillis))
        }).pipe(Random.withSeed("retries"))
        yield* drain
        for (const delay of expected) {
          yield* TestClock.adjust(delay - 1)
          yield* drain
          assert.strictEqual(attemptsAt.length, expected.indexOf(delay) + 1, "not yet due")
          yield* TestClock.adjust(1)
          yield* drain
        }
        assert.strictEqual(attemptsAt.length, 4)
        const row = (yield* ObanTest.allEnqueued({ state: "discarded" }))[0]!
        assert.strictEqual(row.id, job.id)
        assert.strictEqual(row.errors.length, 4)
      }))

    it.effect("drainQueue with recursion runs jobs inserted by jobs; counts every outcome", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        yield* Oban.insertAll([
          Charge.job({ amount: 1 }),
          Charge.job({ amount: 500 }),
          Charge.job({ amount: 0 }),
          Charge.job({ amount: -3 }),
          SignUp.job({ email: "b" })
        ])
        assert.deepStrictEqual(yield* ObanTest.drainQueue({ queue: "default", withRecursion: true }), {
          completed: 2,
          failed: 1,
          snoozed: 1,
          cancelled: 0,
          discarded: 1
        })
        assert.deepStrictEqual(yield* ObanTest.drainQueue({ queue: "mailers" }), {
          completed: 1,
          failed: 0,
          snoozed: 0,
          cancelled: 0,
          discarded: 0
        })
      }))

    it.effect("drainQueue with scheduled jobs and recursion runs a job that snoozes at once until it ends, and gives up on one that never does", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        yield* Ref.set(naps, 0)
        yield* Oban.insert(Napper.job({ snoozes: 3 }))
        assert.deepStrictEqual(yield* ObanTest.drainQueue({ queue: "naps", withScheduled: true, withRecursion: true }), {
          completed: 1,
          failed: 0,
          snoozed: 3,
          cancelled: 0,
          discarded: 0
        })
        yield* Ref.set(naps, 0)
        const forever = yield* Oban.insert(Napper.job({ snoozes: -1 }))
        const error = yield* Effect.flip(ObanTest.drainQueue({ queue: "naps", withScheduled: true, withRecursion: true }))
        assert.strictEqual(error._tag, "ObanTestError")
        assert.include(error.message, `ran job(s) ${forever.id} in ${ObanTest.defaultMaxStalledRounds} rounds in a row`)
        // The first round, then maxStalledRounds rounds of the same job.
        assert.strictEqual(yield* Ref.get(naps), ObanTest.defaultMaxStalledRounds + 1)
        const sql = yield* SqlClient
        const rows = yield* sql<{ readonly state: string }>`SELECT state FROM ${sql(prefix)}.oban_jobs WHERE id = ${forever.id}`
        assert.deepStrictEqual(rows.map((row) => row.state), ["scheduled"])
        // A job that needs more rounds than that, given room for them.
        yield* truncate(prefix)
        yield* Ref.set(naps, 0)
        yield* Oban.insert(Napper.job({ snoozes: 150 }))
        const long = yield* ObanTest.drainQueue({ queue: "naps", withScheduled: true, withRecursion: true, maxStalledRounds: 200 })
        assert.deepStrictEqual([long.completed, long.snoozed], [1, 150])
      }))
  })
})

describe("inline mode", () => {
  const prefix = uniquePrefix("kit_inline")
  const TestLive = ObanTest.layer({ mode: "inline", workers, prefix }).pipe(Layer.provideMerge(database(prefix)))
  layer(TestLive)((it) => {
    it.effect("inserting runs the job at once, in the caller's fiber", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const job = yield* Oban.insert(SendEmail.job({ to: "now" }))
        assert.deepStrictEqual(yield* Ref.get(sent), ["now"])
        // The insert returns the job as its attempt left it, with the args as given.
        assert.deepStrictEqual([job.state, job.attempt, job.args], ["completed", 1, { to: "now" }])
        assert.isNotNull(job.completedAt)
        const [row] = yield* ObanTest.allEnqueued({ state: "completed" })
        assert.strictEqual(row!.id, job.id)
        // Jobs it inserts run too; the scheduled reminder waits.
        yield* Oban.insert(SignUp.job({ email: "c" }))
        assert.deepStrictEqual(yield* Ref.get(sent), ["now", "c"])
        yield* ObanTest.assertEnqueued({ worker: SendEmail, state: "scheduled", args: { to: "reminder:c" } })
        const failing = yield* Oban.insert(Charge.job({ amount: 1000 }))
        const [retry] = yield* ObanTest.allEnqueued({ state: "retryable" })
        assert.strictEqual(retry!.id, failing.id)
        assert.strictEqual(failing.state, "retryable")
        assert.strictEqual(failing.errors.length, 1)
      }))

    it.effect("an inserted job of a worker the kit was not given fails as unknown_worker, and the insert says so", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const lines: Array<string> = []
        const capture = Logger.make(({ message }) => {
          lines.push(Array.isArray(message) ? message.join(" ") : String(message))
        })
        const job = yield* Oban.insert(Slow.job({}, { queue: "forgotten" })).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture]))
        )
        assert.deepStrictEqual([job.state, job.errors[0]?.kind], ["retryable", "unknown_worker"])
        assert.isTrue(lines.some((line) => line.includes(`inline mode: no worker "Slow" among ObanTest.layer's workers`)), lines.join("\n"))
      }))

    it.effect("insertAll returns each job as its attempt left it, in the order given; one not due as inserted", () =>
      Effect.gen(function*() {
        yield* truncate(prefix)
        const jobs = yield* Oban.insertAll([
          Charge.job({ amount: 1000 }),
          SendEmail.job({ to: "batch" }),
          SendEmail.job({ to: "later" }, { scheduleIn: "1 hour" })
        ])
        assert.deepStrictEqual(
          jobs.map((job) => [job.state, job.attempt, job.errors.length, job.args]),
          [["retryable", 1, 1, { amount: 1000 }], ["completed", 1, 0, { to: "batch" }], ["scheduled", 0, 0, { to: "later" }]]
        )
      }))
  })
})

