/**
 * Jobs: every filter, keyset pages (also while jobs are inserted), counts,
 * and the bulk actions, against real PostgreSQL with no node running.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { countLive } from "../src/internal/sql/jobQueries.ts"
import { report, testLayer, uniquePrefix } from "./support/db.ts"
import { explain, scansOf } from "./support/plans.ts"
import { answeredByLiveProducer } from "./support/node.ts"

const prefix = uniquePrefix("jobs")
const Mail = Worker.make("Mail", { args: Schema.Struct({ to: Schema.String, opts: Schema.optional(Schema.Struct({ lang: Schema.String })) }), perform: () => Effect.void })
const Report = Worker.make("Report", { args: Schema.Struct({ kind: Schema.String }), perform: () => Effect.void })

interface Seeded {
  readonly id: number
  readonly queue: string
  readonly worker: string
  readonly state: string
  readonly tags: ReadonlyArray<string>
  readonly args: Record<string, unknown>
  readonly meta: Record<string, unknown>
  readonly inserted: number
  readonly scheduled: number
  readonly attempted: number | null
  readonly completed: number | null
}

const base = Date.parse("2026-01-01T00:00:00Z")
const hour = 3_600_000
const states = ["available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled"] as const

/** 40 jobs spread over queues, workers, states, tags, args, meta and times, written as given. */
const seed = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
  const rows: Array<Seeded> = []
  for (let n = 0; n < 40; n++) {
    const mail = n % 3 !== 0
    const inserted = yield* Oban.insert<unknown>(
      mail
        ? Mail.job({ to: `u${n % 5}`, ...(n % 4 === 0 ? { opts: { lang: n % 8 === 0 ? "fr" : "en" } } : {}) }, {
          queue: n % 2 === 0 ? "mailers" : "default",
          tags: n % 5 === 0 ? ["vip", "eu"] : n % 5 === 1 ? ["eu"] : [],
          meta: { tenant: `t${n % 3}`, batch: n < 20 ? 1 : 2 }
        })
        : Report.job({ kind: n % 2 === 0 ? "daily" : "weekly" }, { queue: "reports", tags: ["vip"] })
    )
    const state = states[n % states.length]!
    const insertedAt = base + n * hour
    const attempted = state === "available" || state === "scheduled" ? null : insertedAt + 60_000
    const completed = state === "completed" ? insertedAt + 120_000 : null
    yield* sql`
      UPDATE ${sql(prefix)}.oban_jobs SET state = ${state}::${sql(prefix)}.oban_job_state,
        inserted_at = ${new Date(insertedAt)}, scheduled_at = ${new Date(insertedAt + 30 * 60_000)},
        attempted_at = ${attempted === null ? null : new Date(attempted)},
        completed_at = ${completed === null ? null : new Date(completed)},
        attempt = ${attempted === null ? 0 : 1}
      WHERE id = ${inserted.id}`
    rows.push({
      id: inserted.id,
      queue: inserted.queue,
      worker: inserted.worker,
      state,
      tags: inserted.tags,
      args: JSON.parse(JSON.stringify(inserted.args)),
      meta: inserted.meta as Record<string, unknown>,
      inserted: insertedAt,
      scheduled: insertedAt + 30 * 60_000,
      attempted,
      completed
    })
  }
  return rows
})

/** Every job matching the filter, following `next` from page to page. */
const walk = (filter: Jobs.Filter, sort: Jobs.Sort = {}, limit = 7) =>
  Effect.gen(function*() {
    const ids: Array<number> = []
    let cursor: string | undefined
    do {
      const page: Jobs.Page = yield* Jobs.list({ filter, sort, limit, cursor })
      ids.push(...page.jobs.map((job) => job.id))
      cursor = page.next
    } while (cursor !== undefined)
    return ids
  })

const contains = (outer: unknown, inner: unknown): boolean => {
  if (typeof inner !== "object" || inner === null) return outer === inner
  if (typeof outer !== "object" || outer === null) return false
  return Object.entries(inner).every(([key, value]) => contains((outer as Record<string, unknown>)[key], value))
}

const sorted = (ids: ReadonlyArray<number>) => [...ids].sort((a, b) => a - b)

layer(testLayer(prefix, { maxConnections: 4 }), { excludeTestServices: true })("Jobs (no node running)", (it) => {
  it.effect("every filter, alone and combined, returns exactly the matching jobs", () =>
    Effect.gen(function*() {
      const rows = yield* seed
      const at = (hours: number) => new Date(base + hours * hour)
      const cases: ReadonlyArray<readonly [Jobs.Filter, (row: Seeded) => boolean]> = [
        [{}, () => true],
        [{ ids: [rows[3]!.id, rows[17]!.id, 99999999] }, (row) => row.id === rows[3]!.id || row.id === rows[17]!.id],
        [{ queues: ["mailers", "reports"] }, (row) => row.queue === "mailers" || row.queue === "reports"],
        [{ states: ["retryable", "discarded"] }, (row) => row.state === "retryable" || row.state === "discarded"],
        [{ states: ["available"] }, (row) => row.state === "available"],
        [{ workers: ["Report"] }, (row) => row.worker === "Report"],
        [{ tags: ["vip", "eu"] }, (row) => row.tags.includes("vip") && row.tags.includes("eu")],
        [{ tags: ["vip", "eu"], tagsMatch: "any" }, (row) => row.tags.includes("vip") || row.tags.includes("eu")],
        [{ args: { to: "u2" } }, (row) => row.args["to"] === "u2"],
        [{ args: { opts: { lang: "fr" } } }, (row) => contains(row.args, { opts: { lang: "fr" } })],
        [{ meta: { tenant: "t1", batch: 2 } }, (row) => row.meta["tenant"] === "t1" && row.meta["batch"] === 2],
        [{ inserted: { after: at(10), before: at(20) } }, (row) => row.inserted >= base + 10 * hour && row.inserted < base + 20 * hour],
        [{ scheduled: { before: at(5) } }, (row) => row.scheduled < base + 5 * hour],
        [{ attempted: { after: at(30) } }, (row) => row.attempted !== null && row.attempted >= base + 30 * hour],
        [{ completed: { after: at(0) } }, (row) => row.completed !== null],
        [
          { queues: ["mailers"], states: ["retryable", "completed", "cancelled"], tags: ["eu"], meta: { batch: 1 } },
          (row) =>
            row.queue === "mailers" && ["retryable", "completed", "cancelled"].includes(row.state) &&
            row.tags.includes("eu") && row.meta["batch"] === 1
        ]
      ]
      for (const [filter, predicate] of cases) {
        const expected = rows.filter(predicate).map((row) => row.id)
        const found = yield* walk(filter, { by: "id", order: "asc" })
        assert.deepStrictEqual(found, sorted(expected), JSON.stringify(filter))
      }
      // Every case but the empty filter and the ids filter selects something and leaves something out.
      for (const [filter, predicate] of cases.slice(2)) {
        const n = rows.filter(predicate).length
        assert.isTrue(n > 0 && n < rows.length, `case selects a proper subset: ${JSON.stringify(filter)}`)
      }
    }))

  it.effect("bad filters, sorts, limits and cursors fail with InvalidFilterError before any SQL", () =>
    Effect.gen(function*() {
      const refused = (options: unknown) =>
        Effect.map(Effect.exit(Jobs.list(options as Jobs.ListOptions)), (exit) => {
          if (!Exit.isFailure(exit)) assert.fail(`not refused: ${Object.keys(options as object).join(", ")}`)
          const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
          return error?._tag === "Fail" ? (error.error as { _tag: string; field: string }) : undefined
        })
      assert.strictEqual((yield* refused({ filter: { states: ["stuck"] } }))?._tag, "InvalidFilterError")
      assert.strictEqual((yield* refused({ filter: { queues: [""] } }))?.field, "queues")
      assert.strictEqual((yield* refused({ filter: { ids: [0] } }))?.field, "ids")
      assert.strictEqual(
        (yield* refused({ filter: { inserted: { after: new Date(2), before: new Date(1) } } }))?.field,
        "inserted"
      )
      assert.strictEqual((yield* refused({ filter: { scheduled: { after: new Date(NaN) } } }))?._tag, "InvalidFilterError")
      assert.strictEqual((yield* refused({ filter: { args: "x" } }))?._tag, "InvalidFilterError")
      // What PostgreSQL or JSON.stringify cannot take is bad input too, never a database error or a stack overflow.
      let deep: Record<string, unknown> = { leaf: 1 }
      for (let level = 0; level < 5_000; level++) deep = { a: deep }
      assert.strictEqual((yield* refused({ filter: { args: deep } }))?.field, "args")
      assert.strictEqual((yield* refused({ filter: { meta: { s: "a\u0000b" } } }))?.field, "meta")
      assert.strictEqual((yield* refused({ filter: { workers: ["Mailer\u0000"] } }))?.field, "workers")
      assert.strictEqual((yield* refused({ filter: { tags: ["\uD800"] } }))?.field, "tags")
      assert.strictEqual((yield* refused({ sort: { by: "priority" } }))?.field, "sort")
      assert.strictEqual((yield* refused({ limit: 0 }))?.field, "limit")
      assert.strictEqual((yield* refused({ cursor: "not-a-cursor" }))?.field, "cursor")
      const page = yield* Jobs.list({ limit: 1, sort: { by: "id" } })
      assert.strictEqual((yield* refused({ cursor: page.next, sort: { by: "scheduledAt" } }))?.field, "cursor")
      const bulk = yield* Effect.exit(Jobs.cancel({ queues: ["x"] }, { batchSize: 0 }))
      assert.isTrue(Exit.isFailure(bulk))
    }))

  it.effect("sorts by id both ways and by timestamps at microsecond precision", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* seed
      const all = sorted(rows.map((row) => row.id))
      assert.deepStrictEqual(yield* walk({}, { by: "id", order: "desc" }, 6), [...all].reverse())
      // Ten jobs scheduled within one millisecond, and two at exactly the same instant.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET scheduled_at = '2030-01-01T00:00:00Z'::timestamptz
                 + ((id % 10) * interval '1 microsecond') WHERE id IN ${sql.in(all.slice(0, 10))}`
      const expected = yield* sql<{ readonly id: string }>`SELECT id::text FROM ${sql(prefix)}.oban_jobs_all
        ORDER BY scheduled_at, id`
      assert.deepStrictEqual(yield* walk({}, { by: "scheduledAt", order: "asc" }, 3), expected.map((row) => Number(row.id)))
      const reversed = yield* walk({}, { by: "scheduledAt", order: "desc" }, 4)
      assert.deepStrictEqual(reversed, expected.map((row) => Number(row.id)).reverse())
      const byInsert = yield* walk({ queues: ["mailers"] }, { by: "insertedAt", order: "asc" }, 5)
      assert.deepStrictEqual(byInsert, sorted(rows.filter((row) => row.queue === "mailers").map((row) => row.id)))
    }))

  it.effect("a walk while jobs are inserted visits every job that existed once (no skip, no repeat)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
      yield* Oban.insertAll(Array.from({ length: 3000 }, (_, n) => Report.job({ kind: `k${n}` }, { scheduleIn: `${n % 97} minutes` })))
      const before = (yield* sql<{ readonly id: string }>`SELECT id::text FROM ${sql(prefix)}.oban_jobs_all`).map((row) => Number(row.id))
      // Another fiber inserts jobs (due at every kind of time) while the walks go on: a bounded number,
      // at a bounded pace, or an ascending walk could chase the inserter forever (each page finds more).
      const inserter = yield* Effect.forkChild(Effect.forEach(
        Array.from({ length: 150 }),
        () =>
          Effect.andThen(
            Oban.insertAll(Array.from({ length: 20 }, (_, n) => Report.job({ kind: "new" }, { scheduleIn: `${n * 5} minutes` }))),
            Effect.sleep("5 millis")
          ),
        { discard: true }
      ))
      for (const sort of [{ by: "id", order: "asc" }, { by: "id", order: "desc" }, { by: "scheduledAt", order: "asc" }] as const) {
        const seen = yield* walk({ workers: ["Report"] }, sort, 101)
        assert.strictEqual(new Set(seen).size, seen.length, `no repeats (${sort.by} ${sort.order})`)
        const visited = new Set(seen)
        assert.isTrue(before.every((id) => visited.has(id)), `every earlier job visited (${sort.by} ${sort.order})`)
      }
      yield* Fiber.interrupt(inserter)
      const total = (yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`)[0]!.n
      assert.isTrue(total > 3000, "jobs were inserted during the walks")
    }))

  it.effect("counts per queue and state: exact on a small table, live states exact and the rest estimated on a large one", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* seed
      const exact = yield* Jobs.counts()
      assert.deepStrictEqual(exact.estimated, [])
      for (const queue of ["default", "mailers", "reports"]) {
        const entry = exact.queues.find((item) => item.queue === queue)!
        for (const state of states) {
          assert.strictEqual(
            entry.states[state],
            rows.filter((row) => row.queue === queue && row.state === state).length,
            `${queue} ${state}`
          )
        }
      }
      // Make the table look large to the planner: statistics, then the estimate path.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, completed_at)
                 SELECT 'completed', CASE WHEN n % 4 = 0 THEN 'reports' ELSE 'mailers' END, 'Mail', now()
                 FROM generate_series(1, 20000) AS n`
      yield* sql.unsafe(`VACUUM ANALYZE "${prefix}".oban_jobs`)
      // The live counts read their partial indexes, never the finished rows; scheduled and retryable
      // jobs are counted from the staging index alone (it holds their queue and state: migration 10).
      const plan = yield* explain(countLive(sql, prefix), { analyze: true })
      const scans = scansOf(plan, "oban_jobs")
      assert.isTrue(scans.length >= 3)
      for (const scan of scans) assert.notStrictEqual(scan["Node Type"], "Seq Scan", JSON.stringify(scans))
      assert.includeMembers(scans.map((scan) => scan["Index Name"] ?? ""), ["oban_jobs_fetch_idx", "oban_jobs_executing_idx"])
      const staging = scans.find((scan) => scan["Index Name"] === "oban_jobs_staging_idx")
      assert.strictEqual(staging?.["Node Type"], "Index Only Scan", JSON.stringify(scans))
      const estimated = yield* Jobs.counts({ exactBelow: 1000 })
      assert.deepStrictEqual(estimated.estimated, ["completed", "discarded", "cancelled", "suspended"])
      const mailers = estimated.queues.find((item) => item.queue === "mailers")!.states
      assert.strictEqual(mailers.available, rows.filter((row) => row.queue === "mailers" && row.state === "available").length)
      assert.strictEqual(mailers.executing, rows.filter((row) => row.queue === "mailers" && row.state === "executing").length)
      const finished = mailers.completed + mailers.discarded + mailers.cancelled
      assert.isTrue(Math.abs(finished - 15_000) < 1_500, `mailers' finished jobs estimated near 15000, got ${finished}`)
      const forced = yield* Jobs.counts({ exact: true, exactBelow: 1000 })
      assert.deepStrictEqual(forced.estimated, [])
      const started = Date.now()
      yield* Jobs.counts({ exactBelow: 1000 })
      report(`counts (estimate path, 20k rows): ${Date.now() - started} ms`)
    }))

  it.effect("bulk cancel, retry, reschedule and delete change every matching eligible job in bounded batches", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* seed
      const stateOf = (id: number) =>
        Effect.map(sql<{ readonly state: string }>`SELECT state::text FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`,
          (found) => found[0]?.state)
      const cancellable = rows.filter((row) => row.queue !== "reports" && !["completed", "discarded", "cancelled"].includes(row.state))
      // The executing ones run on a live node, as far as a cancel can tell.
      yield* answeredByLiveProducer(prefix, rows.filter((row) => row.state === "executing").map((row) => row.id))
      const cancelled = yield* Jobs.cancel({ queues: ["mailers", "default"] }, { batchSize: 4 })
      assert.strictEqual(cancelled.changed, cancellable.length)
      assert.strictEqual(cancelled.batches, Math.ceil(cancellable.length / 4))
      // An executing job's cancel is only requested: its row stays executing until its attempt ends
      // (no node runs these seeded rows, so they stay so), and a retry must not run it beside itself.
      const requested = (id: number) =>
        Effect.map(sql<{ readonly requested: boolean }>`
          SELECT cancel_requested_at IS NOT NULL AS requested FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`,
          (found) => found[0]?.requested)
      for (const row of cancellable) {
        const running = row.state === "executing"
        assert.strictEqual(yield* stateOf(row.id), running ? "executing" : "cancelled")
        assert.strictEqual(yield* requested(row.id), running)
      }
      assert.isTrue(cancellable.some((row) => row.state === "executing"))
      for (const row of rows.filter((row) => row.queue === "reports")) assert.strictEqual(yield* stateOf(row.id), row.state)
      // Retry: all of them but the executing ones, and none is visited twice although a retried job still matches.
      const retried = yield* Jobs.retry({ queues: ["mailers"] }, { batchSize: 3 })
      const mailers = rows.filter((row) => row.queue === "mailers")
      const waiting = mailers.filter((row) => row.state !== "executing")
      // The cancel above left every one of them cancelled, finished or executing with a cancel request.
      assert.strictEqual(retried.changed, waiting.length)
      for (const row of mailers) {
        assert.strictEqual(yield* stateOf(row.id), row.state === "executing" ? "executing" : "available")
      }
      // Reschedule into the future, then into the past.
      const later = new Date(Date.now() + hour)
      const moved = yield* Jobs.reschedule({ queues: ["mailers"] }, later, { batchSize: 5 })
      assert.strictEqual(moved.changed, waiting.length)
      for (const row of waiting) assert.strictEqual(yield* stateOf(row.id), "scheduled")
      yield* Jobs.reschedule({ queues: ["mailers"], ids: [waiting[0]!.id] }, new Date(Date.now() - 1000))
      assert.strictEqual(yield* stateOf(waiting[0]!.id), "available")
      // Delete leaves executing jobs alone.
      const reports = rows.filter((row) => row.queue === "reports")
      const deleted = yield* Jobs.remove({ queues: ["reports"] }, { batchSize: 2 })
      assert.strictEqual(deleted.changed, reports.filter((row) => row.state !== "executing").length)
      for (const row of reports) {
        assert.strictEqual(yield* stateOf(row.id), row.state === "executing" ? "executing" : undefined)
      }
    }))

  it.effect("a retry whose unique key another job holds is skipped and reported; the rest of its batch is retried", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
      const jobs = yield* Oban.insertAll(Array.from({ length: 6 }, (_, n) => Report.job({ kind: `u${n}` })))
      const ids = jobs.map((job) => job.id)
      // Keys held while available (mask 1): jobs 0 and 1 share key A (0 holds it, 1 is discarded);
      // jobs 2 and 3 share key B and are both discarded; 4 and 5 have no key.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'discarded', discarded_at = now() WHERE id IN ${sql.in(ids.slice(1))}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET unique_states = 1, unique_key = 'A' WHERE id IN ${sql.in([ids[0]!, ids[1]!])}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET unique_states = 1, unique_key = 'B' WHERE id IN ${sql.in([ids[2]!, ids[3]!])}`
      const result = yield* Jobs.retry({ states: ["discarded"] })
      assert.strictEqual(result.changed, 3, "jobs 2 (or 3), 4 and 5")
      assert.deepStrictEqual(result.skipped.map((skip) => skip.id), [ids[1]!, ids[3]!])
      // The reason names the holder: job 0 for key A, and job 2, retried in the same batch, for key B.
      assert.deepStrictEqual(result.skipped.map((skip) => skip.reason), [
        `unique key held by job ${ids[0]}`,
        `unique key held by job ${ids[2]}`
      ])
      const now = yield* sql<{ readonly id: string; readonly state: string }>`
        SELECT id::text, state::text FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      assert.deepStrictEqual(now.map((row) => row.state), ["available", "discarded", "available", "discarded", "available", "available"])
    }))

  it.effect("bulk actions on 100,000 jobs run in bounded batches", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args, scheduled_at)
                 SELECT 'scheduled', 'bulk', 'Report', jsonb_build_object('kind', 'k' || n), now() + interval '1 hour'
                 FROM generate_series(1, 100000) AS n`
      let started = Date.now()
      const cancelled = yield* Jobs.cancel({ queues: ["bulk"] }, { batchSize: 5000 })
      const cancelMillis = Date.now() - started
      assert.strictEqual(cancelled.changed, 100_000)
      assert.strictEqual(cancelled.batches, 20)
      started = Date.now()
      const retried = yield* Jobs.retry({ queues: ["bulk"], states: ["cancelled"] }, { batchSize: 5000 })
      const retryMillis = Date.now() - started
      assert.strictEqual(retried.changed, 100_000)
      started = Date.now()
      const deleted = yield* Jobs.remove({ queues: ["bulk"] }, { batchSize: 5000 })
      const deleteMillis = Date.now() - started
      assert.strictEqual(deleted.changed, 100_000)
      const left = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
      assert.strictEqual(left[0]!.n, 0)
      report(`bulk on 100,000 jobs (batches of 5000): cancel ${cancelMillis} ms, retry ${retryMillis} ms, delete ${deleteMillis} ms`)
    }), 120_000)
})
