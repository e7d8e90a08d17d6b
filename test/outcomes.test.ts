import { assert, layer } from "@effect/vitest"
import { Context, Data, Duration, Effect, Layer, Option, Ref, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Backoff from "../src/Backoff.ts"
import { maxErrorTextBytes } from "../src/internal/errorText.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("outcomes")
const queue = "outcomes"

class PaymentDeclined extends Schema.TaggedError<PaymentDeclined>()("PaymentDeclined", {
  message: Schema.String
}) {}
class InvalidCard extends Schema.TaggedError<InvalidCard>()("InvalidCard", {
  message: Schema.String
}) {}
/** A tagged error whose data is in its fields, with no message. */
class GatewayTimeout extends Data.TaggedError("GatewayTimeout")<{ readonly host: string; readonly waitedMs: bigint }> {}
/** A tagged error that only wraps the error under it, as a data layer's often does. */
class DbError extends Data.TaggedError("DbError")<{ readonly cause: unknown }> {}

const finalized = Ref.makeUnsafe<ReadonlyArray<string>>([])

const Args = Schema.Struct({ mode: Schema.String })

const Outcomes = Worker.make("Outcomes", {
  args: Args,
  queue,
  maxAttempts: 3,
  perform: (
    job
  ): Effect.Effect<
    void,
    PaymentDeclined | InvalidCard | GatewayTimeout | DbError | SqlError | Worker.Snooze | Worker.Cancel | Worker.Discard,
    SqlClient
  > => {
    switch (job.args.mode) {
      case "ok":
        return Effect.void
      case "fail":
        return Effect.fail(new PaymentDeclined({ message: "card declined" }))
      case "fatal":
        return Effect.fail(new InvalidCard({ message: "no such card" }))
      case "fields":
        return Effect.fail(new GatewayTimeout({ host: "pay-2", waitedMs: 30_000n }))
      case "wrapped":
        return Effect.fail(new DbError({ cause: new Error("connection refused") }))
      case "query":
        // A statement the server refuses: the driver's error says only "Query failed", the server why.
        return Effect.flatMap(SqlClient, (sql) => sql`SELECT 1 / 0`)
      case "die":
        return Effect.die(new Error("boom"))
      case "throw":
        return Effect.sync(() => {
          throw new TypeError("thrown inside perform")
        })
      case "eager":
        // A plain bug in the body: thrown before any effect is returned.
        throw new TypeError("thrown by perform itself")
      case "snooze":
        return Worker.snooze("30 seconds")
      case "cancel":
        return Worker.cancel("customer left")
      case "discard":
        return Worker.discard("not worth it")
      case "cancel-bare":
        return Worker.cancel()
      case "discard-untyped":
        // As a JavaScript caller might: it threw a bare schema error where perform returned its effect.
        return Worker.discard(404 as unknown as string)
      default:
        return Effect.void
    }
  },
  // Declared after perform, so TypeScript infers the error type from perform first.
  retryable: (error) => error._tag !== "InvalidCard"
})

const Slow = Worker.make("Slow", {
  args: Schema.Struct({ id: Schema.String }),
  queue,
  timeout: "200 millis",
  maxAttempts: 2,
  perform: (job) =>
    Effect.sleep("1 minute").pipe(
      Effect.ensuring(Ref.update(finalized, (ids) => [...ids, job.args.id]))
    )
})

/** A worker whose `retryable` callback is broken. */
const Judge = Worker.make("Judge", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 3,
  perform: () => Effect.fail(new PaymentDeclined({ message: "declined" })),
  retryable: (error): boolean => {
    throw new RangeError(`cannot judge ${error._tag}`)
  }
})

const Custom = Worker.make("Custom", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 5,
  backoff: Schedule.spaced("42 seconds"),
  perform: () => Effect.fail("nope")
})

class Greeter extends Context.Service<Greeter, { readonly greet: (name: string) => Effect.Effect<void> }>()("test/Greeter") {}
const greeted: Array<string> = []
const Greet = Worker.make("Greet", {
  args: Schema.Struct({ name: Schema.String }),
  queue,
  perform: (job) =>
    Effect.gen(function*() {
      const greeter = yield* Greeter
      yield* greeter.greet(job.args.name)
    })
})

/** Fails with text PostgreSQL will not store in jsonb as it is, or too much of it. */
const dirtyText: Record<string, string> = {
  nul: "before\u0000after",
  surrogate: "lone \uD800 here, and \uDC00 there",
  huge: "x".repeat(1024 * 1024),
  // Six bytes each as PostgreSQL writes them back in JSON (\u001b): 100,000 of them were 600 KB, not 64 KiB.
  escapes: "\u001b[31m".repeat(20_000)
}
const Dirty = Worker.make("Dirty", {
  args: Schema.Struct({ text: Schema.String }),
  queue,
  maxAttempts: 2,
  perform: (job) => Effect.fail(new PaymentDeclined({ message: dirtyText[job.args.text] ?? job.args.text }))
})

/** Snoozes for a duration that is not finite. */
const Sleepy = Worker.make("Sleepy", {
  args: Schema.Struct({ nan: Schema.Boolean }),
  queue,
  maxAttempts: 3,
  perform: (job) => job.args.nan ? Worker.snooze(Number.NaN) : Worker.snooze(Duration.infinity)
})

/** Snoozes at once until its job has been snoozed twice (as `meta.snoozed` counts), then completes; says what it saw. */
const snoozesSeen: Array<unknown> = []
const Twice = Worker.make("Twice", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 1,
  perform: (job) =>
    Effect.suspend(() => {
      snoozesSeen.push(job.meta["snoozed"])
      return typeof job.meta["snoozed"] === "number" && job.meta["snoozed"] >= 2 ? Effect.void : Worker.snooze(0)
    })
})

/** Backoff schedules whose delays are infinite or beyond PostgreSQL's dates. */
const Endless = Worker.make("Endless", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 5,
  backoff: Schedule.spaced(Duration.infinity),
  perform: () => Effect.fail("nope")
})
const Eons = Worker.make("Eons", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 5,
  backoff: Schedule.spaced(Duration.days(365 * 1_000_000)),
  perform: () => Effect.fail("nope")
})

/** A backoff schedule that dies whenever it is asked for a delay. */
const DyingBackoff = Worker.make("DyingBackoff", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 3,
  backoff: Schedule.spaced("1 second").pipe(Schedule.modifyDelay(() => Effect.die(new Error("backoff bug")))),
  perform: () => Effect.fail(new PaymentDeclined({ message: "declined" }))
})

/** Fails with an error whose message cannot be read: reading it throws. */
const Unreadable = Worker.make("Unreadable", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 3,
  perform: () =>
    Effect.fail(Object.defineProperty({}, "message", {
      get: () => {
        throw new Error("no message for you")
      }
    }))
})

/** Sleeps 1.5 s inside `Effect.uninterruptible`; the timed one has a timeout of 300 ms. */
const stopsQueue = "stops"
const holdUninterruptibly = Effect.uninterruptible(Effect.sleep("1500 millis"))
const HeldTimed = Worker.make("HeldTimed", {
  args: Schema.Struct({}),
  queue: stopsQueue,
  timeout: "300 millis",
  maxAttempts: 3,
  perform: () => holdUninterruptibly
})
const Held = Worker.make("Held", {
  args: Schema.Struct({}),
  queue: stopsQueue,
  maxAttempts: 3,
  perform: () => holdUninterruptibly
})

const Strict = Worker.make("Strict", {
  args: Schema.Struct({ n: Schema.Int }),
  queue,
  perform: () => Effect.void
})

const settled = (id: number) =>
  waitFor(`job ${id} to leave executing`, Effect.map(jobRow(prefix, id), (row) => !["available", "executing"].includes(row.state)))

const run = (request: Worker.JobRequest) =>
  Effect.gen(function*() {
    const job = yield* Oban.insert(request)
    yield* settled(job.id)
    return yield* jobRow(prefix, job.id)
  })

const NodeLive = Layer.effectDiscard(
  startNode({
    prefix,
    node: "outcomes-node",
    queues: { [queue]: 10 },
    workers: [Outcomes, Slow, Custom, Strict, Greet, Dirty, Sleepy, Endless, Eons, Judge, Twice, DyingBackoff, Unreadable],
    pollInterval: "100 millis",
    stageInterval: "100 millis",
    shutdownGracePeriod: "1 second"
  })
)

const GreeterLive = Layer.succeed(Greeter, { greet: (name) => Effect.sync(() => greeted.push(name)) })

layer(NodeLive.pipe(Layer.provide(GreeterLive), Layer.provideMerge(testLayer(prefix))), { excludeTestServices: true })("outcomes", (it) => {
  it.effect("a worker gets the services provided to the node's layer", () =>
    Effect.gen(function*() {
      const row = yield* run(Greet.job({ name: "ada" }))
      assert.strictEqual(row.state, "completed")
      assert.deepStrictEqual(greeted, ["ada"])
    }))

  it.effect("success -> completed, no errors", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "ok" }))
      assert.strictEqual(row.state, "completed")
      assert.strictEqual(row.attempt, 1)
      assert.deepStrictEqual(row.errors, [])
    }))

  it.effect("a typed failure -> retryable, within the default backoff, with a failure entry", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "fail" }))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors.length, 1)
      const entry = row.errors[0]!
      assert.strictEqual(entry.kind, "failure")
      assert.strictEqual(entry.attempt, 1)
      assert.strictEqual(entry.message, "PaymentDeclined: card declined")
      assert.include(entry.cause ?? "", "PaymentDeclined")
      // attempt 1: 15 s + 2^1 s = 17 s, jittered by ±10%.
      const delay = row.scheduled_at.getTime() - new Date(entry.at).getTime()
      assert.isAtLeast(delay, 17_000 * 0.9 - 1)
      assert.isAtMost(delay, 17_000 * 1.1 + 1)
    }))

  it.effect("a tagged error without a message is recorded with its fields, not its tag alone", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "fields" }))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors[0]!.message, 'GatewayTimeout: {"host":"pay-2","waitedMs":"30000"}')
      const wrapped = yield* run(Outcomes.job({ mode: "wrapped" }))
      assert.strictEqual(wrapped.errors[0]!.message, "DbError: cause: Error: connection refused")
    }))

  it.effect("a failed statement of the worker's own is recorded with what the server said", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "query" }))
      assert.strictEqual(row.state, "retryable")
      assert.match(row.errors[0]!.message, /^SqlError: .+ \(division by zero\)$/)
    }))

  it.effect("a failure on the last attempt -> discarded", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "fail" }, { maxAttempts: 1 }))
      assert.strictEqual(row.state, "discarded")
      assert.strictEqual(row.errors[0]!.kind, "failure")
    }))

  it.effect("an error the worker marks non-retryable -> discarded at once", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "fatal" }))
      assert.strictEqual(row.state, "discarded")
      assert.strictEqual(row.attempt, 1)
      assert.strictEqual(row.errors[0]!.message, "InvalidCard: no such card")
    }))

  it.effect("a defect (die or throw) -> retryable with a defect entry and its cause", () =>
    Effect.gen(function*() {
      const died = yield* run(Outcomes.job({ mode: "die" }))
      assert.strictEqual(died.state, "retryable")
      assert.strictEqual(died.errors[0]!.kind, "defect")
      assert.include(died.errors[0]!.message, "boom")
      const thrown = yield* run(Outcomes.job({ mode: "throw" }))
      assert.strictEqual(thrown.errors[0]!.kind, "defect")
      assert.include(thrown.errors[0]!.cause ?? "", "thrown inside perform")
    }))

  it.effect("a perform that throws before returning an effect, or a retryable that throws -> a defect entry, with backoff", () =>
    Effect.gen(function*() {
      // Both left the job executing, with the cause only in the logs, until the rescuer came.
      const eager = yield* run(Outcomes.job({ mode: "eager" }))
      assert.strictEqual(eager.state, "retryable")
      assert.strictEqual(eager.errors[0]!.kind, "defect")
      assert.include(eager.errors[0]!.message, "thrown by perform itself")
      const judged = yield* run(Judge.job({}))
      assert.strictEqual(judged.state, "retryable")
      assert.strictEqual(judged.errors[0]!.kind, "defect")
      assert.strictEqual(judged.errors[0]!.message, "the worker's retryable threw (cannot judge PaymentDeclined) on PaymentDeclined: declined")
      for (const row of [eager, judged]) {
        assert.isAbove(row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime(), 15_000, "the default backoff")
      }
    }))

  it.effect("a backoff schedule that dies: the failure is recorded and retried after the default backoff", () =>
    Effect.gen(function*() {
      // It left the job executing, its failure unwritten, until a rescue: about a minute per attempt.
      const row = yield* run(DyingBackoff.job({}))
      assert.deepStrictEqual([row.state, row.attempt, row.errors.length], ["retryable", 1, 1])
      assert.strictEqual(row.errors[0]!.kind, "failure")
      assert.strictEqual(row.errors[0]!.message, "PaymentDeclined: declined")
      const delay = row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime()
      // The default backoff before attempt 2: 15 s + 2^1 s, give or take 10%.
      assert.isAtLeast(delay, 17_000 * 0.9 - 1_000)
      assert.isAtMost(delay, 17_000 * 1.1 + 1_000)
    }))

  it.effect("an attempt whose outcome cannot be worked out is a recorded defect, not a job left executing", () =>
    Effect.gen(function*() {
      const row = yield* run(Unreadable.job({}))
      assert.deepStrictEqual([row.state, row.attempt], ["retryable", 1])
      assert.strictEqual(row.errors[0]!.kind, "defect")
      assert.strictEqual(row.errors[0]!.message, "the attempt's outcome could not be determined")
      assert.include(row.errors[0]!.cause ?? "", "no message for you")
      assert.isAbove(row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime(), 15_000, "the default backoff")
    }))

  it.effect("a timeout interrupts the job, runs its finalizers, and is recorded", () =>
    Effect.gen(function*() {
      const row = yield* run(Slow.job({ id: "t1" }))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors[0]!.kind, "timeout")
      assert.include(row.errors[0]!.message, "200 ms")
      // The cause says what happened, not just the error's tag.
      assert.include(row.errors[0]!.cause ?? "", "ObanJobTimeout: the job's timeout of 200 ms elapsed")
      assert.include(yield* Ref.get(finalized), "t1")
    }))

  it.effect("snooze -> scheduled later, the attempt given back, no error", () =>
    Effect.gen(function*() {
      const row = yield* run(Outcomes.job({ mode: "snooze" }))
      assert.strictEqual(row.state, "scheduled")
      assert.strictEqual(row.attempt, 0)
      assert.deepStrictEqual(row.errors, [])
      // 30 s from the snooze; attempted_at is the claim, which a loaded machine may put seconds earlier.
      const delay = row.scheduled_at.getTime() - row.attempted_at!.getTime()
      assert.isAtLeast(delay, 29_000)
      assert.isAtMost(delay, 35_000)
    }))

  it.effect("each snooze counts in meta.snoozed, which the worker reads to stop snoozing; the other meta stays", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const job = yield* Oban.insert(Twice.job({}, { meta: { tenant: "acme", snoozed: "not a number" } }))
      yield* waitFor("completed after two snoozes", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
      assert.deepStrictEqual(snoozesSeen, ["not a number", 1, 2])
      const [row] = yield* sql<{ meta: unknown; attempt: number }>`
        SELECT meta, attempt FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
      // maxAttempts 1, and still one attempt used: a snooze gives its attempt back.
      assert.deepStrictEqual(row, { meta: { tenant: "acme", snoozed: 2 }, attempt: 1 })
    }))

  it.effect("Worker.cancel -> cancelled; Worker.discard -> discarded; both with their reason", () =>
    Effect.gen(function*() {
      const cancelled = yield* run(Outcomes.job({ mode: "cancel" }))
      assert.strictEqual(cancelled.state, "cancelled")
      assert.deepStrictEqual([cancelled.errors[0]!.kind, cancelled.errors[0]!.message], ["cancelled", "customer left"])
      const discarded = yield* run(Outcomes.job({ mode: "discard" }))
      assert.strictEqual(discarded.state, "discarded")
      assert.deepStrictEqual([discarded.errors[0]!.kind, discarded.errors[0]!.message], ["discarded", "not worth it"])
      const bare = yield* run(Outcomes.job({ mode: "cancel-bare" }))
      assert.deepStrictEqual([bare.state, bare.errors[0]!.kind, bare.errors[0]!.message], ["cancelled", "cancelled", "cancelled by the worker"])
      const untyped = yield* run(Outcomes.job({ mode: "discard-untyped" }))
      assert.deepStrictEqual([untyped.state, untyped.errors[0]!.kind, untyped.errors[0]!.message], ["discarded", "discarded", "404"])
    }))

  it.effect("args that do not decode -> discarded at once", () =>
    Effect.gen(function*() {
      // Encoded by another worker's schema under this worker's name, as an older deploy might have.
      const Impostor = Worker.make("Strict", { args: Schema.Struct({ n: Schema.String }), queue, perform: () => Effect.void })
      const row = yield* run(Impostor.job({ n: "not a number" }))
      assert.strictEqual(row.state, "discarded")
      assert.strictEqual(row.attempt, 1)
      assert.strictEqual(row.errors[0]!.kind, "decode")
    }))

  it.effect("an unknown worker -> a recorded failure that retries", () =>
    Effect.gen(function*() {
      const Ghost = Worker.make("Ghost", { args: Schema.Struct({}), queue, perform: () => Effect.void })
      const row = yield* run(Ghost.job({}))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors[0]!.kind, "unknown_worker")
      assert.include(row.errors[0]!.message, "Ghost")
    }))

  it.effect("a worker's Schedule gives the retry delay", () =>
    Effect.gen(function*() {
      const row = yield* run(Custom.job({}))
      assert.strictEqual(row.state, "retryable")
      const delay = row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime()
      assert.strictEqual(delay, 42_000)
    }))

  it.effect("error text with NUL, lone surrogates or a megabyte is cleaned and bounded, and the job leaves executing", () =>
    Effect.gen(function*() {
      const nul = yield* run(Dirty.job({ text: "nul" }))
      assert.strictEqual(nul.state, "retryable")
      assert.strictEqual(nul.errors[0]!.message, "PaymentDeclined: before\uFFFDafter")
      const surrogate = yield* run(Dirty.job({ text: "surrogate" }, { maxAttempts: 1 }))
      assert.strictEqual(surrogate.state, "discarded")
      assert.strictEqual(surrogate.errors[0]!.message, "PaymentDeclined: lone \uFFFD here, and \uFFFD there")
      const huge = yield* run(Dirty.job({ text: "huge" }))
      assert.strictEqual(huge.state, "retryable")
      const entry = huge.errors[0]!
      assert.isAtMost(new TextEncoder().encode(entry.message).length, maxErrorTextBytes)
      assert.isAtLeast(entry.message.length, maxErrorTextBytes - 100)
      assert.include(entry.message, "truncated")
      assert.isAtMost(new TextEncoder().encode(entry.cause ?? "").length, maxErrorTextBytes)
      // Bounded as stored: the message's JSON, escapes and all, within the limit (and its quotes).
      const escapes = yield* run(Dirty.job({ text: "escapes" }))
      const sql = yield* SqlClient
      const [stored] = yield* sql<{ bytes: number }>`
        SELECT octet_length((errors -> 0 -> 'message')::text)::int AS bytes FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${escapes.id}`
      assert.isAtMost(stored!.bytes, maxErrorTextBytes + 2)
      assert.isAtLeast(stored!.bytes, maxErrorTextBytes - 100)
      assert.include(escapes.errors[0]!.message, "truncated")
    }))

  it.effect("snooze for an infinite or NaN duration is a failed attempt (defect), not a hot loop", () =>
    Effect.gen(function*() {
      for (const nan of [false, true]) {
        const row = yield* run(Sleepy.job({ nan }))
        assert.strictEqual(row.state, "retryable")
        assert.strictEqual(row.attempt, 1)
        assert.strictEqual(row.errors.length, 1)
        assert.strictEqual(row.errors[0]!.kind, "defect")
        assert.include(row.errors[0]!.message, "Worker.snooze needs a finite duration")
        // The default backoff (about 17 s), not at once.
        assert.isAbove(row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime(), 15_000)
      }
    }))

  it.effect("a backoff that is infinite or beyond PostgreSQL's dates waits the documented maximum", () =>
    Effect.gen(function*() {
      for (const worker of [Endless, Eons]) {
        const row = yield* run(worker.job({}))
        assert.strictEqual(row.state, "retryable")
        assert.strictEqual(row.attempt, 1)
        const delay = row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime()
        assert.strictEqual(delay, Duration.toMillis(Backoff.maxDelay))
      }
    }))

  it.effect("a job stopped inside Effect.uninterruptible keeps the reason it was stopped for first, whatever shutdown says", () =>
    Effect.gen(function*() {
      // A node of its own, stopped in the test, with a grace period shorter than the region.
      const node = yield* startNode({
        prefix,
        node: "stops-node",
        queues: { [stopsQueue]: 2 },
        workers: [HeldTimed, Held],
        pollInterval: "100 millis",
        shutdownGracePeriod: "300 millis"
      })
      const [timed, cancelled] = yield* Oban.insertAll([HeldTimed.job({}), Held.job({})])
      yield* waitFor(
        "both running",
        Effect.map(
          Effect.all([jobRow(prefix, timed!.id), jobRow(prefix, cancelled!.id)]),
          (rows) => rows.every((row) => row.state === "executing")
        )
      )
      // The timeout elapses (300 ms) and the cancel comes while both still sleep in their region;
      // then shutdown, whose grace period ends before the region does.
      yield* Effect.sleep("200 millis")
      assert.isTrue(Option.isSome(yield* Oban.cancelJob(cancelled!.id)))
      yield* Effect.sleep("300 millis")
      yield* node.stop
      const timedRow = yield* jobRow(prefix, timed!.id)
      // Was given back as interrupted by shutdown (attempt 0): a job that always overran its timeout in
      // such a step got its attempt back at every deploy.
      assert.deepStrictEqual([timedRow.state, timedRow.attempt, timedRow.errors.map((e) => e.kind)], [
        "retryable",
        1,
        ["timeout"]
      ])
      // A running job's cancel is only requested and waits for its attempt's outcome: the node stopped it
      // for the cancel first, so that is what the outcome says, not the shutdown that came after.
      const cancelledRow = yield* jobRow(prefix, cancelled!.id)
      assert.deepStrictEqual(
        [cancelledRow.state, cancelledRow.attempt, cancelledRow.errors.map((e) => [e.kind, e.message])],
        ["cancelled", 1, [["cancelled", "cancelled while executing"]]]
      )
    }).pipe(Effect.scoped))
})
