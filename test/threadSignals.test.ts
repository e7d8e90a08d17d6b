import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Oban from "../src/Oban.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, waitFor } from "./support/node.ts"
import { awaitReady, signalGroup, spawnNode } from "./support/processes.ts"
import { Busy, queue } from "./support/threadWorkers.ts"

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
        GRACE_MS: "4000"
      }, undefined, { group: true })
      yield* awaitReady(node)
      // Two jobs at once, so that both child processes have started and serve jobs: a child still
      // loading when the signal comes dies of it (it can ignore signals only once it runs).
      const warmUps = yield* Oban.insertAll([Busy.job({ millis: 300 }), Busy.job({ millis: 300 })])
      for (const job of warmUps) {
        yield* waitFor("the warm-up jobs", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
      }
      const short = yield* Oban.insert(Busy.job({ millis: 1_500 }))
      const long = yield* Oban.insert(Busy.job({ millis: 60_000 }))
      for (const job of [short, long]) {
        yield* waitFor("the jobs to start", Effect.map(jobRow(prefix, job.id), (row) => row.state === "executing"))
      }
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
