import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { Busy, Crash, Decides, Hash, queue } from "./support/threadWorkers.ts"

const prefix = uniquePrefix("threads")

const settled = (id: number) =>
  waitFor(`job ${id} to leave executing`, Effect.map(jobRow(prefix, id), (row) => !["available", "executing"].includes(row.state)))

const run = (request: Parameters<typeof Oban.insert>[0]) =>
  Effect.gen(function*() {
    const job = yield* Oban.insert(request)
    yield* settled(job.id)
    return yield* jobRow(prefix, job.id)
  })

/** The recorded result of a job, as stored. */
const resultOf = (id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ result: { digest: string; threadId: number; at: string } | null }>`
      SELECT result FROM ${sql(prefix)}.oban_jobs WHERE id = ${id}`
    return row!.result!
  })

/** Runs a small hash job and returns the thread it ran on. */
const hashThread = Effect.gen(function*() {
  const job = yield* Oban.insert(Hash.job({ seed: "x", rounds: 100 }))
  yield* settled(job.id)
  const row = yield* jobRow(prefix, job.id)
  assert.strictEqual(row.state, "completed")
  return (yield* resultOf(job.id)).threadId
})

/** Milliseconds from the attempt's start to its errors entry (both database times). */
const attemptMillis = (row: { readonly attempted_at: Date | null; readonly errors: ReadonlyArray<{ readonly at: string }> }) =>
  new Date(row.errors[row.errors.length - 1]!.at).getTime() - row.attempted_at!.getTime()

const NodeLive = Layer.effectDiscard(
  startNode({
    prefix,
    node: "threads-node",
    queues: { [queue]: 4 },
    workers: [Hash, Decides, Busy, Crash],
    pollInterval: "100 millis",
    stageInterval: "100 millis",
    shutdownGracePeriod: "1 second",
    threads: { size: 1, resourceLimits: { maxOldGenerationSizeMb: 48 } }
  })
)

layer(NodeLive.pipe(Layer.provideMerge(testLayer(prefix))), { excludeTestServices: true, timeout: 60_000 })("threads", (it) => {
  it.effect("a thread job completes, on a thread, with its result stored as its encoding", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Hash.job({ seed: "abc", rounds: 10 }))
      yield* settled(job.id)
      const row = yield* jobRow(prefix, job.id)
      assert.strictEqual(row.state, "completed")
      assert.deepStrictEqual(row.errors, [])
      const result = yield* resultOf(job.id)
      assert.notStrictEqual(result.threadId, 0)
      assert.strictEqual(result.digest.length, 64)
      assert.strictEqual(result.at, "1970-01-01T00:00:00.000Z")
    }), 30_000)

  it.effect("a typed failure retries with backoff; the errors entry names it; retryable sees the worker's error", () =>
    Effect.gen(function*() {
      const row = yield* run(Decides.job({ what: "fail" }))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.attempt, 1)
      assert.strictEqual(row.errors[0]!.kind, "failure")
      assert.strictEqual(row.errors[0]!.message, "MailError: smtp said no")
      assert.isAbove(row.scheduled_at.getTime() - new Date(row.errors[0]!.at).getTime(), 10_000)
      const fatal = yield* run(Decides.job({ what: "fatal" }))
      assert.strictEqual(fatal.state, "discarded")
      assert.strictEqual(fatal.errors[0]!.message, "BadAddress: no such mailbox")
    }))

  it.effect("snooze, cancel, discard and a defect end as on the main thread", () =>
    Effect.gen(function*() {
      const snoozed = yield* run(Decides.job({ what: "snooze" }))
      assert.strictEqual(snoozed.state, "scheduled")
      assert.strictEqual(snoozed.attempt, 0)
      const cancelled = yield* run(Decides.job({ what: "cancel" }))
      assert.strictEqual(cancelled.state, "cancelled")
      assert.strictEqual(cancelled.errors[0]!.message, "not needed")
      const discarded = yield* run(Decides.job({ what: "discard" }))
      assert.strictEqual(discarded.state, "discarded")
      assert.strictEqual(discarded.errors[0]!.kind, "discarded")
      const died = yield* run(Decides.job({ what: "die" }))
      assert.strictEqual(died.state, "retryable")
      assert.strictEqual(died.errors[0]!.kind, "defect")
      assert.include(died.errors[0]!.message, "a defect in the thread")
    }))

  it.effect("a timeout terminates a busy loop's thread; the pool replaces it and the next job runs", () =>
    Effect.gen(function*() {
      const before = yield* hashThread
      const row = yield* run(Busy.job({ millis: 10_000 }, { timeout: "100 millis" }))
      assert.strictEqual(row.state, "retryable")
      assert.strictEqual(row.errors[0]!.kind, "timeout")
      assert.strictEqual(row.errors[0]!.message, "timed out after 100 ms")
      const millis = attemptMillis(row)
      console.log(`threads: a 100 ms timeout on a busy loop ended the attempt after ${millis} ms`)
      assert.isBelow(millis, 500)
      const after = yield* hashThread
      assert.notStrictEqual(after, before)
    }))

  it.effect("an uncaught throw and an out-of-memory fail the attempt with an errors entry; the node keeps running", () =>
    Effect.gen(function*() {
      const thrown = yield* run(Crash.job({ how: "throw" }))
      assert.strictEqual(thrown.state, "retryable")
      assert.strictEqual(thrown.errors[0]!.kind, "defect")
      assert.include(thrown.errors[0]!.message, "boom outside the fiber")
      assert.include(thrown.errors[0]!.message, "ObanThreadCrash")
      const oom = yield* run(Crash.job({ how: "oom" }))
      assert.strictEqual(oom.state, "retryable")
      assert.strictEqual(oom.errors[0]!.kind, "defect")
      assert.include(oom.errors[0]!.message, "ERR_WORKER_OUT_OF_MEMORY")
      assert.notStrictEqual(yield* hashThread, 0)
    }))

  it.effect("cancelJob stops a busy-looping thread job", () =>
    Effect.gen(function*() {
      const job = yield* Oban.insert(Busy.job({ millis: 20_000 }))
      yield* waitFor("the busy job to start", Effect.map(jobRow(prefix, job.id), (row) => row.state === "executing"))
      const started = Date.now()
      yield* Oban.cancelJob(job.id)
      yield* settled(job.id)
      const row = yield* jobRow(prefix, job.id)
      const millis = Date.now() - started
      console.log(`threads: cancelJob ended a busy thread job after ${millis} ms`)
      assert.strictEqual(row.state, "cancelled")
      assert.isBelow(millis, 2_000)
      assert.notStrictEqual(yield* hashThread, 0)
    }))
})
