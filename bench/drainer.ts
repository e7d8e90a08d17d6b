/**
 * A child process of the benchmark's multi-process drain (W3c). It runs one
 * node whose `default` queue starts paused (the parent resumes every node at
 * once), says `ready` on stdout, and remembers the id of every job it runs.
 * On SIGTERM it shuts the node down gracefully and then writes those ids to
 * `<prefix>.bench_runs` in a few bulk inserts, so that recording them does
 * not slow the drain down.
 *
 * Usage: BENCH_DATABASE_URL=... node bench/drainer.ts <prefix> <limit> <label> [keep|delete]
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Layer, References } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { nodeLogLevel, pgLayer } from "./common.ts"
import { makeNoop } from "./workers.ts"

const [prefix = "", limitText = "", label = "0", completed = "keep"] = process.argv.slice(2)
const url = process.env["BENCH_DATABASE_URL"] ?? ""
const limit = Number(limitText)
const chunkSize = 5_000

const ran: Array<number> = []
const worker = makeNoop((id) => Effect.sync(() => void ran.push(id)))

/** Writes the ids this process ran, `chunkSize` per statement. */
const recordRuns = (ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    for (let start = 0; start < ids.length; start += chunkSize) {
      const chunk = JSON.stringify(ids.slice(start, start + chunkSize))
      yield* sql`
        INSERT INTO ${sql(prefix)}.bench_runs (job_id)
        SELECT value::bigint FROM jsonb_array_elements_text(${chunk}::jsonb)`
    }
  })

const program = Effect.gen(function*() {
  if (prefix === "" || url === "" || !Number.isInteger(limit)) {
    return yield* Effect.die(new Error("usage: BENCH_DATABASE_URL=... node bench/drainer.ts <prefix> <limit> <label>"))
  }
  // Added first, so it runs last: after the node has finished and acked every job.
  yield* Effect.addFinalizer(() => Effect.orDie(recordRuns(ran)))
  yield* Layer.build(Oban.layer({
    prefix,
    node: `bench-drainer-${label}`,
    queues: { default: { limit, paused: true } },
    workers: [worker],
    deleteCompleted: completed === "delete"
  }))
  yield* Effect.sync(() => process.stdout.write("ready\n"))
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(pgLayer(url, 10)),
  Effect.provideService(References.MinimumLogLevel, nodeLogLevel)
)

// SIGTERM interrupts the program; a clean shutdown then exits 0 instead of 130.
NodeRuntime.runMain(program, {
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
})
