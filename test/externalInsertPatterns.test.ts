/**
 * The guide's patterns for inserting jobs from another driver's transaction
 * (docs/external-transactions.md), under the load a walkthrough found broke
 * them: node-postgres sending the wake-up on a second pooled connection while
 * it held the first hung a pool of 10 at 10 concurrent calls, and a failed
 * wake-up failed a call whose transaction had committed; Kysely with
 * `CamelCasePlugin` renamed the result column; Drizzle had no example.
 */
import { assert, layer } from "@effect/vitest"
import { drizzle } from "drizzle-orm/node-postgres"
import { pgTable, text } from "drizzle-orm/pg-core"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { CamelCasePlugin, CompiledQuery, Kysely, PostgresDialect } from "kysely"
import pg from "pg"
import * as ExternalInsert from "../src/ExternalInsert.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("external_patterns")
const SendWelcome = Worker.make("PatternWelcome", {
  args: Schema.Struct({ userId: Schema.String }),
  queue: "welcome",
  perform: () => Effect.void
})

const prepareOptions = { prefix }

/**
 * The guide's node-postgres example: the wake-up on the transaction's own connection, after COMMIT, never
 * failing the call; a client whose connection failed is discarded. `afterCommit` lets a test break it there.
 */
const signUpWith = (pool: pg.Pool, users: string, afterCommit: (client: pg.PoolClient) => Promise<unknown> = async () => {}) =>
async (email: string) => {
  const prepared = Effect.runSync(ExternalInsert.prepare(SendWelcome.job({ userId: email }), prepareOptions))
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    let rows: ReadonlyArray<ExternalInsert.Row>
    try {
      await client.query("BEGIN")
      await client.query(`INSERT INTO ${users} (email) VALUES ($1)`, [email])
      rows = (await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])).rows
      await client.query("COMMIT")
    } catch (error) {
      await client.query("ROLLBACK").catch((rollbackError: Error) => (broken = rollbackError))
      throw error
    }
    await afterCommit(client)
    if (prepared.wake !== undefined) {
      await client.query(prepared.wake.text, [...prepared.wake.values]).catch((wakeError: Error) => (broken = wakeError))
    }
    return prepared.jobs(rows)[0]!
  } finally {
    client.release(broken)
  }
}

const countRows = (table: string) =>
  Effect.flatMap(SqlClient, (sql) => Effect.map(sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`), ([row]) => row!.n))

layer(testLayer(prefix), { excludeTestServices: true })("ExternalInsert: the guide's patterns", (it) => {
  it.effect("node-postgres: 20 sign-ups at once on a pool of 2 all commit and return their job", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const users = `"${prefix}".pg_users`
      yield* sql.unsafe(`CREATE TABLE ${users} (email text PRIMARY KEY)`)
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, connectionTimeoutMillis: 5_000 })
      const jobs = yield* Effect.promise(async () => {
        try {
          const signUp = signUpWith(pool, users)
          return await Promise.all(Array.from({ length: 20 }, (_, i) => signUp(`user${i}@example.com`)))
        } finally {
          await pool.end()
        }
      })
      assert.strictEqual(new Set(jobs.map((job) => job.id)).size, 20)
      assert.strictEqual(yield* countRows(users), 20)
      assert.strictEqual(yield* countRows(`"${prefix}".oban_jobs`), 20)
    }))

  it.effect("node-postgres: a wake-up that fails after COMMIT does not fail the call, and the broken client leaves the pool", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const users = `"${prefix}".pg_broken_users`
      yield* sql.unsafe(`CREATE TABLE ${users} (email text PRIMARY KEY)`)
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1, connectionTimeoutMillis: 5_000 })
      pool.on("error", () => undefined)
      const outcome = yield* Effect.promise(async () => {
        try {
          // The server ends the connection between COMMIT and the wake-up.
          const killed = await signUpWith(pool, users, async (client) => {
            // node-postgres reports the end of a checked-out client's connection as an event too.
            client.on("error", () => undefined)
            const [row] = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows
            const admin = new pg.Client({ connectionString: databaseUrl() })
            await admin.connect()
            await admin.query("SELECT pg_terminate_backend($1)", [row!.pid])
            await admin.end()
          })("cut@example.com")
          // The pool's one connection was discarded, so the next call gets a new one and works.
          const next = await signUpWith(pool, users)("next@example.com")
          return { killed, next }
        } finally {
          await pool.end()
        }
      })
      assert.deepStrictEqual([outcome.killed.args, outcome.next.args], [{ userId: "cut@example.com" }, { userId: "next@example.com" }])
      assert.strictEqual(yield* countRows(users), 2)
    }))

  it.effect("Kysely with CamelCasePlugin: the renamed result column is read too", () =>
    Effect.gen(function*() {
      const prepared = yield* ExternalInsert.prepareAll([SendWelcome.job({ userId: "a" }), SendWelcome.job({ userId: "b" })], prepareOptions)
      const db = new Kysely<Record<string, never>>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl(), max: 2 }) }),
        plugins: [new CamelCasePlugin()]
      })
      const jobs = yield* Effect.promise(async () => {
        try {
          return await db.transaction().execute(async (trx) => {
            const result = await trx.executeQuery<ExternalInsert.Row>(CompiledQuery.raw(prepared.insert.text, [...prepared.insert.values]))
            assert.deepStrictEqual(Object.keys(result.rows[0]!), ["obanJob"])
            return prepared.jobs(result.rows)
          })
        } finally {
          await db.destroy()
        }
      })
      assert.deepStrictEqual(jobs.map((job) => job.args), [{ userId: "a" }, { userId: "b" }])
    }))

  it.effect("Drizzle over a node-postgres client: the business write and the job commit, or roll back, together", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE TABLE "${prefix}".drizzle_users (email text PRIMARY KEY)`)
      const users = pgTable("drizzle_users", { email: text("email").notNull() })
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, options: `-c search_path="${prefix}"` })
      const signUp = async (email: string, fail: boolean) => {
        const prepared = Effect.runSync(ExternalInsert.prepare(SendWelcome.job({ userId: email }), prepareOptions))
        const client = await pool.connect()
        try {
          const db = drizzle({ client })
          const job = await db.transaction(async (tx) => {
            await tx.insert(users).values({ email })
            const result = await client.query<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])
            if (fail) throw new Error("business rule failed")
            return prepared.jobs(result.rows)[0]!
          })
          if (prepared.wake !== undefined) await client.query(prepared.wake.text, [...prepared.wake.values]).catch(() => undefined)
          return job
        } finally {
          client.release()
        }
      }
      const outcome = yield* Effect.promise(async () => {
        try {
          const job = await signUp("kept@example.com", false)
          const failed = await signUp("gone@example.com", true).then(() => "committed", (error: Error) => error.message)
          return { job, failed }
        } finally {
          await pool.end()
        }
      })
      assert.deepStrictEqual([outcome.job.args, outcome.failed], [{ userId: "kept@example.com" }, "business rule failed"])
      assert.strictEqual(yield* countRows(`"${prefix}".drizzle_users`), 1)
      const jobs = yield* sql.unsafe<{ user_id: string }>(`SELECT args ->> 'userId' AS user_id FROM "${prefix}".oban_jobs WHERE worker = 'PatternWelcome' AND args ->> 'userId' IN ('kept@example.com', 'gone@example.com')`)
      assert.deepStrictEqual(jobs.map((row) => row.user_id), ["kept@example.com"])
    }))

  it.effect("rows that are not the insert's fail with a TypeError that says so", () =>
    Effect.gen(function*() {
      const prepared = yield* ExternalInsert.prepare(SendWelcome.job({ userId: "x" }), prepareOptions)
      assert.throws(() => prepared.jobs([{ oban_job: "{}" }]), TypeError, /is not a job the insert statement returned/)
      assert.throws(() => prepared.jobs([{ oban_job: "not json" }]), TypeError, /is not a job the insert statement returned/)
    }))
})
