/**
 * The embedded PostgreSQL server of the testing kit and the demo
 * (`startDatabase`), when its process ends before `stop`: Ctrl-C in a
 * terminal signals the whole process group, so the server gets SIGINT at
 * the same moment as the node. `stop` must still return and remove the
 * server's data directory (it used to wait for an exit that had happened,
 * and `npm start` never exited).
 */
import { assert, describe, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import pg from "pg"
import { startDatabase } from "effect-oban/testing"
import { pidAlive, pidEnded, postmasterPid } from "./support/processes.ts"

/** The server's data directory and the pid of its postmaster, asked of the server. */
const serverProcess = async (url: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
    const directory = rows[0]!.setting
    return { directory, pid: postmasterPid(directory) }
  } finally {
    await client.end()
  }
}

const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms))
  ])

describe("startDatabase, embedded", () => {
  it("stop returns and removes the data directory when the server was interrupted first", async () => {
    const database = await startDatabase({ forceEmbedded: true })
    const { directory, pid } = await serverProcess(database.url)
    assert.isTrue(existsSync(directory))
    process.kill(pid, "SIGINT")
    assert.isTrue(await pidEnded(pid, 10_000), "the server did not end on SIGINT")
    // Let the parent see the exit, as it does before a node's shutdown reaches `stop`.
    await new Promise((resolve) => setTimeout(resolve, 100))
    await within(database.stop(), 10_000, "stop")
    assert.isFalse(existsSync(directory), "the data directory is left behind")
  }, 60_000)

  it("stop still stops a running server and removes its data directory", async () => {
    const database = await startDatabase({ forceEmbedded: true })
    const { directory, pid } = await serverProcess(database.url)
    await within(database.stop(), 20_000, "stop")
    assert.isFalse(pidAlive(pid), "the server still runs")
    assert.isFalse(existsSync(directory), "the data directory is left behind")
  }, 60_000)
})
