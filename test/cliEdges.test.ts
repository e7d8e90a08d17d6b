/**
 * The CLI at its edges: exit codes for a database URL that names no
 * database, a URL that does not parse, a tampered cursor and migration
 * files that cannot be read; and
 * `jobs reschedule`, with a bad `--at` refused as bad input.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { execFile, execFileSync } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"

const repository = new URL("../", import.meta.url)
const bin = fileURLToPath(new URL("bin/effect-oban.js", repository))

const cli = (args: ReadonlyArray<string>, command = bin) =>
  Effect.promise(() =>
    new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
      execFile(process.execPath, [command, ...args], { env: { ...process.env, DATABASE_URL: databaseUrl() }, timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }))
    })
  )

/**
 * A copy of the package without its migrations/ directory (an install that lost it), removed when
 * the scope closes: its bin, sources and package.json, and the repository's node_modules. The CLI
 * finds the migration files next to its sources, so the copy's own CLI cannot read them.
 */
const withoutMigrations = Effect.acquireRelease(
  Effect.sync(() => {
    const root = mkdtempSync(join(tmpdir(), "effect-oban-no-migrations-"))
    for (const entry of ["bin", "src", "package.json"]) {
      cpSync(new URL(entry, repository), join(root, entry), { recursive: true })
    }
    symlinkSync(fileURLToPath(new URL("node_modules", repository)), join(root, "node_modules"), "dir")
    return root
  }),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

describe("effect-oban CLI exit codes at the edges", () => {
  it.effect("a database that does not exist exits 3, a URL that does not parse exits 2, a tampered cursor exits 2", () =>
    Effect.gen(function*() {
      const server = new URL(databaseUrl())
      server.pathname = "/no_such_database_here"
      const cursor = Buffer.from(JSON.stringify({ c: "scheduled_at", d: 1, m: "9999999999999999999", i: 1 })).toString("base64url")
      const [missing, garbled, tampered] = yield* Effect.all([
        cli(["jobs", "list", "--database-url", server.toString()]),
        cli(["jobs", "list", "--database-url", "not a url"]),
        cli(["jobs", "list", "--sort", "scheduled_at", "--cursor", cursor])
      ], { concurrency: 3 })
      assert.strictEqual(missing.code, 3, missing.stderr)
      assert.include(missing.stderr, "no_such_database_here")
      assert.strictEqual(garbled.code, 2, garbled.stderr)
      assert.include(garbled.stderr, "database-url")
      assert.strictEqual(tampered.code, 2, tampered.stderr)
      assert.include(tampered.stderr, "cursor")
    }), 60_000)

  it.effect("migration files that cannot be read exit 1 (a broken install), not 4 (a schema to migrate)", () =>
    Effect.gen(function*() {
      const root = yield* withoutMigrations
      const copy = join(root, "bin", "effect-oban.js")
      const prefix = uniquePrefix("cli_no_files")
      const [up, status] = yield* Effect.all([
        cli(["migrate", "up", "--prefix", prefix], copy),
        cli(["migrate", "status", "--prefix", prefix, "--json"], copy)
      ], { concurrency: 2 })
      assert.strictEqual(up.code, 1, up.stderr)
      assert.match(up.stderr, /^effect-oban: cannot read migrations: .*ENOENT.*migrations/)
      assert.include(up.stderr, "reinstall")
      assert.notInclude(up.stderr, "migrate up --prefix", "no advice to run what just failed")
      const error = (JSON.parse(status.stderr) as { error: { tag: string; message: string; exitCode: number } }).error
      assert.deepStrictEqual([status.code, error.tag, error.exitCode], [1, "MigrationError", 1])
      assert.include(error.message, "cannot read migrations")
    }).pipe(Effect.scoped), 60_000)

  it.effect("under a Node.js older than 22 it says what it needs (exit 1), not a loader error", () =>
    Effect.gen(function*() {
      // The system's Node.js where it is older than the package's (this machine's is 20; npm scripts run 24):
      // 18 to 21, which read the bin's top-level await (an older one fails on its syntax before it can say anything).
      const old = ["/usr/bin/node", "/usr/local/bin/node"].find((path) => {
        if (!existsSync(path)) return false
        const major = Number(execFileSync(path, ["-p", "process.versions.node.split('.')[0]"]).toString().trim())
        return major >= 18 && major < 22
      })
      if (old === undefined) {
        console.log("SKIPPED: no Node.js 18-21 at /usr/bin or /usr/local/bin")
        return
      }
      const run = yield* Effect.promise(() =>
        new Promise<{ readonly code: number; readonly stderr: string }>((resolve) => {
          execFile(old, [bin, "--help"], { timeout: 30_000 }, (error, _stdout, stderr) =>
            resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stderr }))
        })
      )
      assert.strictEqual(run.code, 1, run.stderr)
      assert.match(run.stderr, /^effect-oban: needs Node\.js 22 or newer; this is Node\.js \d+\.\d+\.\d+\n$/)
    }), 60_000)
})

const prefix = uniquePrefix("cli_edges")
const Later = Worker.make("Later", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("effect-oban jobs reschedule", (it) => {
  it.effect("moves the named jobs to --at (scheduled), leaves the rest, and refuses a bad --at with exit 2", () =>
    Effect.gen(function*() {
      const [moved, kept] = yield* Oban.insertAll([Later.job({ n: 1 }), Later.job({ n: 2 })])
      const at = "2031-02-03T04:05:06.000Z"
      const done = yield* cli(["jobs", "reschedule", String(moved!.id), "--at", at, "--prefix", prefix, "--json"])
      assert.strictEqual(done.code, 0, done.stderr)
      assert.strictEqual((JSON.parse(done.stdout) as { changed: number }).changed, 1)
      const sql = yield* SqlClient
      const rows = yield* sql<{ id: number; state: string; scheduled_at: Date }>`
        SELECT id::int AS id, state::text AS state, scheduled_at FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      assert.deepStrictEqual(rows.map((row) => [row.id, row.state]), [[moved!.id, "scheduled"], [kept!.id, "available"]])
      assert.strictEqual(rows[0]!.scheduled_at.toISOString(), at)
      const bad = yield* cli(["jobs", "reschedule", String(kept!.id), "--at", "next tuesday", "--prefix", prefix])
      assert.strictEqual(bad.code, 2, bad.stderr)
      assert.include(bad.stderr, "--at")
    }), 60_000)
})

const refusedPrefix = uniquePrefix("cli_refused")

layer(testLayer(refusedPrefix, { migrate: false }), { excludeTestServices: true })("effect-oban migrate up, refused", (it) => {
  it.effect("a migration the database refuses exits 1 (not 4) with PostgreSQL's detail, which names the view in its way", () =>
    Effect.gen(function*() {
      const withPrefix = (...args: ReadonlyArray<string>) => [...args, "--prefix", refusedPrefix]
      const to17 = yield* cli(withPrefix("migrate", "up", "--to", "17"))
      assert.strictEqual(to17.code, 0, to17.stderr)
      // A view of the user's own on a column migration 18 changes the type of.
      const sql = yield* SqlClient
      yield* sql`CREATE VIEW ${sql(refusedPrefix)}.queue_names AS SELECT DISTINCT queue FROM ${sql(refusedPrefix)}.oban_jobs`
      const refused = yield* cli(withPrefix("migrate", "up"))
      assert.strictEqual(refused.code, 1, refused.stderr)
      assert.include(refused.stderr, "migration 18")
      assert.include(refused.stderr, "detail:")
      assert.include(refused.stderr, "queue_names")
      assert.notInclude(refused.stderr, "migrate up --prefix", "no advice to run what just failed")
      const status = yield* cli(withPrefix("migrate", "status", "--json"))
      assert.strictEqual((JSON.parse(status.stdout) as { current: number }).current, 17, "nothing of 18 applied")
      assert.strictEqual(status.code, 4, "behind: not migrated")
      // Out of the way, the same command goes through.
      yield* sql`DROP VIEW ${sql(refusedPrefix)}.queue_names`
      const up = yield* cli(withPrefix("migrate", "up"))
      assert.strictEqual(up.code, 0, up.stderr)
    }), 60_000)
})
