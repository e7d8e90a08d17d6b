/**
 * The embedded PostgreSQL server of the testing kit and the demo
 * (`startDatabase`), when its process ends before `stop`: Ctrl-C in a
 * terminal signals the whole process group, so the server gets SIGINT at
 * the same moment as the node. `stop` must still return and remove the
 * server's data directory (it used to wait for an exit that had happened,
 * and `npm start` never exited).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import pg from "pg"
import { startDatabase } from "effect-oban/testing"
import { pidAlive, pidEnded, postmasterPid } from "./support/processes.ts"

/** Runs `text` on a connection of its own and returns the rows of its last statement. */
const query = async (url: string, text: string): Promise<Array<Record<string, unknown>>> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const result = await client.query(text)
    return (Array.isArray(result) ? result.at(-1)! : result).rows
  } finally {
    await client.end()
  }
}

/** An embedded server, its data directory and the pid of its postmaster (asked of the server). */
const startServer = Effect.promise(async () => {
  const database = await startDatabase({ forceEmbedded: true })
  const [row] = await query(database.url, "SELECT setting FROM pg_settings WHERE name = 'data_directory'")
  const directory = String(row!["setting"])
  return { database, directory, pid: postmasterPid(directory) }
})

/** Whether `stop` returned within `seconds`. */
const stoppedWithin = (stop: () => Promise<void>, seconds: number) =>
  Effect.promise(stop).pipe(Effect.timeoutOption(`${seconds} seconds`), Effect.map((done) => done._tag === "Some"))

describe("startDatabase, embedded", () => {
  it.live("stop returns and removes the data directory when the server was interrupted first", () =>
    Effect.gen(function*() {
      const { database, directory, pid } = yield* startServer
      assert.isTrue(existsSync(directory))
      process.kill(pid, "SIGINT")
      // Ended means reaped by this process, whose child it is: its exit has been seen here too.
      assert.isTrue(yield* Effect.promise(() => pidEnded(pid, 10_000)), "the server did not end on SIGINT")
      assert.isTrue(yield* stoppedWithin(database.stop, 10), "stop did not return")
      assert.isFalse(existsSync(directory), "the data directory is left behind")
    }), 60_000)

  it.live("restart starts a server that was interrupted first again, on its data", () =>
    Effect.gen(function*() {
      const { database, pid } = yield* startServer
      yield* Effect.promise(() => query(database.url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)"))
      process.kill(pid, "SIGINT")
      assert.isTrue(yield* Effect.promise(() => pidEnded(pid, 10_000)), "the server did not end on SIGINT")
      const restarted = yield* Effect.promise(database.restart).pipe(Effect.timeoutOption("20 seconds"))
      assert.isTrue(restarted._tag === "Some", "restart did not return")
      const rows = yield* Effect.promise(() => query(database.url, "SELECT n FROM kept"))
      assert.deepStrictEqual(rows, [{ n: 7 }])
      assert.isTrue(yield* stoppedWithin(database.stop, 20), "stop did not return")
    }), 60_000)

  it.live("stop still stops a running server and removes its data directory", () =>
    Effect.gen(function*() {
      const { database, directory, pid } = yield* startServer
      assert.isTrue(yield* stoppedWithin(database.stop, 20), "stop did not return")
      assert.isFalse(pidAlive(pid), "the server still runs")
      assert.isFalse(existsSync(directory), "the data directory is left behind")
    }), 60_000)
})
