/**
 * `drainQueue` without a queue drains every queue (a workflow whose steps run
 * in several queues), and a drain of a queue that ran nothing and that no
 * worker of the kit has as its queue says so (a misspelt name passed as an
 * empty queue).
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Logger, References, Schema } from "effect"
import { Oban, Worker, Workflow } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { uniquePrefix } from "./support/db.ts"
import { onTestClock, stepStates, truncateWorkflows, workflowTestLayer } from "./support/workflows.ts"

const prefix = uniquePrefix("drain_all")
const ran: Array<string> = []

const Fetch = Worker.make("DrainAllFetch", {
  args: Schema.Struct({ part: Schema.Int }),
  queue: "imports",
  perform: (job) => Effect.sync(() => void ran.push(`fetch-${job.args.part}`))
})
const Resize = Worker.make("DrainAllResize", {
  args: Schema.Struct({}),
  queue: "media",
  perform: () => Effect.sync(() => void ran.push("resize"))
})

/** Runs `drain` with a logger that keeps its lines, at every level. */
const logged = <A, E, R>(drain: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const capture = Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const result = yield* drain.pipe(
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      Effect.provideService(References.MinimumLogLevel, "All")
    )
    return { result, lines }
  })

describe("drainQueue across queues", () => {
  layer(workflowTestLayer(prefix, [Fetch, Resize]), { excludeTestServices: true })((it) => {
    it.effect("without a queue it runs every queue's jobs, round after round", () =>
      Effect.gen(function*() {
        ran.length = 0
        yield* truncateWorkflows(prefix)
        yield* Oban.insertWorkflow(
          Workflow.make("across")
            .add("fetch", Fetch.job({ part: 1 }))
            .add("resize", Resize.job({}), { deps: ["fetch"] })
            .add("report", Fetch.job({ part: 2 }), { deps: ["resize"] })
        )
        // Queue by queue, the workflow stops at its first step in another queue.
        yield* ObanTest.drainQueue({ queue: "imports", withRecursion: true })
        assert.deepStrictEqual(yield* stepStates(prefix, "across"), { fetch: "completed", resize: "available", report: "suspended" })
        const { result, lines } = yield* logged(ObanTest.drainQueue({ withRecursion: true }))
        assert.strictEqual(result.completed, 2)
        assert.deepStrictEqual(ran, ["fetch-1", "resize", "fetch-2"])
        assert.deepStrictEqual(yield* stepStates(prefix, "across"), { fetch: "completed", resize: "completed", report: "completed" })
        assert.deepStrictEqual(lines, [])
      }).pipe(onTestClock))

    it.effect("a named queue that ran nothing and that no worker of the kit has is named in a warning", () =>
      Effect.gen(function*() {
        yield* truncateWorkflows(prefix)
        yield* Oban.insert(Fetch.job({ part: 3 }))
        const misspelt = yield* logged(ObanTest.drainQueue({ queue: "imprts" }))
        assert.strictEqual(misspelt.result.completed, 0)
        assert.isTrue(
          misspelt.lines.some((line) => line.startsWith('drainQueue: queue "imprts" had no job to run, and no worker of ObanTest.layer')),
          misspelt.lines.join("\n")
        )
        // An empty queue that a worker has is no mistake.
        assert.deepStrictEqual((yield* logged(ObanTest.drainQueue({ queue: "media" }))).lines, [])
      }).pipe(onTestClock))
  })
})
