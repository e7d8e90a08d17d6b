/**
 * Unique inserts racing across OS processes: 4 processes x 8 fibers insert
 * the same unique job 1,000 times at once. Exactly one row; every call
 * returns it; exactly one call inserted it; with replace, the row carries the
 * values of the insert that committed last.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { SqlClient } from "effect/sql/SqlClient"
import { databaseUrl, testLayer, uniquePrefix, report } from "./support/db.ts"

const script = fileURLToPath(new URL("./support/uniqueInserter.ts", import.meta.url))

interface Inserter {
  readonly ready: Promise<void>
  readonly exited: Promise<number | null>
  readonly output: () => string
}

const spawnInserter = (env: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.sync((): Inserter & { readonly child: ChildProcess } => {
      const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
      let log = ""
      let markReady: () => void = () => {}
      const ready = new Promise<void>((resolve) => (markReady = resolve))
      child.stdout!.on("data", (chunk: Buffer) => {
        log += chunk.toString()
        if (log.includes(`"event":"ready"`)) markReady()
      })
      child.stderr!.on("data", (chunk: Buffer) => {
        log += chunk.toString()
      })
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      return { child, ready, exited, output: () => log }
    }),
    (inserter) =>
      Effect.promise(async () => {
        if (inserter.child.exitCode === null) inserter.child.kill("SIGKILL")
        await inserter.exited
      })
  )

const within = <A>(what: string, promise: () => Promise<A>, millis: number, output: () => string) =>
  Effect.promise(promise).pipe(
    Effect.timeoutOrElse({ duration: millis, orElse: () => Effect.die(new Error(`${what} timed out:\n${output()}`)) })
  )

describe("unique inserts across OS processes", () => {
  it.live("4 processes x 8 fibers, 1,000 inserts of one unique job: one row, every call returns it, last commit wins", () => {
    const prefix = uniquePrefix("unique_race")
    return Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE ${sql(prefix)}.go (at timestamptz)`
      yield* sql`CREATE SEQUENCE ${sql(prefix)}.calls_seq`
      yield* sql`CREATE TABLE ${sql(prefix)}.calls (value int PRIMARY KEY, job_id bigint NOT NULL, conflict bool NOT NULL, seq bigint NOT NULL)`
      // 32 fibers; 1,000 calls: the first 8 fibers make 32 calls, the others 31.
      const inserters = yield* Effect.forEach([0, 1, 2, 3], (p) =>
        spawnInserter({
          DATABASE_URL: databaseUrl(),
          PREFIX: prefix,
          FIBERS: "8",
          CALLS: JSON.stringify(Array.from({ length: 8 }, (_, f) => (p * 8 + f < 8 ? 32 : 31))),
          BASE: String(p * 100_000)
        }))
      yield* Effect.forEach(inserters, (inserter) => within("start", () => inserter.ready, 30_000, inserter.output))
      const startedAt = Date.now()
      yield* sql`INSERT INTO ${sql(prefix)}.go VALUES (now())`
      const codes = yield* Effect.forEach(inserters, (inserter) => within("inserting", () => inserter.exited, 60_000, inserter.output))
      assert.deepStrictEqual(codes, [0, 0, 0, 0], inserters.map((inserter) => inserter.output()).join("\n"))
      report(`1,000 racing unique inserts took ${Date.now() - startedAt} ms`)

      const jobs = yield* sql<{ id: string; args: { value: number }; meta: { value: number } }>`
        SELECT id::text AS id, args, meta FROM ${sql(prefix)}.oban_jobs_all`
      assert.strictEqual(jobs.length, 1, "exactly one row")
      const [job] = jobs
      const [summary] = yield* sql<{ calls: number; ids: number; fresh: number; id: string }>`
        SELECT count(*)::int AS calls, count(DISTINCT job_id)::int AS ids,
               count(*) FILTER (WHERE NOT conflict)::int AS fresh, min(job_id)::text AS id
        FROM ${sql(prefix)}.calls`
      assert.deepStrictEqual(summary, { calls: 1000, ids: 1, fresh: 1, id: job!.id })
      const [last] = yield* sql<{ value: number }>`SELECT value FROM ${sql(prefix)}.calls ORDER BY seq DESC LIMIT 1`
      assert.strictEqual(job!.args.value, last!.value, "args of the last committed insert")
      assert.strictEqual(job!.meta.value, last!.value, "meta of the last committed insert")
      // The first in commit order is the one that inserted.
      const [first] = yield* sql<{ conflict: boolean }>`SELECT conflict FROM ${sql(prefix)}.calls ORDER BY seq LIMIT 1`
      assert.isFalse(first!.conflict)
    }).pipe(Effect.provide(testLayer(prefix)))
  }, 120_000)
})
