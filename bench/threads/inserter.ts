/**
 * A child process of `npm run bench:threads`: inserts `count` pings, one every
 * `everyMs` on a fixed schedule, each carrying its insert time. It runs in its
 * own process so that a node blocked by CPU-bound jobs cannot delay the
 * inserts and hide its own lag. Says `ready` on stdout, starts on a line on
 * stdin, says `done` when the last ping is in.
 *
 * Usage: BENCH_DATABASE_URL=... node bench/threads/inserter.ts <prefix> <count> <everyMs>
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { createInterface } from "node:readline"
import * as Config from "../../src/Config.ts"
import * as Oban from "../../src/Oban.ts"
import { pgLayer } from "../common.ts"
import { epochMillis } from "../workers.ts"
import { Ping } from "./cpu.ts"

const [prefix = "", countText = "", everyText = ""] = process.argv.slice(2)
const url = process.env["BENCH_DATABASE_URL"] ?? ""
const count = Number(countText)
const everyMs = Number(everyText)

const program = Effect.gen(function*() {
  if (prefix === "" || url === "" || !(count > 0) || !(everyMs > 0)) {
    return yield* Effect.die(new Error("usage: BENCH_DATABASE_URL=... node bench/threads/inserter.ts <prefix> <count> <everyMs>"))
  }
  const sql = yield* SqlClient
  yield* sql`SELECT 1` // opens the connection before the clock starts
  yield* Effect.sync(() => process.stdout.write("ready\n"))
  yield* Effect.callback<void>((resume) => {
    createInterface({ input: process.stdin }).once("line", () => resume(Effect.void))
  })
  const start = epochMillis()
  for (let i = 0; i < count; i++) {
    const wait = start + i * everyMs - epochMillis()
    if (wait > 0) yield* Effect.sleep(wait)
    yield* Oban.insert(Ping.job({ insertedAt: epochMillis() }))
  }
  yield* Effect.sync(() => process.stdout.write("done\n"))
}).pipe(Effect.provide(Config.layer({ prefix })), Effect.provide(pgLayer(url, 2)))

NodeRuntime.runMain(program)
