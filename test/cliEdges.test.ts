/**
 * Review of the CLI's exit codes for a database URL that names no database,
 * a URL that does not parse, and a tampered cursor.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { databaseUrl } from "./support/db.ts"

const bin = fileURLToPath(new URL("../bin/effect-oban.js", import.meta.url))

const cli = (args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    new Promise<{ readonly code: number; readonly stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: databaseUrl() }, timeout: 30_000 }, (error, _stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stderr }))
    })
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
})
