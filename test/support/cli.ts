/** The effect-oban CLI as an OS process (bin/effect-oban.js), for tests of single commands. */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { databaseUrl } from "./db.ts"

const bin = fileURLToPath(new URL("../../bin/effect-oban.js", import.meta.url))

export interface CliRun {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI with `args` and `--prefix prefix`, on the test database. */
export const cliIn = (prefix: string) => (...args: ReadonlyArray<string>): Effect.Effect<CliRun> =>
  Effect.promise(() =>
    new Promise<CliRun>((resolve) => {
      execFile(process.execPath, [bin, ...args, "--prefix", prefix], {
        env: { ...process.env, DATABASE_URL: databaseUrl() },
        timeout: 30_000
      }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
      })
    })
  )
