import { assert, describe, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option, type Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Stager from "../src/Stager.ts"
import * as ObanTest from "../src/Testing.ts"
import * as Worker from "../src/Worker.ts"
import { pgLayer, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("manage")
const Noop = Worker.make("Noop", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

const setState = (id: number, state: string, extra = "") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.unsafe(`UPDATE "${prefix}".oban_jobs SET state = '${state}'${extra} WHERE id = ${id}`)
  })

layer(testLayer(prefix), { excludeTestServices: true })("managing jobs (no node running)", (it) => {
  it.effect("getJob returns the row, or none", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Noop.job({ n: 1 }))
      const found = yield* Oban.getJob(job.id)
      assert.isTrue(Option.isSome(found))
      assert.deepStrictEqual(Option.getOrThrow(found).args, { n: 1 })
      assert.isTrue(Option.isNone(yield* Oban.getJob(987654321)))
    }))

  it.effect("cancelJob cancels pending jobs, not finished ones", () =>
    Effect.gen(function*() {
      const scheduled = yield* Oban.insert(Noop.job({ n: 2 }, { scheduleIn: "1 hour" }))
      const cancelled = yield* Oban.cancelJob(scheduled.id)
      assert.strictEqual(Option.getOrThrow(cancelled).state, "cancelled")
      assert.strictEqual((yield* jobRow(prefix, scheduled.id)).state, "cancelled")
      const done = yield* Oban.insert(Noop.job({ n: 3 }))
      yield* setState(done.id, "completed", ", completed_at = now()")
      assert.isTrue(Option.isNone(yield* Oban.cancelJob(done.id)))
      assert.strictEqual((yield* jobRow(prefix, done.id)).state, "completed")
    }))

  it.effect("retryJob makes a finished job available now, with one more attempt if it had none left", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Noop.job({ n: 4 }, { maxAttempts: 1 }))
      yield* setState(job.id, "discarded", ", attempt = 1, discarded_at = now()")
      const retried = Option.getOrThrow(yield* Oban.retryJob(job.id))
      assert.strictEqual(retried.state, "available")
      assert.strictEqual(retried.maxAttempts, 2)
      assert.isNull(retried.discardedAt)
      // Already available: nothing to do.
      assert.isTrue(Option.isNone(yield* Oban.retryJob(job.id)))
      yield* setState(job.id, "executing")
      assert.isTrue(Option.isNone(yield* Oban.retryJob(job.id)))
    }))

  it.effect("retryJob of a cancelled unique job whose key a newer job holds: a typed error, nothing changed", () =>
    Effect.gen(function*() {
      const unique = { period: "forever" } as const
      const old = yield* Oban.insert(Noop.job({ n: 40 }, { unique }))
      assert.isTrue(Option.isSome(yield* Oban.cancelJob(old.id)))
      // Cancelled leaves the default unique states: the next insert of the key is a new job.
      const newer = yield* Oban.insert(Noop.job({ n: 40 }, { unique }))
      assert.isFalse(newer.conflict)
      const error = yield* Effect.flip(Oban.retryJob(old.id))
      assert.strictEqual(error._tag, "UniqueConflictError")
      assert.deepInclude(error, { jobId: old.id, holder: newer.id })
      assert.strictEqual((yield* jobRow(prefix, old.id)).state, "cancelled")
      // Inside the caller's transaction the refusal is a savepoint's: the transaction goes on.
      const sql = yield* SqlClient
      const after = yield* sql.withTransaction(Effect.gen(function*() {
        const inner = yield* Effect.flip(Oban.retryJob(old.id))
        assert.strictEqual(inner._tag, "UniqueConflictError")
        return yield* Oban.insert(Noop.job({ n: 41 }))
      }))
      assert.strictEqual((yield* jobRow(prefix, after.id)).state, "available")
      // Once the newer job is gone, the retry goes through.
      assert.isTrue(yield* Oban.deleteJob(newer.id))
      assert.strictEqual(Option.getOrThrow(yield* Oban.retryJob(old.id)).state, "available")
    }))

  it.effect("deleteJob deletes anything but an executing job", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Noop.job({ n: 5 }))
      yield* setState(job.id, "executing")
      assert.isFalse(yield* Oban.deleteJob(job.id))
      yield* setState(job.id, "retryable")
      assert.isTrue(yield* Oban.deleteJob(job.id))
      assert.isTrue(Option.isNone(yield* Oban.getJob(job.id)))
    }))

  it.effect("Stager.runOnce stages due scheduled and retryable jobs, in bounded batches, and reports counts", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
      const due = yield* Oban.insertAll(Array.from({ length: 25 }, (_, n) =>
        Noop.job({ n }, { scheduleIn: "1 hour", queue: n % 2 === 0 ? "even" : "odd" })))
      const later = yield* Oban.insert(Noop.job({ n: 99 }, { scheduleIn: "2 hours" }))
      // Make the first 25 due: one of them as a retryable job.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET scheduled_at = now() - interval '1 second'
                 WHERE id IN ${sql.in(due.map((job) => job.id))}`
      yield* setState(due[0]!.id, "retryable")
      const woken: Array<string> = []
      const result = yield* Stager.runOnce({
        sql,
        prefix,
        batchSize: 10,
        onStaged: (queue) => Effect.sync(() => woken.push(queue))
      })
      assert.strictEqual(result.staged, 25)
      assert.deepStrictEqual(result.queues, { even: 13, odd: 12 })
      assert.includeMembers(woken, ["even", "odd"])
      assert.strictEqual((yield* jobRow(prefix, due[0]!.id)).state, "available")
      assert.strictEqual((yield* jobRow(prefix, later.id)).state, "scheduled")
      assert.strictEqual((yield* Stager.runOnce({ sql, prefix })).staged, 0)
    }))
})

describe("Oban.layer configuration", () => {
  const Bad = [
    [{ queues: { q: 0 } }, "queues.q"],
    [{ queues: { q: 1.5 } }, "queues.q"],
    [{ queues: { "": 1 } }, "queues"],
    [{ queues: { "a\u0000b": 1 } }, "queues"],
    [{ queues: { "mail ": 1 } }, "queues"],
    [{ queues: { ["\uD800"]: 1 } }, "queues"],
    [{ queues: { q: { limit: -1 } } }, "queues.q"],
    [{ pollInterval: "soon" }, "pollInterval"],
    [{ pollInterval: 0 }, "pollInterval"],
    [{ stageInterval: "Infinity" }, "stageInterval"],
    [{ shutdownGracePeriod: -5 }, "shutdownGracePeriod"],
    [{ node: "" }, "node"],
    [{ node: "a\u0000b" }, "node"],
    [{ node: " " }, "node"],
    [{ node: "web-1 " }, "node"],
    [{ maxArgsBytes: 0 }, "maxArgsBytes"],
    // Options no one reads (past the types: JavaScript, or options read from JSON) were ignored.
    [{ qeueus: { q: 1 } }, "qeueus"],
    [{ queues: { q: { limit: 5, pausd: true } } }, "queues.q"],
    [{ queues: null }, "queues"],
    [{ rescuer: { rescueAftr: "1 minute" } }, "rescuer"],
    [{ pruner: { max_age: "1 hour" } }, "pruner"]
  ] as const
  layer(pgLayer(), { excludeTestServices: true })((it) => {
    for (const [options, field] of Bad) {
      it.effect(`refuses ${JSON.stringify(options)} with an InvalidConfigError on ${field}`, () =>
        Effect.gen(function*() {
          const error = yield* Layer.build(Oban.layer({ ...(options as object), workers: [Noop] })).pipe(
            Effect.scoped,
            Effect.flip
          )
          assert.strictEqual(error._tag, "InvalidConfigError")
          if (error._tag === "InvalidConfigError") assert.strictEqual(error.field, field)
        }))
    }

    it.effect("names an unknown option and the known one it is closest to", () =>
      Effect.gen(function*() {
        const refused = (options: object) =>
          Layer.build(Oban.layer({ ...options, workers: [Noop] })).pipe(Effect.scoped, Effect.flip, Effect.map((e) => e.message))
        assert.include(yield* refused({ qeueus: { q: 1 } }), `unknown option "qeueus" (did you mean "queues"?)`)
        assert.include(yield* refused({ rescuer: { rescueAftr: "1 minute" } }), `unknown option "rescueAftr" in rescuer (did you mean "rescueAfter"?)`)
        assert.include(
          yield* refused({ queues: { q: { limit: 5, pausd: true } } }),
          `unknown option "pausd" in queues.q (did you mean "paused"?)`
        )
        assert.include(yield* refused({ queues: { q: { limit: 10, globl: 5 } } }), `(did you mean "global"?)`)
        // A bad limit names its queue (it said only "queues: Expected a value between 1 and 10000").
        assert.match(yield* refused({ queues: { ok: 1, fast: -1 } }), /^queues\.fast: .*between 1 and 10000/)
      }))

    it.effect("refuses a bad prefix and duplicate worker names", () =>
      Effect.gen(function*() {
        const prefixError = yield* Layer.build(Oban.layer({ prefix: "Bad Prefix", workers: [] })).pipe(
          Effect.scoped,
          Effect.flip
        )
        assert.strictEqual(prefixError._tag, "InvalidPrefixError")
        const twice = yield* Layer.build(Oban.layer({ workers: [Noop, Noop] })).pipe(Effect.scoped, Effect.flip)
        assert.strictEqual(twice._tag, "InvalidConfigError")
        // A worker's default queue no queue can have: every insert of it would fail, so the node refuses it.
        const Spaced = Worker.make("Spaced", { args: Schema.Struct({}), queue: "mail ", perform: () => Effect.void })
        const spaced = yield* Layer.build(Oban.layer({ workers: [Spaced] })).pipe(Effect.scoped, Effect.flip)
        assert.deepStrictEqual([spaced._tag, (spaced as { message?: string }).message], [
          "InvalidConfigError",
          `worker "Spaced": queue name "mail " must not start or end with whitespace`
        ])
        // A timeout that is no duration broke every attempt of the worker at its start, leaving the job
        // executing until the rescuer came; the node and the testing kit now refuse it up front.
        for (const timeout of ["soon" as Duration.Input, 0, -5, Number.NaN]) {
          const Timed = Worker.make("Timed", { args: Schema.Struct({}), timeout, perform: () => Effect.void })
          const refused = yield* Layer.build(Oban.layer({ workers: [Timed] })).pipe(Effect.scoped, Effect.flip)
          assert.strictEqual(refused._tag, "InvalidConfigError", String(timeout))
          if (refused._tag === "InvalidConfigError") {
            assert.strictEqual(refused.field, "workers")
            assert.include(refused.message, `worker "Timed": timeout must be a duration longer than 0`)
          }
          const kit = yield* Layer.build(ObanTest.layer({ workers: [Timed] })).pipe(Effect.scoped, Effect.flip)
          assert.strictEqual(kit._tag, "InvalidConfigError")
        }
        // A backoff that is no Schedule (past the types: JavaScript, or options read from JSON) broke every
        // retry of the worker, leaving the job executing until a rescue; it is refused up front too.
        for (const backoff of [Duration.seconds(1), "1 second", { delay: 1000 }]) {
          const Backing = Worker.make("Backing", {
            args: Schema.Struct({}),
            backoff: backoff as unknown as Schedule.Schedule<unknown, number>,
            perform: () => Effect.void
          })
          const refused = yield* Layer.build(Oban.layer({ workers: [Backing] })).pipe(Effect.scoped, Effect.flip)
          assert.deepStrictEqual(
            [refused._tag, (refused as { field?: string }).field],
            ["InvalidConfigError", "workers"],
            String(backoff)
          )
          assert.include((refused as { message?: string }).message, `worker "Backing": backoff must be a Schedule`)
          const kit = yield* Layer.build(ObanTest.layer({ workers: [Backing] })).pipe(Effect.scoped, Effect.flip)
          assert.strictEqual(kit._tag, "InvalidConfigError")
        }
        // A misspelt option (from JavaScript, or options built elsewhere) was ignored: 20 attempts, not 3. A default
        // priority or attempts no job can have failed every insert of the worker instead of the node's start.
        const refusals: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ maxAtempts: 3 }, `worker "Loose": unknown option "maxAtempts" in the options of worker "Loose" (did you mean "maxAttempts"?)`],
          [{ retriable: () => false }, `worker "Loose": unknown option "retriable" in the options of worker "Loose" (did you mean "retryable"?)`],
          [{ priority: 12 }, `worker "Loose": priority must be an integer from 0 to 9, got number 12`],
          [{ maxAttempts: -3 }, `worker "Loose": maxAttempts must be an integer from 1 to 32767, got number -3`]
        ]
        for (const [extra, message] of refusals) {
          const Loose = Worker.make("Loose", { args: Schema.Struct({}), perform: () => Effect.void, ...extra })
          const refused = yield* Layer.build(Oban.layer({ workers: [Loose] })).pipe(Effect.scoped, Effect.flip)
          assert.deepStrictEqual([refused._tag, (refused as { field?: string }).field], ["InvalidConfigError", "workers"])
          assert.include((refused as { message?: string }).message, message)
          const kit = yield* Layer.build(ObanTest.layer({ workers: [Loose] })).pipe(Effect.scoped, Effect.flip)
          assert.strictEqual(kit._tag, "InvalidConfigError")
        }
      }))

    it.effect("refuses to start on a schema that is not migrated, naming the fix", () =>
      Effect.gen(function*() {
        const error = yield* Layer.build(Oban.layer({ prefix: uniquePrefix("bare"), workers: [Noop] })).pipe(
          Effect.scoped,
          Effect.flip
        )
        assert.strictEqual(error._tag, "MigrationError")
        assert.include(error.message, "Migrations.run")
      }))
  })
})

describe("cancel signals on a running node", () => {
  const routePrefix = uniquePrefix("route")
  const started = new Map<string, number>()
  const interrupted = new Map<string, number>()
  const Args = Schema.Struct({ key: Schema.String })
  // Its cleanup takes 8 seconds: a cancel waits that long for the job to end (far longer than a loaded
  // machine delays a wake-up or a cancel that does not wait for it).
  const SlowCleanup = Worker.make("SlowCleanup", {
    args: Args,
    queue: "slow",
    perform: (job) =>
      Effect.sync(() => started.set(job.args.key, Date.now())).pipe(
        Effect.andThen(Effect.never),
        Effect.onInterrupt(() =>
          Effect.sync(() => interrupted.set(job.args.key, Date.now())).pipe(Effect.andThen(Effect.sleep("8 seconds")))
        )
      )
  })
  const Quick = Worker.make("Quick", {
    args: Args,
    queue: "quick",
    perform: (job) => Effect.sync(() => started.set(job.args.key, Date.now()))
  })

  layer(testLayer(routePrefix, { maxConnections: 10 }), { excludeTestServices: true })((it) => {
    it.effect("a cancel waiting on a slow finalizer delays neither wake-ups nor other cancels", () =>
      Effect.gen(function*() {
        // Polling is slow, so the quick job can only start promptly through its insert notification.
        const node = yield* startNode({
          prefix: routePrefix,
          node: "route-a",
          queues: { slow: 2, quick: 1 },
          workers: [SlowCleanup, Quick],
          pollInterval: "30 seconds"
        })
        const first = yield* Oban.insert(SlowCleanup.job({ key: "first" }))
        const second = yield* Oban.insert(SlowCleanup.job({ key: "second" }))
        yield* waitFor("both slow jobs to start", Effect.sync(() => started.has("first") && started.has("second")))

        // Through the signal channel, as from another process; then wait until the node is in its finalizer.
        yield* Oban.cancelJob(first.id)
        yield* waitFor("the first cancel to reach the job", Effect.sync(() => interrupted.has("first")), "10 seconds")

        const insertedAt = Date.now()
        yield* Oban.insert(Quick.job({ key: "quick" }))
        const cancelledAt = Date.now()
        yield* Oban.cancelJob(second.id)
        yield* waitFor("the quick job to start", Effect.sync(() => started.has("quick")), "20 seconds")
        yield* waitFor("the second cancel to reach the job", Effect.sync(() => interrupted.has("second")), "20 seconds")
        const toStart = started.get("quick")! - insertedAt
        const toInterrupt = interrupted.get("second")! - cancelledAt
        yield* Effect.logInfo(`insert-to-start ${toStart} ms, second cancel-to-interrupt ${toInterrupt} ms`)
        assert.isBelow(toStart, 4_000)
        assert.isBelow(toInterrupt, 4_000)

        // Both still end cancelled once their cleanup is done.
        yield* waitFor(
          "both cancelled jobs to end",
          Effect.map(
            Effect.all([jobRow(routePrefix, first.id), jobRow(routePrefix, second.id)]),
            (rows) => rows.every((row) => row.state === "cancelled")
          ),
          "20 seconds"
        )
        yield* node.stop
      }))
  })
})
