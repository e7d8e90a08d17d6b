import { PgClient } from "@effect/sql-pg"
import { assert, describe, expect, layer } from "@effect/vitest"
import { DateTime, Effect, Layer, Option, Queue, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import * as Config from "../src/Config.ts"
import * as Oban from "../src/Oban.ts"
import * as ObanClock from "../src/ObanClock.ts"
import * as Worker from "../src/Worker.ts"
import { pgLayer, testLayer, uniquePrefix } from "./support/db.ts"
import { Resize, SendEmail } from "./support/workers.ts"

const prefix = uniquePrefix("insert")
const insertChannel = `${prefix}.oban_insert`

const countJobs = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
  return row!.n
})

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
})

/** Listens on the insert channel for the duration of the test's scope. */
const listen = Effect.gen(function*() {
  const pg = yield* PgClient.PgClient
  return yield* pg.listen(insertChannel)
})

const payloadQueue = (notification: { readonly payload: string }): string =>
  (JSON.parse(notification.payload) as { queue: string }).queue

layer(testLayer(prefix), { excludeTestServices: true })("insert", (it) => {
  it.effect("a committed insert is a row and a notification with its queue", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const sql = yield* SqlClient
      const job = yield* sql.withTransaction(Oban.insert(SendEmail.job({ to: "a@b.c", subject: "hi" })))
      assert.strictEqual(job.state, "available")
      assert.strictEqual(job.queue, "mailers")
      assert.strictEqual(job.worker, "SendEmail")
      assert.strictEqual(job.maxAttempts, 5)
      assert.strictEqual(job.attempt, 0)
      assert.strictEqual(typeof job.id, "number")
      assert.deepStrictEqual(job.args, { to: "a@b.c", subject: "hi" })
      const [row] = yield* sql<{ state: string; args: unknown }>`
        SELECT state, args FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
      assert.deepStrictEqual(row, { state: "available", args: { to: "a@b.c", subject: "hi" } })
      const notification = yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(notification.channel, insertChannel)
      assert.strictEqual(payloadQueue(notification), "mailers")
    }))

  it.effect("a program that inserts in a transaction and closes its pool at once still wakes the nodes", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      // A short-lived program of its own (a script, a serverless function): its pool closes as soon
      // as the insert returns. The wake-up was sent in the background, and lost with the pool.
      for (let round = 0; round < 5; round++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const sql = yield* SqlClient
          yield* sql.withTransaction(Oban.insert(SendEmail.job({ to: `script${round}@b.c`, subject: "hi" })))
        }).pipe(Effect.provide(Layer.fresh(pgLayer())), Effect.provide(Config.layer({ prefix }))))
        const notification = yield* Queue.take(notifications).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(payloadQueue(notification), "mailers")
      }
      assert.strictEqual(yield* countJobs, 5)
    }))

  it.effect("the inserts of one transaction, into several queues, wake every queue at its commit", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const sql = yield* SqlClient
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* Oban.insert(SendEmail.job({ to: "a@b.c", subject: "1" }, { queue: "tx_one" }))
        yield* Oban.insertAll([SendEmail.job({ to: "a@b.c", subject: "2" }, { queue: "tx_two" })])
        yield* Oban.insert(SendEmail.job({ to: "a@b.c", subject: "3" }, { queue: "tx_three" }))
      }))
      const woken = new Set<string>()
      for (let n = 0; n < 3; n++) woken.add(payloadQueue(yield* Queue.take(notifications).pipe(Effect.timeout("10 seconds"))))
      assert.deepStrictEqual([...woken].sort(), ["tx_one", "tx_three", "tx_two"])
    }))

  it.effect("a rolled-back insert leaves no row and sends no notification", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const sql = yield* SqlClient
      const failed = yield* sql.withTransaction(
        Effect.gen(function*() {
          yield* Oban.insert(SendEmail.job({ to: "x@y.z", subject: "never" }, { queue: "rolled_back" }))
          return yield* Effect.fail("business write failed" as const)
        })
      ).pipe(Effect.flip)
      assert.strictEqual(failed, "business write failed")
      assert.strictEqual(yield* countJobs, 0)
      // Notifications on one channel arrive in commit order: if the rolled-back
      // insert had notified, its payload would come before this one.
      yield* Oban.insert(SendEmail.job({ to: "x@y.z", subject: "later" }, { queue: "committed" }))
      const first = yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(payloadQueue(first), "committed")
      assert.strictEqual(yield* countJobs, 1)
    }))

  it.effect("scheduled jobs land in scheduled, with scheduled_at in the future", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const sql = yield* SqlClient
      const inFive = yield* Oban.insert(SendEmail.job({ to: "a", subject: "b" }, { scheduleIn: "5 minutes" }))
      const at = new Date(Date.now() + 3_600_000)
      const atHour = yield* Oban.insert(SendEmail.job({ to: "a", subject: "c" }, { scheduledAt: at }))
      const atDateTime = yield* Oban.insert(
        SendEmail.job({ to: "a", subject: "d" }, { scheduledAt: DateTime.makeUnsafe(at) })
      )
      const past = yield* Oban.insert(SendEmail.job({ to: "a", subject: "e" }, { scheduledAt: new Date(0), queue: "past" }))
      assert.strictEqual(inFive.state, "scheduled")
      const [db] = yield* sql<{ now: Date }>`SELECT now() AS now`
      const delta = inFive.scheduledAt.getTime() - inFive.insertedAt.getTime()
      assert.strictEqual(delta, 5 * 60_000)
      assert.isTrue(inFive.scheduledAt.getTime() > db!.now.getTime())
      assert.strictEqual(atHour.state, "scheduled")
      assert.strictEqual(atHour.scheduledAt.getTime(), at.getTime())
      assert.strictEqual(atDateTime.scheduledAt.getTime(), at.getTime())
      // A time in the past is due now: available, and it notifies.
      assert.strictEqual(past.state, "available")
      const first = yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(payloadQueue(first), "past")
    }))

  it.effect("per-job options override the worker's defaults; tags add to the worker's", () =>
    Effect.gen(function*() {
      yield* truncate
      const Tagged = Worker.make("Tagged", {
        args: Schema.Struct({ n: Schema.Number }),
        tags: ["base"],
        priority: 3,
        perform: () => Effect.void
      })
      const job = yield* Oban.insert(
        Tagged.job({ n: 1 }, { queue: "other", priority: 9, maxAttempts: 1, tags: ["extra"], meta: { source: "test" } })
      )
      assert.deepStrictEqual(
        [job.queue, job.priority, job.maxAttempts, job.tags, job.meta["source"]],
        ["other", 9, 1, ["base", "extra"], "test"]
      )
      // No tracer is installed (Effect's native one, no backend) and no span is current: nothing to continue.
      assert.notProperty(job.meta, "traceparent")
      const defaults = yield* Oban.insert(Tagged.job({ n: 2 }))
      assert.deepStrictEqual([defaults.queue, defaults.priority, defaults.maxAttempts], ["default", 3, 20])
    }))

  it.effect("args are stored as the worker's schema encodes them to JSON, and returned as given", () =>
    Effect.gen(function*() {
      yield* truncate
      const at = new Date("2026-01-02T03:04:05.000Z")
      const job = yield* Oban.insert(Resize.job({ imageId: 7, at }))
      assert.deepStrictEqual(job.args, { imageId: 7, at })
      const stored = yield* Oban.getJob(job.id)
      assert.deepStrictEqual(Option.getOrThrow(stored).args, { imageId: 7, at: "2026-01-02T03:04:05.000Z" })
    }))

  it.effect("insertAll writes 10,000 jobs in one call with one notification per queue", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const queues = ["q_a", "q_b", "q_c"]
      const requests = Array.from({ length: 10_000 }, (_, i) =>
        SendEmail.job({ to: `u${i}@example.com`, subject: `n${i}` }, { queue: queues[i % 3]! }))
      const jobs = yield* Oban.insertAll(requests)
      assert.strictEqual(jobs.length, 10_000)
      // Returned in request order, with increasing ids.
      assert.strictEqual((jobs[1234]!.args as { subject: string }).subject, "n1234")
      assert.isTrue(jobs.every((job, i) => i === 0 || job.id > jobs[i - 1]!.id))
      assert.strictEqual(yield* countJobs, 10_000)
      // A marker after the batch: everything before it is the batch's notifications.
      yield* Oban.insert(SendEmail.job({ to: "m", subject: "marker" }, { queue: "marker" }))
      const seen: Array<string> = []
      while (true) {
        const notification = yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"))
        const queue = payloadQueue(notification)
        if (queue === "marker") break
        seen.push(queue)
      }
      expect(seen.sort()).toEqual(queues)
    }))

  it.effect("a batch's shared meta and tags are stored with every job, call after call of the prepared statement", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      // Past the fifth execution PostgreSQL may run the prepared statement with a generic plan.
      for (let call = 0; call < 8; call++) {
        const tags = [`call-${call}`, "shared \"tag\""]
        const jobs = yield* Oban.insertAll([
          SendEmail.job({ to: "a", subject: `${call}` }, { meta: { call }, tags }),
          SendEmail.job({ to: "b", subject: `${call}` }, { meta: { call }, tags })
        ])
        const rows = yield* sql<{ readonly meta: { readonly call: number }; readonly tags: ReadonlyArray<string> }>`
          SELECT meta, tags FROM ${sql(prefix)}.oban_jobs_all WHERE id IN ${sql.in(jobs.map((job) => job.id))} ORDER BY id`
        assert.deepStrictEqual(rows.map((row) => [row.meta.call, row.tags]), [[call, tags], [call, tags]])
        assert.deepStrictEqual(jobs.map((job) => [job.meta["call"], job.tags]), [[call, tags], [call, tags]])
      }
    }))

  it.effect("concurrent single inserts outside a transaction each wake their queue", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      // One of them finds no other insert in flight and wakes its queue in its own statement; the
      // rest go through the after-commit waker. Every queue is woken either way.
      const queues = Array.from({ length: 30 }, (_, i) => `c${i}`)
      yield* Effect.forEach(queues, (queue) => Oban.insert(SendEmail.job({ to: "a", subject: queue }, { queue })), {
        concurrency: "unbounded"
      })
      const seen = new Set<string>()
      while (seen.size < queues.length) {
        seen.add(payloadQueue(yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds"))))
      }
      expect([...seen].sort()).toEqual([...queues].sort())
      assert.strictEqual(yield* countJobs, 30)
    }))

  it.effect("a batch mixing every field variant returns exactly the stored jobs and wakes only queues with due jobs", () =>
    Effect.gen(function*() {
      yield* truncate
      const notifications = yield* listen
      const at = new Date(Date.now() + 3_600_000)
      const requests = [
        SendEmail.job({ to: "a", subject: "plain" }),
        SendEmail.job({ to: "b", subject: "tags" }, { tags: ["x", "y \"quoted\" {,}", "NULL"], queue: "tagged" }),
        SendEmail.job({ to: "c", subject: "meta" }, { meta: { source: "test", nested: { n: [1, null] } }, priority: 7 }),
        SendEmail.job({ to: "d", subject: "in" }, { scheduleIn: "5 minutes", queue: "later" }),
        SendEmail.job({ to: "e", subject: "at" }, { scheduledAt: at, queue: "later", maxAttempts: 2 }),
        SendEmail.job({ to: "f", subject: "past" }, { scheduledAt: new Date(0), queue: "past" }),
        SendEmail.job({ to: "g", subject: "zero" }, { scheduleIn: 0, queue: "zero" })
      ]
      const jobs = yield* Oban.insertAll(requests)
      assert.deepStrictEqual(jobs.map((job) => job.state), [
        "available",
        "available",
        "available",
        "scheduled",
        "scheduled",
        "available",
        "available"
      ])
      // The insert returns the stored job, marked as no conflict.
      for (const job of jobs) {
        assert.deepStrictEqual(job, { ...Option.getOrThrow(yield* Oban.getJob(job.id)), conflict: false })
      }
      yield* Oban.insert(SendEmail.job({ to: "m", subject: "marker" }, { queue: "marker" }))
      const seen: Array<string> = []
      while (true) {
        const queue = payloadQueue(yield* Queue.take(notifications).pipe(Effect.timeout("5 seconds")))
        if (queue === "marker") break
        seen.push(queue)
      }
      expect(seen.sort()).toEqual(["mailers", "past", "tagged", "zero"])
    }))

  it.effect("in effect clock mode, inserts stamp and schedule with Effect's Clock", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* TestClock.setTime(Date.UTC(2030, 0, 1))
      const due = yield* Oban.insert(SendEmail.job({ to: "a", subject: "now" }))
      const later = yield* Oban.insert(SendEmail.job({ to: "a", subject: "later" }, { scheduleIn: "1 hour" }))
      assert.strictEqual(due.insertedAt.toISOString(), "2030-01-01T00:00:00.000Z")
      // 2030 is in the database's future, but "now" is the test clock: due at once.
      assert.strictEqual(due.state, "available")
      assert.strictEqual(later.state, "scheduled")
      assert.strictEqual(later.scheduledAt.toISOString(), "2030-01-01T01:00:00.000Z")
    }).pipe(Effect.provide([ObanClock.layerEffect, TestClock.layer()])))

  it.effect("workers without args, and null args, insert as JSON null", () =>
    Effect.gen(function*() {
      yield* truncate
      const NoArgs = Worker.make("NoArgs", { args: Schema.Void, perform: () => Effect.void })
      const Nullable = Worker.make("Nullable", { args: Schema.NullOr(Schema.String), perform: () => Effect.void })
      const [none, nullable] = yield* Oban.insertAll([NoArgs.job(undefined), Nullable.job(null)])
      const sql = yield* SqlClient
      const rows = yield* sql<{ kind: string }>`
        SELECT jsonb_typeof(args) AS kind FROM ${sql(prefix)}.oban_jobs_all WHERE id IN (${none!.id}, ${nullable!.id})`
      assert.deepStrictEqual(rows, [{ kind: "null" }, { kind: "null" }])
      // Returned as given (typed by the worker), stored as JSON null.
      assert.strictEqual(none!.args, undefined)
      assert.strictEqual(nullable!.args, null)
      assert.strictEqual(Option.getOrThrow(yield* Oban.getJob(none!.id)).args, null)
    }))

  it.effect("text with a literal backslash-u0000 and names of 128 astral characters read back exactly", () =>
    Effect.gen(function*() {
      yield* truncate
      const text = "C:\\u0000dir \\ud800 😀"
      const queue = "😀".repeat(128)
      const inserted = yield* Oban.insert(
        SendEmail.job({ to: text, subject: "s" }, { queue, tags: [text], meta: { [text]: text } })
      )
      const job = Option.getOrThrow(yield* Oban.getJob(inserted.id))
      assert.deepStrictEqual([job.args, job.queue, job.tags, job.meta[text]], [{ to: text, subject: "s" }, queue, [text], text])
    }))

  it.effect("scheduledAt from 0001-01-01 to 9999-12-31 reads back to the millisecond", () =>
    Effect.gen(function*() {
      yield* truncate
      const dates = [new Date("0001-01-01T00:00:00.000Z"), new Date("9999-12-31T23:59:59.999Z")]
      const jobs = yield* Oban.insertAll(dates.map((scheduledAt) => SendEmail.job({ to: "a", subject: "s" }, { scheduledAt })))
      const stored = yield* Effect.forEach(jobs, (job) => Effect.map(Oban.getJob(job.id), Option.getOrThrow))
      assert.deepStrictEqual(stored.map((job) => job.scheduledAt.toISOString()), dates.map((date) => date.toISOString()))
      assert.deepStrictEqual(stored.map((job) => job.state), ["available", "scheduled"])
    }))

  it.effect("a batch over 32 MiB of JSON is split into statements that commit or roll back together", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const big = (i: number) => SendEmail.job({ to: `${i}`.padEnd(1024 * 1024 - 100, "x"), subject: `n${i}` })
      const requests = Array.from({ length: 34 }, (_, i) => big(i))
      const jobs = yield* Oban.insertAll(requests)
      assert.deepStrictEqual(jobs.map((job) => (job.args as { subject: string }).subject), requests.map((_, i) => `n${i}`))
      assert.strictEqual(yield* countJobs, 34)
      yield* truncate
      // The database refuses the last job, in the second statement: the first statement's jobs go too.
      yield* sql.unsafe(`CREATE FUNCTION "${prefix}".refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.worker = 'Poison' THEN RAISE EXCEPTION 'poison'; END IF; RETURN NEW; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER refuse_poison BEFORE INSERT ON "${prefix}".oban_jobs
        FOR EACH ROW EXECUTE FUNCTION "${prefix}".refuse_poison()`)
      const poisoned = yield* Oban.insertAll([...requests, { ...SendEmail.job({ to: "a", subject: "s" }), worker: "Poison" }])
        .pipe(Effect.flip, Effect.ensuring(sql.unsafe(`DROP TRIGGER refuse_poison ON "${prefix}".oban_jobs`).pipe(Effect.orDie)))
      assert.strictEqual(poisoned._tag, "SqlError")
      assert.strictEqual(yield* countJobs, 0)
    }), 60_000)

  it.effect("a batch of more than 100,000 jobs is split into statements and returns the jobs in order", () =>
    Effect.gen(function*() {
      yield* truncate
      const requests = Array.from({ length: 100_001 }, (_, i) => SendEmail.job({ to: "a", subject: `n${i}` }))
      const jobs = yield* Oban.insertAll(requests)
      assert.strictEqual(jobs.length, 100_001)
      assert.strictEqual((jobs[100_000]!.args as { subject: string }).subject, "n100000")
      assert.isTrue(jobs.every((job, i) => i === 0 || job.id > jobs[i - 1]!.id))
      assert.strictEqual(yield* countJobs, 100_001)
    }), 60_000)

  it.effect("insertAll of nothing is a no-op", () =>
    Effect.gen(function*() {
      yield* truncate
      assert.deepStrictEqual(yield* Oban.insertAll([]), [])
      assert.strictEqual(yield* countJobs, 0)
    }))

  it.effect("insertAll of something that is not iterable is an InvalidJobError, not a defect", () =>
    Effect.gen(function*() {
      for (const careless of [undefined, null, 42, {}]) {
        const error = yield* Oban.insertAll(careless as unknown as Iterable<Worker.JobRequest>).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidJobError")
        if (error._tag === "InvalidJobError") assert.include(error.message, "insertAll takes an iterable of job requests")
      }
      assert.strictEqual(yield* countJobs, 0)
    }))
})

const job = (options: Worker.JobOptions = {}) => SendEmail.job({ to: "a", subject: "s" }, options)

const throwingArgs = (): { to: string; subject: string } =>
  Object.defineProperty({ subject: "s" }, "to", {
    enumerable: true,
    get() {
      throw new Error("getter")
    }
  }) as never

/** Job options whose `field` throws when read. */
const throwingOption = (field: keyof Worker.JobOptions): Worker.JobOptions =>
  Object.defineProperty({}, field, {
    enumerable: true,
    get() {
      throw new Error(`${field} getter`)
    }
  })

describe("bad input", () => {
  const cases: ReadonlyArray<readonly [string, () => Worker.JobRequest, string]> = [
    ["args that do not encode", () => SendEmail.job({ to: 1 as unknown as string, subject: "s" }), "args"],
    ["an empty queue", () => SendEmail.job({ to: "a", subject: "s" }, { queue: "" }), "queue"],
    ["an overlong queue", () => SendEmail.job({ to: "a", subject: "s" }, { queue: "q".repeat(129) }), "queue"],
    ["a queue with a leading space", () => SendEmail.job({ to: "a", subject: "s" }, { queue: " mail" }), "queue"],
    ["a queue with a trailing newline", () => SendEmail.job({ to: "a", subject: "s" }, { queue: "mail\n" }), "queue"],
    ["priority 10", () => SendEmail.job({ to: "a", subject: "s" }, { priority: 10 }), "priority"],
    ["priority -1", () => SendEmail.job({ to: "a", subject: "s" }, { priority: -1 }), "priority"],
    ["priority 1.5", () => SendEmail.job({ to: "a", subject: "s" }, { priority: 1.5 }), "priority"],
    ["maxAttempts 0", () => SendEmail.job({ to: "a", subject: "s" }, { maxAttempts: 0 }), "maxAttempts"],
    ["a negative delay", () => SendEmail.job({ to: "a", subject: "s" }, { scheduleIn: -1000 }), "scheduleIn"],
    ["an infinite delay", () => SendEmail.job({ to: "a", subject: "s" }, { scheduleIn: "Infinity" }), "scheduleIn"],
    ["an invalid date", () => SendEmail.job({ to: "a", subject: "s" }, { scheduledAt: new Date("nope") }), "scheduledAt"],
    [
      "both a delay and a date",
      () => SendEmail.job({ to: "a", subject: "s" }, { scheduleIn: "1 second", scheduledAt: new Date() }),
      "scheduleIn"
    ],
    ["args over the size limit", () => SendEmail.job({ to: "a".repeat(1024 * 1024), subject: "s" }), "args"],
    ["args with a NUL character", () => SendEmail.job({ to: "a\u0000b", subject: "s" }), "args"],
    ["an empty tag", () => SendEmail.job({ to: "a", subject: "s" }, { tags: [""] }), "tags"],
    ["meta that is not an object", () => SendEmail.job({ to: "a", subject: "s" }, { meta: [] as never }), "meta"],
    ["meta with a bigint", () => SendEmail.job({ to: "a", subject: "s" }, { meta: { n: 1n } }), "meta"],
    ["args with a lone surrogate", () => SendEmail.job({ to: "a\ud800", subject: "s" }), "args"],
    ["a meta key with a lone surrogate", () => job({ meta: { ["k\udc00"]: 1 } }), "meta"],
    ["a meta value with a lone surrogate", () => job({ meta: { k: "\ud800x" } }), "meta"],
    ["a tag with a lone surrogate", () => job({ tags: ["\ud800"] }), "tags"],
    ["a queue with a lone surrogate", () => job({ queue: "q\ud800" }), "queue"],
    ["a worker name with a lone surrogate", () => ({ ...job(), worker: "W\udfff" }), "worker"],
    ["a scheduledAt in year 10000", () => job({ scheduledAt: new Date("+010000-01-01T00:00:00Z") }), "scheduledAt"],
    ["a scheduledAt before year 1", () => job({ scheduledAt: new Date("0000-12-31T23:59:59.999Z") }), "scheduledAt"],
    ["a scheduleIn over 1000 years", () => job({ scheduleIn: "365251 days" }), "scheduleIn"],
    ["a scheduleIn past year 275760", () => job({ scheduleIn: 9e15 }), "scheduleIn"],
    ["a NaN scheduleIn", () => job({ scheduleIn: Number.NaN }), "scheduleIn"],
    ["a NaN in a duration object", () => job({ scheduleIn: { seconds: Number.NaN } }), "scheduleIn"],
    ["meta that is a Date", () => job({ meta: new Date(0) as never }), "meta"],
    ["meta that is a Map", () => job({ meta: new Map() as never }), "meta"],
    ["meta that is a boxed value", () => job({ meta: new String("x") as never }), "meta"],
    ["meta holding NaN", () => job({ meta: { n: Number.NaN } }), "meta"],
    ["meta holding undefined", () => job({ meta: { n: undefined } }), "meta"],
    ["meta holding a function", () => job({ meta: { f: () => 1 } }), "meta"],
    ["meta with a toJSON method", () => job({ meta: { toJSON: () => ({ other: 1 }) } }), "meta"],
    ["meta over 64 KiB", () => job({ meta: { big: "m".repeat(64 * 1024) } }), "meta"],
    ["a number as the queue", () => job({ queue: 42 as never }), "queue"],
    ["an array as the queue", () => job({ queue: [1] as never }), "queue"],
    ["a number as the worker name", () => ({ ...job(), worker: 7 as never }), "worker"],
    ["a string as tags", () => job({ tags: "email" as never }), "tags"],
    ["a sparse tags array", () => job({ tags: ["a", , "c"] as never }), "tags"],
    ["a string priority", () => job({ priority: "3" as never }), "priority"],
    ["a null maxAttempts", () => job({ maxAttempts: null as never }), "maxAttempts"],
    ["a queue of 129 characters", () => job({ queue: "😀".repeat(129) }), "queue"],
    ["args with a throwing getter", () => SendEmail.job(throwingArgs()), "args"],
    ["args in a throwing Proxy", () => SendEmail.job(new Proxy({} as never, { get: () => { throw new Error("no") } })), "args"],
    // Options whose getters throw: `job` returns a request (it never throws at its caller), the insert refuses it.
    ...(["queue", "priority", "maxAttempts", "tags", "meta", "scheduleIn", "scheduledAt", "timeout", "backoff", "unique"] as const)
      .map((field) => [`a ${field} option whose getter throws`, () => job(throwingOption(field)), field] as const),
    ["options in a throwing Proxy", () => job(new Proxy({}, { get: () => { throw new Error("no") } })), "queue"],
    // A copy of such a request stays refused: it is not inserted with the worker's defaults.
    ["a copied request whose priority getter threw", () => ({ ...job(throwingOption("priority")), worker: "SendEmail" }), "priority"],
    // Options `job` does not know, which it would ignore (the job would run now, with 20 attempts): TypeScript
    // sees them in an object literal only, not in options built elsewhere.
    ["a misspelt option (schedulIn)", () => job({ schedulIn: "1 hour" } as never), "scheduleIn"],
    ["a misspelt option (maxAttempt)", () => job({ maxAttempt: 3 } as never), "maxAttempts"],
    ["an unknown option", () => job({ retries: 3 } as never), "options"],
    // No request at all: said so, not "reading worker threw: Cannot read properties of undefined".
    ["undefined as the request", () => undefined as never, "worker"],
    ["an empty object as the request", () => ({}) as never, "worker"]
  ]

  const badPrefix = uniquePrefix("bad")
  layer(testLayer(badPrefix), { excludeTestServices: true })((it) => {
    for (const [name, request, field] of cases) {
      it.effect(`${name} is an InvalidJobError on ${field} and writes nothing`, () =>
        Effect.gen(function*() {
          const error = yield* Oban.insert(request()).pipe(Effect.flip)
          assert.strictEqual(error._tag, "InvalidJobError")
          if (error._tag !== "InvalidJobError") return
          assert.strictEqual(error.field, field)
          assert.strictEqual(error.index, undefined)
          if (name.endsWith("whose getter throws") || name.startsWith("a copied request")) {
            assert.include(error.message, `reading ${field} threw: ${field} getter`)
          }
          if (name.endsWith("as the request")) assert.include(error.message, "a job request is what worker.job(args, options) returns")
          if (name === "a misspelt option (schedulIn)") {
            assert.include(error.message, `unknown option "schedulIn" in the job's options (did you mean "scheduleIn"?); known: queue, priority`)
          }
          const sql = yield* SqlClient
          const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(badPrefix)}.oban_jobs_all`
          assert.strictEqual(row!.n, 0)
        }))
    }

    it.effect("one bad request fails insertAll, names its index, and writes nothing", () =>
      Effect.gen(function*() {
        const requests = Array.from({ length: 100 }, (_, i) =>
          SendEmail.job({ to: "a", subject: "s" }, { priority: i === 42 ? 11 : 0 }))
        const error = yield* Oban.insertAll(requests).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidJobError")
        if (error._tag !== "InvalidJobError") return
        assert.strictEqual(error.index, 42)
        assert.strictEqual(error.field, "priority")
        assert.match(error.message, /request 42/)
        const sql = yield* SqlClient
        const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(badPrefix)}.oban_jobs_all`
        assert.strictEqual(row!.n, 0)
      }))

    it.effect("a one-request insertAll names index 0", () =>
      Effect.gen(function*() {
        const error = yield* Oban.insertAll([job({ priority: 10 })]).pipe(Effect.flip)
        assert.strictEqual(error._tag === "InvalidJobError" ? error.index : "other", 0)
      }))

    it.effect("the args limit is at most 8 MiB (a larger row could not be fetched)", () =>
      Effect.gen(function*() {
        const error = yield* Config.make({ maxArgsBytes: 8 * 1024 * 1024 + 1 }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidConfigError")
        assert.include(error.message, "maxArgsBytes must be an integer from 2 to 8388608 (8 MiB")
        const settings = yield* Config.make({ maxArgsBytes: 8 * 1024 * 1024 })
        assert.strictEqual(settings.maxArgsBytes, 8 * 1024 * 1024)
      }))

    it.effect("the args limit is configurable", () =>
      Effect.gen(function*() {
        const small = yield* Oban.insert(SendEmail.job({ to: "a".repeat(100), subject: "s" })).pipe(
          Effect.provide(Config.layer({ prefix: badPrefix, maxArgsBytes: 64 })),
          Effect.flip
        )
        assert.strictEqual(small._tag, "InvalidJobError")
        const job = yield* Oban.insert(SendEmail.job({ to: "a".repeat(100), subject: "s" }))
        assert.strictEqual(job.state, "available")
      }))
  })
})
