/**
 * Cancelling a workflow step while it executes: its dependents (the next job
 * of a chain) must not start before the step's code has stopped on its node,
 * and a step whose node died ends cancelled at rescue, never run again, with
 * its dependents settled by their policies.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Chain from "../src/Chain.ts"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import * as Rescuer from "../src/Rescuer.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("wfcancel")

/** The jobs whose perform runs right now, and every start that found another one running. */
const running = new Set<number>()
const overlaps: Array<{ readonly job: number; readonly alongside: ReadonlyArray<number> }> = []
const started: Array<number> = []
const startedOf = new Map<number, Deferred.Deferred<void>>()
const startSignal = (id: number) => {
  const existing = startedOf.get(id)
  if (existing !== undefined) return existing
  const deferred = Deferred.makeUnsafe<void>()
  startedOf.set(id, deferred)
  return deferred
}

/**
 * A step that, with `hold`, runs until interrupted and then takes half a
 * second to clean up (as a worker closing a connection or flushing a file
 * does): its perform ends only after that.
 */
const Step = Worker.make("ChainStep", {
  args: Schema.Struct({ hold: Schema.Boolean }),
  queue: "chain",
  maxAttempts: 3,
  perform: (job) =>
    Effect.gen(function*() {
      if (running.size > 0) overlaps.push({ job: job.id, alongside: [...running] })
      running.add(job.id)
      started.push(job.id)
      yield* Deferred.succeed(startSignal(job.id), undefined)
      if (job.args.hold) yield* Effect.never
    }).pipe(
      Effect.ensuring(
        Effect.andThen(job.args.hold ? Effect.sleep("500 millis") : Effect.void, Effect.sync(() => running.delete(job.id)))
      )
    )
})

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits,
             ${sql(prefix)}.oban_producers`
  running.clear()
  overlaps.length = 0
  started.length = 0
})

const base = { prefix, workers: [Step], pollInterval: "200 millis", stageInterval: "200 millis" } as const

const stateOf = (id: number) => Effect.map(jobRow(prefix, id), (row) => row.state)

/** Inserts a chain of three steps, the first holding, and waits until the first runs on `node`. */
const chainOfThree = (key: string) =>
  Effect.gen(function*() {
    const jobs = yield* Chain.insert(key, [Step.job({ hold: true }), Step.job({ hold: false }), Step.job({ hold: false })])
    yield* Deferred.await(startSignal(jobs[0]!.id)).pipe(Effect.timeout("10 seconds"))
    return jobs.map((job) => job.id)
  })

/** After the cancel of the chain's running first step: the rest runs, one after another, after it has stopped. */
const assertRanInOrder = (ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    yield* waitFor("the rest of the chain completed", Effect.map(stateOf(ids[2]!), (state) => state === "completed"))
    assert.strictEqual(yield* stateOf(ids[0]!), "cancelled")
    assert.strictEqual(yield* stateOf(ids[1]!), "completed")
    assert.deepStrictEqual(started, ids, "each step started once, in chain order")
    assert.deepStrictEqual(overlaps, [], "a step started while another step of the chain still ran")
  })

layer(testLayer(prefix, { maxConnections: 16 }), { excludeTestServices: true })("cancelling an executing step", (it) => {
  it.effect("through another node's service: the next step of the chain starts only after the step has stopped", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 } })
      const other = yield* startNode({ ...base, node: "operator", queues: {} })
      const ids = yield* chainOfThree("svc")
      const answer = yield* other.oban.cancelJob(ids[0]!)
      assert.isTrue(Option.isSome(answer))
      yield* assertRanInOrder(ids)
    }).pipe(Effect.scoped), 30_000)

  it.effect("through Jobs.cancel without a node: the same", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 } })
      const ids = yield* chainOfThree("bulk")
      const result = yield* Jobs.cancel({ ids: [ids[0]!] })
      assert.strictEqual(result.changed, 1)
      yield* assertRanInOrder(ids)
    }).pipe(Effect.scoped), 30_000)

  it.effect("through Oban.cancelJob without a node: the same", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 } })
      const ids = yield* chainOfThree("plain")
      assert.isTrue(Option.isSome(yield* Oban.cancelJob(ids[0]!)))
      yield* assertRanInOrder(ids)
    }).pipe(Effect.scoped), 30_000)

  it.effect("a whole-workflow cancel cancels the waiting steps at once and the running one once it stopped", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 } })
      const ids = yield* chainOfThree("whole")
      const cancelled = yield* Workflow.cancel(Chain.workflowId("whole"))
      assert.deepStrictEqual(cancelled.map((job) => job.previousState), ["executing", "suspended", "suspended"])
      yield* waitFor("the running step ended", Effect.map(stateOf(ids[0]!), (state) => state === "cancelled"))
      assert.isFalse(running.has(ids[0]!))
      assert.deepStrictEqual(yield* Effect.forEach(ids, stateOf), ["cancelled", "cancelled", "cancelled"])
      assert.deepStrictEqual(started, [ids[0]!])
    }).pipe(Effect.scoped), 30_000)
})
