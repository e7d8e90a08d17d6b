/**
 * Inserting jobs inside a transaction another driver owns (`ExternalInsert`):
 * node-postgres and Kysely run the prepared statement in their own
 * transactions; the job exists exactly when they commit, a node runs it
 * when woken by the prepared wake-up, the caller's settings are untouched,
 * and bad requests fail as they do for `Oban.insert`.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option, Ref, Schema, Tracer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { CompiledQuery, Kysely, PostgresDialect, sql as kysql } from "kysely"
import pg from "pg"
import * as ExternalInsert from "../src/ExternalInsert.ts"
import * as Notifier from "../src/Notifier.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, report, testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, startNode, waitFor } from "./support/node.ts"
import { SendEmail } from "./support/workers.ts"

const prefix = uniquePrefix("external")
const accounts = `"${prefix}".accounts`

const performed = Ref.makeUnsafe(0)
const Welcome = Worker.make("Welcome", {
  args: Schema.Struct({ accountId: Schema.Int }),
  queue: "welcome",
  perform: () => Ref.update(performed, (n) => n + 1)
})
const Digest = Worker.make("Digest", {
  args: Schema.Struct({ userId: Schema.String }),
  queue: "digests",
  unique: { period: "forever", keys: ["userId"] },
  perform: () => Effect.void
})

/** The fields of an error, to compare two errors by value. */
const fieldsOf = (error: object): Record<string, unknown> => ({ ...error })

/** Runs `f` with a node-postgres client connected for the duration. */
const withPgClient = <A>(f: (client: pg.Client) => Promise<A>): Effect.Effect<A> =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: databaseUrl() })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => f(client)),
    (client) => Effect.promise(() => client.end())
  )

/** Empties the jobs and the business table of the transactions (creating it the first time). */
const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS ${accounts} (id int PRIMARY KEY, email text NOT NULL)`)
  yield* sql.unsafe(`TRUNCATE "${prefix}".oban_jobs, "${prefix}".oban_jobs_finished, ${accounts}`)
})

const jobCount = Effect.map(countByState(prefix), (counts) => Object.values(counts).reduce((a, b) => a + b, 0))

/** The settings a transaction might have set, as `SHOW` reports them inside it. */
const settingNames = ["synchronous_commit", "statement_timeout", "lock_timeout", "search_path", "TimeZone"]
const showSettings = async (client: pg.Client): Promise<Record<string, string>> => {
  const settings: Record<string, string> = {}
  for (const name of settingNames) {
    const result = await client.query<Record<string, string>>(`SHOW ${name}`)
    settings[name] = Object.values(result.rows[0]!)[0]!
  }
  return settings
}

layer(testLayer(prefix), { excludeTestServices: true })("ExternalInsert", (it) => {
  describe("node-postgres", () => {
    it.effect("BEGIN, business write, insert, COMMIT: the job exists, settings are untouched, the wake runs it", () =>
      Effect.gen(function*() {
        yield* truncate
        const { oban } = yield* startNode({ prefix, node: "ext", queues: { welcome: 2 }, workers: [Welcome], pollInterval: "1 hour" })
        // Its producer registered and its first fetch done: one still under way when the job commits
        // would run it without the wake-up below, and the check that nothing ran without it would fail.
        yield* oban.ready
        const sql = yield* SqlClient
        const name = Notifier.applicationName("ext")
        yield* waitFor(
          "the node's listener to connect",
          Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${name}`, (
            rows
          ) => rows[0]!.n === 1)
        )
        const prepared = yield* ExternalInsert.prepare(Welcome.job({ accountId: 7 }))
        assert.isDefined(prepared.wake)
        const { jobs, before, after } = yield* withPgClient(async (client) => {
          await client.query("BEGIN")
          await client.query("SET LOCAL synchronous_commit = remote_apply")
          await client.query("SET LOCAL lock_timeout = '3s'")
          await client.query(`INSERT INTO ${accounts} (id, email) VALUES (7, 'a@example.com')`)
          const before = await showSettings(client)
          const result = await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])
          const after = await showSettings(client)
          await client.query("COMMIT")
          return { jobs: prepared.jobs(result.rows), before, after }
        })
        assert.deepStrictEqual(after, before)
        assert.strictEqual(before["synchronous_commit"], "remote_apply")
        assert.strictEqual(jobs.length, 1)
        const job = jobs[0]!
        assert.strictEqual(job.state, "available")
        assert.strictEqual(job.worker, "Welcome")
        assert.strictEqual(job.queue, "welcome")
        assert.deepStrictEqual(job.args, { accountId: 7 })
        assert.strictEqual(job.conflict, false)
        const [row] = yield* sql<{ id: number; state: string }>`
          SELECT id::int AS id, state::text FROM ${sql(prefix)}.oban_jobs_all`
        assert.deepStrictEqual(row, { id: job.id, state: "available" })
        // Without the wake-up, a node polling once an hour leaves the job alone.
        yield* Effect.sleep("1500 millis")
        assert.strictEqual(yield* Ref.get(performed), 0)
        // The wake-up, sent after commit on another connection, makes it run. It is sent again every
        // 3 s in case the node's LISTEN was not confirmed yet (a connected listener is all we can see).
        const wake = prepared.wake!
        const sendWake = withPgClient(async (client) => {
          await client.query(wake.text, [...wake.values])
        })
        let checks = 0
        yield* waitFor(
          "the woken job to complete",
          Effect.gen(function*() {
            if (checks++ % 120 === 0) yield* sendWake
            return (yield* countByState(prefix))["completed"] === 1
          }),
          "15 seconds"
        )
        assert.strictEqual(yield* Ref.get(performed), 1)
      }))

    it.effect("ROLLBACK leaves no job (and no business row)", () =>
      Effect.gen(function*() {
        yield* truncate
        const prepared = yield* ExternalInsert.prepareAll([
          Welcome.job({ accountId: 1 }),
          SendEmail.job({ to: "a@b.c", subject: "hi" })
        ])
        const returned = yield* withPgClient(async (client) => {
          await client.query("BEGIN")
          await client.query(`INSERT INTO ${accounts} (id, email) VALUES (1, 'b@example.com')`)
          const result = await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])
          await client.query("ROLLBACK")
          return result.rows.length
        })
        assert.strictEqual(returned, 2)
        assert.strictEqual(yield* jobCount, 0)
        const sql = yield* SqlClient
        const rows = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${accounts}`)
        assert.strictEqual(rows[0]!.n, 0)
      }))

    it.effect("a batch returns its jobs in request order; scheduled jobs need no wake-up", () =>
      Effect.gen(function*() {
        yield* truncate
        const requests = [
          SendEmail.job({ to: "1", subject: "s" }, { scheduleIn: "1 hour", priority: 3, tags: ["x", "y\"z"] }),
          Welcome.job({ accountId: 2 }, { meta: { source: "signup" } }),
          SendEmail.job({ to: "3", subject: "s" }, { scheduledAt: new Date("2000-01-01T00:00:00Z") })
        ]
        const prepared = yield* ExternalInsert.prepareAll(requests)
        const jobs = yield* withPgClient(async (client) =>
          prepared.jobs((await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])).rows)
        )
        assert.deepStrictEqual(jobs.map((job) => [job.worker, job.state]), [
          ["SendEmail", "scheduled"],
          ["Welcome", "available"],
          ["SendEmail", "available"]
        ])
        assert.isTrue(jobs[0]!.id < jobs[1]!.id && jobs[1]!.id < jobs[2]!.id)
        assert.deepStrictEqual(jobs[0]!.tags, ["x", "y\"z"])
        assert.strictEqual(jobs[0]!.priority, 3)
        assert.deepStrictEqual(jobs[1]!.meta, { source: "signup" })
        assert.strictEqual(jobs[2]!.scheduledAt.toISOString(), "2000-01-01T00:00:00.000Z")
        // What `jobs` maps is what Oban reads back.
        for (const job of jobs) {
          const stored = Option.getOrThrow(yield* Oban.getJob(job.id))
          const { conflict: _, ...mapped } = job
          assert.deepStrictEqual(mapped, { ...stored })
        }
        assert.deepStrictEqual(JSON.parse(prepared.wake!.values[1]!), ["{\"queue\":\"welcome\"}", "{\"queue\":\"mailers\"}"])
        const later = yield* ExternalInsert.prepare(SendEmail.job({ to: "4", subject: "s" }, { scheduleIn: "5 minutes" }))
        assert.isUndefined(later.wake)
      }))

    it.effect("unique requests: a duplicate in the call and a later call return the existing job as a conflict", () =>
      Effect.gen(function*() {
        yield* truncate
        const run = (prepared: ExternalInsert.Prepared) =>
          withPgClient(async (client) => {
            await client.query("BEGIN")
            const result = await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])
            await client.query("COMMIT")
            return prepared.jobs(result.rows)
          })
        const first = yield* run(
          yield* ExternalInsert.prepareAll([
            Digest.job({ userId: "u1" }),
            Welcome.job({ accountId: 3 }),
            Digest.job({ userId: "u1" }),
            Digest.job({ userId: "u2" })
          ])
        )
        assert.deepStrictEqual(first.map((job) => job.conflict), [false, false, true, false])
        assert.strictEqual(first[2]!.id, first[0]!.id)
        assert.notStrictEqual(first[3]!.id, first[0]!.id)
        const second = yield* run(yield* ExternalInsert.prepare(Digest.job({ userId: "u1" })))
        assert.strictEqual(second[0]!.id, first[0]!.id)
        assert.isTrue(second[0]!.conflict)
        // Oban.insert sees the same key.
        const viaOban = yield* Oban.insert(Digest.job({ userId: "u2" }))
        assert.strictEqual(viaOban.id, first[3]!.id)
        assert.isTrue(viaOban.conflict)
        assert.strictEqual(yield* jobCount, 3)
      }))
  })

  it.effect("a batch of 20,000 jobs, half of them unique, is one statement and maps back in order", () =>
    Effect.gen(function*() {
      yield* truncate
      const count = 20_000
      const requests = Array.from({ length: count }, (_, i) =>
        i % 2 === 0 ? Welcome.job({ accountId: i }) : Digest.job({ userId: `u${i}` }))
      const started = Date.now()
      const prepared = yield* ExternalInsert.prepareAll(requests)
      const preparedIn = Date.now() - started
      const jobs = yield* withPgClient(async (client) =>
        prepared.jobs((await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])).rows)
      )
      const total = Date.now() - started
      report(`ExternalInsert: ${count} jobs (half unique): prepared in ${preparedIn} ms, inserted and mapped in ${total} ms`)
      assert.strictEqual(jobs.length, count)
      for (let i = 0; i < count; i += 997) {
        assert.deepStrictEqual(jobs[i]!.args, i % 2 === 0 ? { accountId: i } : { userId: `u${i}` })
      }
      assert.strictEqual(yield* jobCount, count)
    }))

  it.effect("Kysely: the job is inserted inside db.transaction() and committed with it", () =>
    Effect.gen(function*() {
      yield* truncate
      const prepared = yield* ExternalInsert.prepareAll([Welcome.job({ accountId: 9 }), Welcome.job({ accountId: 10 })])
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
      const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
      const jobs = yield* Effect.promise(async () => {
        try {
          const jobs = await db.transaction().execute(async (trx) => {
            await kysql`INSERT INTO ${kysql.raw(accounts)} (id, email) VALUES (9, 'k@example.com')`.execute(trx)
            const result = await trx.executeQuery<ExternalInsert.Row>(
              CompiledQuery.raw(prepared.insert.text, [...prepared.insert.values])
            )
            return prepared.jobs(result.rows)
          })
          if (prepared.wake !== undefined) {
            await db.executeQuery(CompiledQuery.raw(prepared.wake.text, [...prepared.wake.values]))
          }
          // A failing transaction rolls the job back with the business write.
          await db.transaction().execute(async (trx) => {
            await trx.executeQuery(CompiledQuery.raw(prepared.insert.text, [...prepared.insert.values]))
            throw new Error("business rule failed")
          }).catch(() => undefined)
          return jobs
        } finally {
          await db.destroy()
        }
      })
      assert.deepStrictEqual(jobs.map((job) => job.args), [{ accountId: 9 }, { accountId: 10 }])
      const sql = yield* SqlClient
      const rows = yield* sql<{ id: number }>`SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      assert.deepStrictEqual(rows.map((row) => row.id), jobs.map((job) => job.id))
    }))

  describe("bad requests fail as Oban.insert does, and write nothing", () => {
    const bad = [
      SendEmail.job({ to: "a", subject: "s" }, { priority: 12 }),
      SendEmail.job({ to: 5 as unknown as string, subject: "s" }),
      SendEmail.job({ to: "a", subject: "s" }, { queue: "" }),
      SendEmail.job({ to: "a", subject: "s" }, { queue: "mail " }),
      SendEmail.job({ to: "a", subject: "s" }, { scheduleIn: -5 }),
      SendEmail.job({ to: "a", subject: "s" }, { tags: [""] }),
      SendEmail.job({ to: "a", subject: "s" }, { unique: { states: ["completed"] } })
    ]
    it.effect("one request: the same InvalidJobError as Oban.insert", () =>
      Effect.gen(function*() {
        yield* truncate
        for (const request of bad) {
          const external = yield* Effect.flip(ExternalInsert.prepare(request))
          const oban = yield* Effect.flip(Oban.insert(request))
          assert.strictEqual(external._tag, "InvalidJobError")
          assert.deepStrictEqual(fieldsOf(external), fieldsOf(oban))
        }
        assert.strictEqual(yield* jobCount, 0)
        // A misspelt option of prepare's own would have inserted into "public": refused, naming it.
        const misspelt = yield* Effect.flip(ExternalInsert.prepare(bad[0]!, { prefx: "other" } as never))
        assert.deepStrictEqual([misspelt._tag, misspelt.message], [
          "InvalidConfigError",
          `unknown option "prefx" (did you mean "prefix"?); known: prefix, maxArgsBytes`
        ])
      }))

    it.effect("a batch: the same error with the index of the first bad request", () =>
      Effect.gen(function*() {
        yield* truncate
        for (const request of bad) {
          const batch = [Welcome.job({ accountId: 1 }), request, Welcome.job({ accountId: 2 })]
          const external = yield* Effect.flip(ExternalInsert.prepareAll(batch))
          const oban = yield* Effect.flip(Oban.insertAll(batch))
          assert.strictEqual(external._tag, "InvalidJobError")
          assert.strictEqual(external._tag === "InvalidJobError" ? external.index : undefined, 1)
          assert.deepStrictEqual(fieldsOf(external), fieldsOf(oban))
        }
        assert.strictEqual(yield* jobCount, 0)
        // No iterable at all (past the types): refused as insertAll refuses it, not a defect.
        const notIterable = yield* Effect.flip(ExternalInsert.prepareAll(null as unknown as []))
        assert.strictEqual(notIterable._tag, "InvalidJobError")
        assert.include(notIterable.message, "prepareAll takes an iterable of job requests (an array, say), not null")
      }))

    it.effect("unique requests replacing different fields in one call are refused on unique", () =>
      Effect.gen(function*() {
        const replacing = { unique: { period: "forever", keys: ["userId"], replace: ["args"] } } as const
        const error = yield* Effect.flip(ExternalInsert.prepareAll([
          Welcome.job({ accountId: 1 }),
          Digest.job({ userId: "a" }),
          Digest.job({ userId: "b" }),
          Digest.job({ userId: "c" }, replacing),
          Digest.job({ userId: "d" }, replacing)
        ]))
        assert.strictEqual(error._tag, "InvalidJobError")
        if (error._tag === "InvalidJobError") {
          assert.strictEqual(error.field, "unique")
          assert.strictEqual(error.index, 3)
          assert.include(error.message, "this one's key replaces args, request 1's replaces nothing")
        }
        // A key replaces every field any of its requests names: "a" replaces args here, so "b" is the one that differs.
        const merged = yield* Effect.flip(ExternalInsert.prepareAll([
          Digest.job({ userId: "a" }),
          Digest.job({ userId: "a" }, replacing),
          Digest.job({ userId: "b" })
        ]))
        assert.strictEqual(merged._tag, "InvalidJobError")
        if (merged._tag === "InvalidJobError") {
          assert.strictEqual(merged.index, 2)
          assert.include(merged.message, "this one's key replaces nothing, request 0's replaces args")
        }
      }))

    it.effect("the prepared jobs carry the caller's span as traceparent: an external parent too, none with tracing off", () =>
      Effect.gen(function*() {
        const carried = (prepared: ExternalInsert.Prepared) =>
          prepared.insert.values.join("").match(/00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]/)?.[0]
        const job = SendEmail.job({ to: "a", subject: "s" })
        const [span, inSpan] = yield* Effect.gen(function*() {
          return [yield* Effect.currentSpan, yield* ExternalInsert.prepare(job)] as const
        }).pipe(Effect.withSpan("request"))
        assert.strictEqual(carried(inSpan), `00-${span.traceId}-${span.spanId}-01`)
        const external = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" })
        const underExternal = yield* ExternalInsert.prepare(job).pipe(Effect.withParentSpan(external))
        assert.strictEqual(carried(underExternal), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        const off = yield* ExternalInsert.prepare(job).pipe(Effect.withSpan("request"), Effect.withTracerEnabled(false))
        assert.isUndefined(carried(off))
        assert.isUndefined(carried(yield* ExternalInsert.prepare(job)))
      }))

    it.effect("outside Effect, Effect.runSync throws the InvalidJobError itself", () =>
      Effect.sync(() => {
        assert.throws(
          () => Effect.runSync(ExternalInsert.prepare(SendEmail.job({ to: "a", subject: "s" }, { priority: -1 }))),
          /priority/
        )
      }))
  })
})
