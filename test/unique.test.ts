/**
 * Unique jobs against real PostgreSQL: conflicts return the existing row,
 * keys (subset, function), states, the period on TestClock, replace and its
 * safe states, insertAll with duplicates, transactions, bad options,
 * debounce, wake-ups and the testing kit's inline mode.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Queue, Ref, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import * as Events from "../src/Events.ts"
import * as Oban from "../src/Oban.ts"
import * as ObanClock from "../src/ObanClock.ts"
import * as ObanTest from "../src/Testing.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("unique")

const Sync = Worker.make("Sync", {
  args: Schema.Struct({ account: Schema.String, page: Schema.Int }),
  queue: "sync",
  unique: { period: "forever" },
  perform: () => Effect.void
})

const Plain = Worker.make("Plain", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

const rows = Effect.gen(function*() {
  const sql = yield* SqlClient
  return yield* sql<{ id: number; state: string; args: unknown; unique_key: string | null; unique_states: number | null }>`
    SELECT id::int AS id, state::text AS state, args, unique_key, unique_states FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
})

const setState = (id: number, state: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = ${state}::${sql(prefix)}.oban_job_state WHERE id = ${id}`
  })

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
})

/** Runs on TestClock at `millis` since the epoch, with the library stamping times from it. */
const onTestClock = <A, E, R>(millis: number, effect: Effect.Effect<A, E, R>) =>
  Effect.provide(
    Effect.andThen(TestClock.setTime(millis), effect).pipe(Effect.provideService(ObanClock.ObanClock, { mode: "effect" })),
    TestClock.layer()
  )

layer(testLayer(prefix), { excludeTestServices: true })("unique jobs", (it) => {
  it.effect("a conflict returns the existing job's args decoded by the worker's schema; undecodable ones fail the call and write nothing", () =>
    Effect.gen(function*() {
      yield* truncate
      const Dated = Worker.make("Dated", {
        args: Schema.Struct({ key: Schema.String, at: Schema.Date }),
        unique: { keys: ["key"], period: "forever" },
        perform: () => Effect.void
      })
      const at = new Date("2026-02-03T04:05:06.000Z")
      const first = yield* Oban.insert(Dated.job({ key: "k", at }))
      const again = yield* Oban.insert(Dated.job({ key: "k", at: new Date(0) }))
      assert.isTrue(again.conflict)
      assert.deepStrictEqual(again.args, { key: "k", at })
      // The stored args no longer decode (as after an incompatible schema change).
      const sql = yield* SqlClient
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{"key": "k", "at": "not a date"}' WHERE id = ${first.id}`
      const refused = yield* Oban.insertAll([Plain.job({ n: 1 }), Dated.job({ key: "k", at })]).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "InvalidJobError")
      assert.deepStrictEqual([(refused as { field: string }).field, (refused as { index?: number }).index], ["args", 1])
      assert.strictEqual((yield* rows).length, 1)
    }))

  it.effect("a conflict with a job of another worker (fields without worker) names that worker, not a schema change", () =>
    Effect.gen(function*() {
      yield* truncate
      const Short = Worker.make("Short", {
        args: Schema.Struct({ id: Schema.String }),
        unique: { period: "forever", fields: ["queue", "args"], keys: ["id"] },
        perform: () => Effect.void
      })
      const Long = Worker.make("Long", {
        args: Schema.Struct({ id: Schema.String, extra: Schema.Number }),
        unique: { period: "forever", fields: ["queue", "args"], keys: ["id"] },
        perform: () => Effect.void
      })
      const first = yield* Oban.insert(Short.job({ id: "1" }))
      const refused = yield* Oban.insert(Long.job({ id: "1", extra: 5 })).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "InvalidJobError")
      // Before, it said that job's stored args "no longer decode with the worker's schema", as after a schema change.
      assert.include(refused.message, `matches job ${first.id} of worker Short (its unique fields leave out "worker")`)
      assert.strictEqual((yield* rows).length, 1)
    }))

  it.effect("a lone insert that replaces fields of a job whose stored args no longer decode fails and changes nothing", () =>
    Effect.gen(function*() {
      yield* truncate
      const Dated = Worker.make("Dated", {
        args: Schema.Struct({ key: Schema.String, at: Schema.Date }),
        unique: { keys: ["key"], period: "forever", replace: ["priority"] },
        perform: () => Effect.void
      })
      const first = yield* Oban.insert(Dated.job({ key: "k", at: new Date(0) }, { priority: 1 }))
      const sql = yield* SqlClient
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{"key": "k", "at": "not a date"}' WHERE id = ${first.id}`
      // The upsert replaces the priority before the stored args are decoded: its own transaction rolls it back.
      const refused = yield* Effect.flip(Oban.insert(Dated.job({ key: "k", at: new Date(0) }, { priority: 7 })))
      assert.strictEqual(refused._tag, "InvalidJobError")
      const [row] = yield* sql<{ priority: number }>`SELECT priority FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${first.id}`
      assert.strictEqual(row!.priority, 1)
      assert.strictEqual((yield* rows).length, 1)
    }))

  it.effect("a second insert returns the existing row with conflict = true; plain jobs are never conflicts", () =>
    Effect.gen(function*() {
      yield* truncate
      const first = yield* Oban.insert(Sync.job({ account: "a", page: 1 }))
      const second = yield* Oban.insert(Sync.job({ account: "a", page: 1 }))
      assert.isFalse(first.conflict)
      assert.isTrue(second.conflict)
      assert.strictEqual(second.id, first.id)
      assert.deepStrictEqual(second.args, { account: "a", page: 1 })
      const other = yield* Oban.insert(Sync.job({ account: "a", page: 2 }))
      assert.isFalse(other.conflict)
      // The same args in another queue is another key (queue is part of it by default).
      const elsewhere = yield* Oban.insert(Sync.job({ account: "a", page: 1 }, { queue: "elsewhere" }))
      assert.isFalse(elsewhere.conflict)
      const plain = yield* Oban.insertAll([Plain.job({ n: 1 }), Plain.job({ n: 1 })])
      assert.deepStrictEqual(plain.map((job) => job.conflict), [false, false])
      const stored = yield* rows
      assert.strictEqual(stored.length, 5)
      assert.strictEqual(stored.filter((row) => row.unique_key === null).length, 2)
      // The key is the sha256 hex of its parts; "forever" adds no bucket.
      assert.match(stored[0]!.unique_key!, /^[0-9a-f]{64}$/)
    }))

  it.effect("`unique: false` turns a worker's uniqueness off for one insert", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* Oban.insert(Sync.job({ account: "a", page: 1 }))
      const again = yield* Oban.insert(Sync.job({ account: "a", page: 1 }, { unique: false }))
      assert.isFalse(again.conflict)
      assert.strictEqual((yield* rows).length, 2)
    }))

  it.effect("keys: a subset of args keys, or a key function, decides what counts", () =>
    Effect.gen(function*() {
      yield* truncate
      const byAccount = { period: "forever", keys: ["account"] } as const
      const a1 = yield* Oban.insert(Sync.job({ account: "a", page: 1 }, { unique: byAccount }))
      const a2 = yield* Oban.insert(Sync.job({ account: "a", page: 2 }, { unique: byAccount }))
      const b1 = yield* Oban.insert(Sync.job({ account: "b", page: 1 }, { unique: byAccount }))
      assert.deepStrictEqual([a1.conflict, a2.conflict, b1.conflict], [false, true, false])
      assert.strictEqual(a2.id, a1.id)
      assert.deepStrictEqual(a2.args, { account: "a", page: 1 }, "the existing job, not the request")
      const byParity = { period: "forever", keys: (args: { readonly page: number }) => ({ odd: args.page % 2 === 1 }) } as const
      const odd = yield* Oban.insert(Sync.job({ account: "x", page: 1 }, { unique: byParity }))
      const odd2 = yield* Oban.insert(Sync.job({ account: "y", page: 3 }, { unique: byParity }))
      const even = yield* Oban.insert(Sync.job({ account: "x", page: 2 }, { unique: byParity }))
      assert.deepStrictEqual([odd.conflict, odd2.conflict, even.conflict], [false, true, false])
      // fields without queue: the same args in another queue conflict.
      const anyQueue = { period: "forever", fields: ["worker", "args"] } as const
      const q1 = yield* Oban.insert(Sync.job({ account: "q", page: 1 }, { unique: anyQueue }))
      const q2 = yield* Oban.insert(Sync.job({ account: "q", page: 1 }, { unique: anyQueue, queue: "other" }))
      assert.deepStrictEqual([q1.conflict, q2.conflict, q2.queue], [false, true, "sync"])
    }))

  it.effect("states: a completed job blocks by default, and not when completed is left out; cancelled never blocks", () =>
    Effect.gen(function*() {
      yield* truncate
      const first = yield* Oban.insert(Sync.job({ account: "s", page: 1 }))
      yield* setState(first.id, "completed")
      const blocked = yield* Oban.insert(Sync.job({ account: "s", page: 1 }))
      assert.isTrue(blocked.conflict)
      assert.strictEqual(blocked.id, first.id)
      assert.strictEqual(blocked.state, "completed")

      const incomplete = {
        period: "forever",
        states: ["available", "scheduled", "executing", "retryable"]
      } as const
      const open = yield* Oban.insert(Sync.job({ account: "t", page: 1 }, { unique: incomplete }))
      const whileOpen = yield* Oban.insert(Sync.job({ account: "t", page: 1 }, { unique: incomplete }))
      assert.isTrue(whileOpen.conflict)
      yield* setState(open.id, "executing")
      assert.isTrue((yield* Oban.insert(Sync.job({ account: "t", page: 1 }, { unique: incomplete }))).conflict)
      yield* setState(open.id, "completed")
      const after = yield* Oban.insert(Sync.job({ account: "t", page: 1 }, { unique: incomplete }))
      assert.isFalse(after.conflict)
      assert.notStrictEqual(after.id, open.id)

      // Default states: a cancelled job frees its key.
      yield* setState(after.id, "cancelled")
      const third = yield* Oban.insert(Sync.job({ account: "t", page: 1 }))
      assert.isFalse(third.conflict)
      const stored = yield* rows
      // Bit mask: available 1 | scheduled 2 | executing 4 | retryable 8 | completed 16 | suspended 128.
      assert.strictEqual(stored.find((row) => row.id === third.id)!.unique_states, 159)
      assert.strictEqual(stored.find((row) => row.id === open.id)!.unique_states, 15)
    }))

  it.effect("period: a fixed window of the epoch on the insert's clock (TestClock)", () =>
    onTestClock(
      1_000 * 60_000, // the start of a minute
      Effect.gen(function*() {
        yield* truncate
        const minute = { period: "1 minute" } as const
        const first = yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: minute }))
        yield* TestClock.adjust("59 seconds")
        const inside = yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: minute }))
        assert.isTrue(inside.conflict)
        assert.strictEqual(inside.id, first.id)
        yield* TestClock.adjust("1 second")
        const next = yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: minute }))
        assert.isFalse(next.conflict)
        assert.strictEqual(next.insertedAt.getTime(), 1_001 * 60_000)
        const keys = (yield* rows).map((row) => row.unique_key!)
        assert.deepStrictEqual(keys.map((key) => key.split(":")[1]), ["1000", "1001"])
        assert.strictEqual(keys[0]!.split(":")[0], keys[1]!.split(":")[0])
        // The default period is 60 seconds, as in Oban: the same key as "1 minute".
        const defaulted = yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: {} }))
        assert.deepStrictEqual([defaulted.id, defaulted.conflict], [next.id, true])
        // Another period is another key.
        const hourly = yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: { period: "1 hour" } }))
        assert.isFalse(hourly.conflict)
        yield* TestClock.adjust("1 minute")
        assert.isFalse((yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: {} }))).conflict)
        assert.isTrue((yield* Oban.insert(Sync.job({ account: "p", page: 1 }, { unique: { period: "1 hour" } }))).conflict)
      })
    ))

  it.effect("replace overwrites each named field while the job waits, never while it executes or after", () =>
    Effect.gen(function*() {
      yield* truncate
      const keyed = { period: "forever", keys: ["account"] } as const
      const original = yield* Oban.insert(Sync.job({ account: "r", page: 1 }, { unique: keyed, scheduleIn: "1 hour" }))
      const everything = {
        ...keyed,
        replace: ["args", "meta", "tags", "priority", "maxAttempts", "scheduledAt"]
      } as const
      const replaced = yield* Oban.insert(
        Sync.job({ account: "r", page: 2 }, {
          unique: everything,
          meta: { v: 2 },
          tags: ["new"],
          priority: 5,
          maxAttempts: 3,
          scheduleIn: "2 hours"
        })
      )
      assert.isTrue(replaced.conflict)
      assert.strictEqual(replaced.id, original.id)
      assert.deepStrictEqual(
        [replaced.args, replaced.meta["v"], replaced.tags, replaced.priority, replaced.maxAttempts, replaced.state],
        [{ account: "r", page: 2 }, 2, ["new"], 5, 3, "scheduled"]
      )
      assert.strictEqual(replaced.scheduledAt.getTime() - replaced.insertedAt.getTime() >= 7_000_000, true)
      // Only the named field: priority alone.
      const onlyPriority = yield* Oban.insert(
        Sync.job({ account: "r", page: 3 }, { unique: { ...keyed, replace: ["priority"] }, priority: 9 })
      )
      assert.deepStrictEqual([onlyPriority.args, onlyPriority.priority], [{ account: "r", page: 2 }, 9])
      // Replacing the time with "now" makes the waiting job available.
      const due = yield* Oban.insert(Sync.job({ account: "r", page: 3 }, { unique: { ...keyed, replace: ["scheduledAt"] } }))
      assert.strictEqual(due.state, "available")
      // An executing job keeps everything.
      yield* setState(original.id, "executing")
      const refused = yield* Oban.insert(Sync.job({ account: "r", page: 4 }, { unique: everything, priority: 0 }))
      assert.isTrue(refused.conflict)
      assert.deepStrictEqual([refused.args, refused.priority, refused.state], [{ account: "r", page: 2 }, 9, "executing"])
      // So does a completed one.
      yield* setState(original.id, "completed")
      const finished = yield* Oban.insert(Sync.job({ account: "r", page: 5 }, { unique: everything }))
      assert.deepStrictEqual([finished.id, finished.args], [original.id, { account: "r", page: 2 }])
      // A retryable job is replaced but stays retryable.
      yield* setState(original.id, "retryable")
      const retry = yield* Oban.insert(Sync.job({ account: "r", page: 6 }, { unique: everything, scheduleIn: "1 minute" }))
      assert.deepStrictEqual([retry.args, retry.state], [{ account: "r", page: 6 }, "retryable"])
      // maxAttempts never drops below the attempts used.
      const sql = yield* SqlClient
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 2 WHERE id = ${original.id}`
      const fewer = yield* Oban.insert(Sync.job({ account: "r", page: 7 }, { unique: everything, maxAttempts: 1 }))
      assert.strictEqual(fewer.maxAttempts, 2)
    }))

  it.effect("insertAll: duplicates in one call share the first one's job; replaced fields come from the last", () =>
    Effect.gen(function*() {
      yield* truncate
      const existing = yield* Oban.insert(Sync.job({ account: "e", page: 1 }))
      const byAccount = { period: "forever", keys: ["account"], replace: ["args"] } as const
      const jobs = yield* Oban.insertAll([
        Plain.job({ n: 1 }),
        Sync.job({ account: "n", page: 1 }, { unique: byAccount }),
        Sync.job({ account: "e", page: 1 }),
        Plain.job({ n: 2 }),
        Sync.job({ account: "n", page: 2 }, { unique: byAccount }),
        Sync.job({ account: "n", page: 3 }, { unique: byAccount }),
        Sync.job({ account: "e", page: 1 }),
        Sync.job({ account: "m", page: 1 }, { unique: { period: "forever", keys: ["account"] } })
      ])
      assert.deepStrictEqual(jobs.map((job) => job.conflict), [false, false, true, false, true, true, true, false])
      assert.strictEqual(jobs[2]!.id, existing.id)
      assert.strictEqual(jobs[6]!.id, existing.id)
      assert.strictEqual(jobs[4]!.id, jobs[1]!.id)
      assert.strictEqual(jobs[5]!.id, jobs[1]!.id)
      assert.deepStrictEqual(jobs[1]!.args, { account: "n", page: 3 })
      assert.deepStrictEqual(jobs[5]!.args, { account: "n", page: 3 })
      assert.deepStrictEqual(jobs.map((job) => job.worker), ["Plain", "Sync", "Sync", "Plain", "Sync", "Sync", "Sync", "Sync"])
      const stored = yield* rows
      assert.strictEqual(stored.length, 5)
      assert.deepStrictEqual(stored.find((row) => row.id === jobs[1]!.id)!.args, { account: "n", page: 3 })
      // Against an existing job too: the last duplicate's args win.
      const again = yield* Oban.insertAll([
        Sync.job({ account: "n", page: 8 }, { unique: byAccount }),
        Sync.job({ account: "n", page: 9 }, { unique: byAccount })
      ])
      assert.deepStrictEqual(again.map((job) => [job.id, job.conflict]), [[jobs[1]!.id, true], [jobs[1]!.id, true]])
      assert.deepStrictEqual(again[0]!.args, { account: "n", page: 9 })
    }))

  it.effect("inside a rolled back transaction nothing stays, and the key is free again", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const failed = yield* sql.withTransaction(Effect.gen(function*() {
        const first = yield* Oban.insert(Sync.job({ account: "tx", page: 1 }))
        const second = yield* Oban.insert(Sync.job({ account: "tx", page: 1 }))
        assert.deepStrictEqual([second.id, second.conflict], [first.id, true])
        yield* Oban.insertAll([Sync.job({ account: "tx", page: 2 }), Plain.job({ n: 1 })])
        return yield* Effect.fail("rollback" as const)
      })).pipe(Effect.flip)
      assert.strictEqual(failed, "rollback")
      assert.strictEqual((yield* rows).length, 0)
      const fresh = yield* Oban.insert(Sync.job({ account: "tx", page: 1 }))
      assert.isFalse(fresh.conflict)
    }))

  it.effect("a bad unique option is an InvalidJobError and nothing is written", () =>
    Effect.gen(function*() {
      yield* truncate
      const bad: ReadonlyArray<[string, unknown]> = [
        ["unknown option", { perod: "1 minute" }],
        ["states without executing", { states: ["available", "scheduled", "retryable"] }],
        ["unknown state", { states: ["available", "scheduled", "executing", "retryable", "done"] }],
        ["negative period", { period: "-1 seconds" }],
        ["infinite period", { period: Infinity }],
        ["empty keys", { keys: [] }],
        ["keys without args", { keys: ["account"], fields: ["worker"] }],
        ["unknown replace", { replace: ["queue"] }],
        ["empty fields", { fields: [] }],
        ["not an object", "yes"],
        ["throwing key function", { keys: () => { throw new Error("boom") } }],
        ["key function returning a Map", { keys: () => new Map() }]
      ]
      for (const [label, unique] of bad) {
        const request = Sync.job({ account: "x", page: 1 }, { unique: unique as never })
        const error = yield* Oban.insert(request).pipe(Effect.flip)
        assert.isTrue(error._tag === "InvalidJobError" && error.field === "unique", `${label}: ${error.message}`)
        const batch = yield* Oban.insertAll([Plain.job({ n: 1 }), request]).pipe(Effect.flip)
        assert.isTrue(batch._tag === "InvalidJobError" && batch.index === 1, label)
      }
      // The message names the option as it is written.
      const zero = yield* Oban.insert(Sync.job({ account: "x", page: 1 }, { unique: { period: 0 } })).pipe(Effect.flip)
      assert.include(zero.message, "unique.period must be at least 1 millisecond")
      assert.strictEqual((yield* rows).length, 0)
    }))

  it.effect("debounce: scheduleIn with replace scheduledAt pushes the job back on each insert", () =>
    onTestClock(
      0,
      Effect.gen(function*() {
        yield* truncate
        const debounce = Sync.job({ account: "d", page: 1 }, {
          unique: { period: "forever", keys: ["account"], replace: ["scheduledAt", "args"] },
          scheduleIn: "10 seconds"
        })
        const first = yield* Oban.insert(debounce)
        assert.strictEqual(first.scheduledAt.getTime(), 10_000)
        yield* TestClock.adjust("4 seconds")
        const second = yield* Oban.insert(debounce)
        yield* TestClock.adjust("4 seconds")
        const third = yield* Oban.insert(Sync.job({ account: "d", page: 3 }, {
          unique: { period: "forever", keys: ["account"], replace: ["scheduledAt", "args"] },
          scheduleIn: "10 seconds"
        }))
        assert.deepStrictEqual([second.id, third.id], [first.id, first.id])
        assert.deepStrictEqual([second.scheduledAt.getTime(), third.scheduledAt.getTime()], [14_000, 18_000])
        assert.deepStrictEqual([third.state, third.args], ["scheduled", { account: "d", page: 3 }])
        assert.strictEqual((yield* rows).length, 1)
      })
    ))

  it.effect("a conflict sends no wake-up; a replace that makes a job due does", () =>
    Effect.gen(function*() {
      yield* truncate
      const pg = yield* PgClient.PgClient
      const notifications = yield* pg.listen(`${prefix}.oban_insert`)
      const take = Effect.map(
        Queue.take(notifications).pipe(Effect.timeout("5 seconds")),
        (notification) => (JSON.parse(notification.payload) as { queue: string }).queue
      )
      yield* Oban.insert(Sync.job({ account: "w", page: 1 }, { queue: "first" }))
      assert.strictEqual(yield* take, "first")
      yield* Oban.insert(Sync.job({ account: "w", page: 1 }, { queue: "first" }))
      yield* Oban.insertAll([Sync.job({ account: "w", page: 1 }, { queue: "first" })])
      // Notifications arrive in commit order: had a conflict woken "first", it would come before this.
      yield* Oban.insert(Plain.job({ n: 1 }, { queue: "marker" }))
      assert.strictEqual(yield* take, "marker")
      const later = { period: "forever", replace: ["scheduledAt"] } as const
      const waiting = yield* Oban.insert(Sync.job({ account: "w", page: 2 }, { queue: "later", unique: later, scheduleIn: "1 hour" }))
      assert.strictEqual(waiting.state, "scheduled")
      const due = yield* Oban.insert(Sync.job({ account: "w", page: 2 }, { queue: "later", unique: later }))
      assert.deepStrictEqual([due.id, due.state, due.conflict], [waiting.id, "available", true])
      assert.strictEqual(yield* take, "later")
    }))

  it.effect("events: a conflict publishes no `inserted` event", () =>
    Effect.gen(function*() {
      yield* truncate
      const hub = yield* Events.makeHub
      const seen = yield* Ref.make<ReadonlyArray<number>>([])
      yield* Events.stream(hub).pipe(
        Stream.runForEach((event) => Ref.update(seen, (ids) => [...ids, event.jobId])),
        Effect.forkScoped
      )
      while (!(yield* Effect.provideService(Events.listening, Events.EventHub, hub))) yield* Effect.sleep("10 millis")
      yield* Effect.sleep("50 millis")
      const inserts = Effect.gen(function*() {
        const first = yield* Oban.insert(Sync.job({ account: "ev", page: 1 }))
        const again = yield* Oban.insertAll([Sync.job({ account: "ev", page: 1 }), Plain.job({ n: 1 })])
        const marker = yield* Oban.insert(Plain.job({ n: 2 }))
        return [first.id, again[1]!.id, marker.id]
      }).pipe(Effect.provideService(Events.EventHub, hub))
      const expected = yield* inserts
      for (let i = 0; i < 500 && (yield* Ref.get(seen)).length < 3; i++) yield* Effect.sleep("10 millis")
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(yield* Ref.get(seen), expected)
    }))
})

const inlinePrefix = uniquePrefix("unique_inline")
let performed = 0
const Once = Worker.make("Once", {
  args: Schema.Struct({ n: Schema.Int }),
  unique: { period: "forever" },
  perform: () => Effect.sync(() => void performed++)
})
layer(
  ObanTest.layer({ mode: "inline", workers: [Once], prefix: inlinePrefix }).pipe(
    Layer.provideMerge(testLayer(inlinePrefix))
  ),
  { excludeTestServices: true }
)("unique jobs in the testing kit's inline mode", (it) => {
  it.effect("the first insert runs the job; a conflicting one does not run it again", () =>
    Effect.gen(function*() {
      const first = yield* Oban.insert(Once.job({ n: 1 }))
      const second = yield* Oban.insert(Once.job({ n: 1 }))
      assert.strictEqual(performed, 1)
      assert.deepStrictEqual([second.id, second.conflict, second.state], [first.id, true, "completed"])
      yield* ObanTest.assertEnqueued({ worker: Once, state: "completed", args: { n: 1 } })
    }))
})
