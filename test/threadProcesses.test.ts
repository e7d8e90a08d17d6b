import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { existsSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { childExecArgv } from "../src/internal/threads/childArgv.ts"
import * as Oban from "../src/Oban.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { NestedNode } from "./support/nestedNodeWorker.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { awaitReady, signalGroup, spawnNode } from "./support/processes.ts"
import { Busy, Preloaded, queue } from "./support/threadWorkers.ts"

/**
 * Ctrl-C in a terminal and systemd's stop (KillMode=control-group) signal the node's whole process
 * group, its `isolation: "process"` children included. The node alone decides when they stop: a
 * short job finishes within the grace period, a long one goes back with its attempt, as with threads.
 */
const stopByGroupSignal = (signal: "SIGINT" | "SIGTERM") =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(`thread_signals_${signal}`)
    yield* Effect.gen(function*() {
      const node = yield* spawnNode(`thread-signals-${signal}`, {
        DATABASE_URL: databaseUrl(),
        PREFIX: prefix,
        QUEUES: JSON.stringify({ [queue]: 2 }),
        THREADS: "2",
        ISOLATION: "process",
        GRACE_MS: "6000"
      }, undefined, { group: true })
      yield* awaitReady(node)
      // Two jobs at once, so that both child processes have started and serve jobs: a child still
      // loading when the signal comes dies of it (it can ignore signals only once it runs).
      const warmUps = yield* Oban.insertAll([Busy.job({ millis: 300 }), Busy.job({ millis: 300 })])
      for (const job of warmUps) {
        yield* waitFor("the warm-up jobs", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
      }
      // Long enough to be seen running on a loaded machine, and to end well within the grace period.
      // Each writes its marker once it runs in its child: `executing` means only claimed, and a job
      // still waiting for a child when the signal comes goes back as not started, with no entry.
      const markers = ["short", "long"].map((name) => join(tmpdir(), `${prefix}-${name}.started`))
      const short = yield* Oban.insert(Busy.job({ millis: 3_000, marker: markers[0]! }))
      const long = yield* Oban.insert(Busy.job({ millis: 60_000, marker: markers[1]! }))
      yield* waitFor("both jobs to start in their children", Effect.sync(() => markers.every((file) => existsSync(file))))
      for (const file of markers) rmSync(file, { force: true })
      const code = yield* signalGroup(node, signal)
      assert.strictEqual(code, 0, node.output())
      const done = yield* jobRow(prefix, short.id)
      assert.deepStrictEqual([done.state, done.attempt, done.errors], ["completed", 1, []], node.output())
      const back = yield* jobRow(prefix, long.id)
      assert.deepStrictEqual([back.state, back.attempt, back.errors.map((entry) => entry.kind)], ["available", 0, [
        "shutdown"
      ]])
    }).pipe(Effect.provide(testLayer(prefix)))
  }).pipe(Effect.scoped)

describe("isolation: process, signalled as a process group", () => {
  it.live("SIGTERM to the group (systemd) stops the node gracefully, not its children at once", () =>
    stopByGroupSignal("SIGTERM"), 60_000)

  it.live("SIGINT to the group (Ctrl-C) stops the node gracefully, not its children at once", () =>
    stopByGroupSignal("SIGINT"), 60_000)
})

describe("isolation: process, Node options", () => {
  it.live("a child process starts with the node's Node options (--import, loaders, --conditions)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("thread_exec_argv")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        const node = yield* spawnNode("thread-exec-argv", {
          DATABASE_URL: databaseUrl(),
          PREFIX: prefix,
          QUEUES: JSON.stringify({ [queue]: 1 }),
          THREADS: "1",
          ISOLATION: "process"
        }, undefined, { execArgv: ["--import", fileURLToPath(new URL("./support/preload.ts", import.meta.url))] })
        yield* awaitReady(node)
        const job = yield* Oban.insert(Preloaded.job({}))
        yield* waitFor("the job to finish", Effect.map(jobRow(prefix, job.id), (row) => row.state !== "available" && row.state !== "executing"))
        const [row] = yield* sql<{ state: string; result: { preloaded: boolean; pid: number } | null }>`
          SELECT state, result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
        assert.strictEqual(row!.state, "completed", node.output())
        assert.notStrictEqual(row!.result!.pid, node.child.pid)
        assert.isTrue(row!.result!.preloaded)
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it("leaves out code to evaluate, --test and the inspector, and puts the pool's heap limit last", () => {
    assert.deepStrictEqual(
      childExecArgv(
        ["--import", "tsx", "-e", "run()", "--inspect-brk=9229", "--conditions=source", "--inspect-port", "9230", "--max-old-space-size=4096"],
        512
      ),
      ["--import", "tsx", "--conditions=source", "--max-old-space-size=4096", "--max-old-space-size=512"]
    )
    assert.deepStrictEqual(
      childExecArgv(["--print", "1", "--eval=x()", "--inspect", "--test", "--test-isolation=none", "--enable-source-maps"], undefined),
      ["--test-isolation=none", "--enable-source-maps"]
    )
  })
})

describe("a node inside a pool's thread", () => {
  it.live("is refused with InvalidConfigError: the worker module must not start the application", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("thread_nested_node")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        const node = yield* startNode({ prefix, queues: { nested: 1 }, workers: [NestedNode], threads: { size: 1 } })
        const job = yield* Oban.insert(NestedNode.job({ url: databaseUrl(), prefix }))
        yield* waitFor("the job to finish", Effect.map(jobRow(prefix, job.id), (row) => row.state !== "available" && row.state !== "executing"))
        const [row] = yield* sql<{ state: string; result: { started: boolean; refused: string | null } | null }>`
          SELECT state, result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
        assert.strictEqual(row!.state, "completed")
        assert.isFalse(row!.result!.started)
        assert.include(row!.result!.refused, "InvalidConfigError")
        assert.include(row!.result!.refused, "inside a thread")
        yield* node.stop
      }).pipe(Effect.provide(testLayer(prefix)), Effect.scoped)
    }), 60_000)
})
