/**
 * Cancelling a workflow step while it executes: its dependents (the next job
 * of a chain) must not start before the step's code has stopped on its node,
 * and a step whose node died ends cancelled at rescue, never run again, with
 * its dependents settled by their policies. A job outside workflows is
 * cancelled the same way, so that a retry cannot run it beside itself.
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
import { ackJobs } from "../src/internal/sql/acks.ts"
import { releaseJobs } from "../src/internal/sql/claims.ts"
import { jobRow, liveProducer, silentProducer, startNode, waitFor } from "./support/node.ts"

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
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits,
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

  it.effect("a job outside workflows: a retry right after its cancel leaves it running, and it runs again only once stopped", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 }, shutdownGracePeriod: "100 millis" })
      const job = yield* Oban.insert(Step.job({ hold: true }))
      yield* Deferred.await(startSignal(job.id)).pipe(Effect.timeout("10 seconds"))
      const answer = Option.getOrThrow(yield* Oban.cancelJob(job.id))
      assert.deepStrictEqual([answer.state, answer.cancelRequestedAt !== null], ["executing", true])
      // The row used to be cancelled at once: this retry made it available while the first attempt still
      // cleaned up, and a second attempt started beside it.
      assert.isTrue(Option.isNone(yield* Oban.retryJob(job.id)))
      yield* waitFor("cancelled once stopped", Effect.map(stateOf(job.id), (state) => state === "cancelled"))
      assert.strictEqual(running.size, 0, "the row said cancelled before the attempt's cleanup ended")
      startedOf.delete(job.id)
      assert.isTrue(Option.isSome(yield* Oban.retryJob(job.id)))
      yield* Deferred.await(startSignal(job.id)).pipe(Effect.timeout("10 seconds"))
      assert.deepStrictEqual(started, [job.id, job.id])
      assert.deepStrictEqual(overlaps, [])
      const row = yield* jobRow(prefix, job.id)
      assert.deepStrictEqual([row.state, row.attempt, row.errors.map((entry) => entry.kind)], ["executing", 2, ["cancelled"]])
    }).pipe(Effect.scoped), 30_000)

  it.effect("a cancel whose signal was lost: the node finds the request on its own and stops the step", () =>
    Effect.gen(function*() {
      yield* reset
      yield* startNode({ ...base, node: "runner", queues: { chain: 5 }, rescuer: { interval: "200 millis" } })
      const ids = yield* chainOfThree("lost")
      // The request as a cancel writes it, without the signal.
      const sql = yield* SqlClient
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET cancel_requested_at = now() WHERE id = ${ids[0]!}`
      yield* assertRanInOrder(ids)
      const stopped = yield* jobRow(prefix, ids[0]!)
      assert.deepStrictEqual(stopped.errors.map((entry) => [entry.kind, entry.message]), [["cancelled", "cancelled while executing"]])
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

/** Makes `ids` executing under a claim of producer incarnation `producer` of node `node`, as a claim does. */
const claimedBy = (ids: ReadonlyArray<number>, node: string, producer: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = attempt + 1, attempted_at = now(),
               attempted_by = ARRAY[${node}, ${producer}, 'claim-' || id::text]
               WHERE id IN ${sql.in(ids)}`
  })

/** A producer row of `node` whose last heartbeat is two minutes old: its jobs are orphans. */
const deadProducer = (node: string) => silentProducer(prefix, node, "2 minutes")

const cancelRequestedAt = (id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ at: Date | null; result: unknown }>`
      SELECT cancel_requested_at AS at, result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`
    return row!.at
  })

layer(testLayer(prefix), { excludeTestServices: true })("a cancel requested from a running step that no node stops", (it) => {
  it.effect("its node died: it waits, executing, and the rescuer ends it cancelled; the chain goes on after it", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const ids = (yield* Chain.insert("dead", [Step.job({ hold: true }), Step.job({ hold: false }), Step.job({ hold: false })]))
        .map((job) => job.id)
      yield* claimedBy([ids[0]!], "gone-node", yield* deadProducer("gone-node"))
      const answer = Option.getOrThrow(yield* Oban.cancelJob(ids[0]!))
      // The caller sees the request: the job still executes, with the time the cancel was asked for.
      assert.strictEqual(answer.state, "executing")
      assert.instanceOf(answer.cancelRequestedAt, Date)
      // Asking again keeps the first request.
      const again = Option.getOrThrow(yield* Oban.cancelJob(ids[0]!))
      assert.strictEqual(again.cancelRequestedAt?.getTime(), answer.cancelRequestedAt!.getTime())
      assert.deepStrictEqual(yield* Effect.forEach(ids, stateOf), ["executing", "suspended", "suspended"])

      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 0, discarded: 0, cancelled: 1 })
      const rescued = yield* jobRow(prefix, ids[0]!)
      assert.strictEqual(rescued.state, "cancelled")
      assert.deepStrictEqual(rescued.errors.map((entry) => entry.kind), ["rescued", "cancelled"])
      assert.include(rescued.errors[1]!.message, "cancelled while executing")
      // The chain's default policy ("run"): the next job runs once the cancelled one has ended.
      assert.deepStrictEqual(yield* Effect.forEach(ids, stateOf), ["cancelled", "available", "suspended"])
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 0, discarded: 0, cancelled: 0 })
      assert.strictEqual(yield* stateOf(ids[0]!), "cancelled", "never made available again")

      // A retry is a new decision: it clears the request, and the job runs again like any retried job.
      const retried = Option.getOrThrow(yield* Oban.retryJob(ids[0]!))
      assert.strictEqual(retried.state, "available")
      assert.isNull(yield* cancelRequestedAt(ids[0]!))
    }))

  it.effect("its node died: dependents are settled by their policies, and a job out of attempts still ends cancelled", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const flow = yield* Workflow.insert(
        Workflow.make("policies")
          .add("x", Step.job({ hold: true }, { maxAttempts: 1 }))
          .add("y", Step.job({ hold: false }), { deps: ["x"] })
          .add("z", Step.job({ hold: false }), { deps: [{ step: "x", onFailure: "wait" }] })
          .add("r", Step.job({ hold: false }), { deps: [{ step: "x", onFailure: "run" }] })
      )
      const x = flow.jobs.x.id
      yield* claimedBy([x], "gone-node", yield* deadProducer("gone-node"))
      assert.strictEqual((yield* Jobs.cancel({ ids: [x] })).changed, 1)
      assert.strictEqual(yield* stateOf(x), "executing")
      assert.deepStrictEqual(yield* Rescuer.runOnce({ sql, prefix }), { rescued: 0, discarded: 0, cancelled: 1 })
      const status = yield* Workflow.status("policies")
      assert.deepStrictEqual(
        Object.fromEntries(status.jobs.map((job) => [job.step, job.state])),
        { x: "cancelled", y: "cancelled", z: "suspended", r: "available" }
      )
      const y = yield* Oban.getJob(flow.jobs.y.id)
      assert.strictEqual(Option.getOrThrow(Workflow.membership(Option.getOrThrow(y))).cancelledBy?.step, "x")
    }))

  it.effect("its attempt ended otherwise before the interrupt came (a lost signal): it still ends cancelled", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      // Each writer that can end an attempt, on a step whose cancel was requested while it ran.
      const writers = {
        completed: (id: number) =>
          ackJobs(sql, prefix, sql.literal("now()"), "live-node", [{
            id, attempt: 1, claim: `claim-${id}`, state: "completed", delay_ms: null, give_back: false, error: null, result: "done"
          }]),
        completedAndDeleted: (id: number) =>
          ackJobs(sql, prefix, sql.literal("now()"), "live-node", [{
            id, attempt: 1, claim: `claim-${id}`, state: "completed", delay_ms: null, give_back: false, error: null
          }], { deleteCompleted: true }),
        retryable: (id: number) =>
          ackJobs(sql, prefix, sql.literal("now()"), "live-node", [{
            id, attempt: 1, claim: `claim-${id}`, state: "retryable", delay_ms: 1_000, give_back: false,
            error: { attempt: 1, kind: "failure", message: "boom" }
          }]),
        shutdown: (id: number) =>
          ackJobs(sql, prefix, sql.literal("now()"), "live-node", [{
            id, attempt: 1, claim: `claim-${id}`, state: "available", delay_ms: 0, give_back: true,
            error: { attempt: 1, kind: "shutdown", message: "shut down" }
          }]),
        givenBack: (id: number) => releaseJobs(sql, prefix, [{ id, claim: `claim-${id}`, ahead: false }])
      }
      for (const [name, write] of Object.entries(writers)) {
        const flow = yield* Workflow.insert(
          Workflow.make(`lost-${name}`)
            .add("a", Step.job({ hold: true }))
            .add("b", Step.job({ hold: false }), { deps: ["a"] })
        )
        yield* claimedBy([flow.jobs.a.id], "live-node", crypto.randomUUID())
        yield* Oban.cancelJob(flow.jobs.a.id)
        yield* write(flow.jobs.a.id)
        const row = yield* jobRow(prefix, flow.jobs.a.id)
        assert.strictEqual(row?.state, "cancelled", name)
        assert.strictEqual(row.errors.at(-1)?.kind, "cancelled", name)
        // The default policy cancels the dependent: the cancel counts, not the outcome the attempt had.
        assert.strictEqual(yield* stateOf(flow.jobs.b.id), "cancelled", name)
      }
      const [kept] = yield* sql<{ result: unknown }>`
        SELECT result FROM ${sql(prefix)}.oban_jobs_all WHERE workflow_id = 'lost-completed' AND meta #>> '{workflow,step}' = 'a'`
      assert.isNull(kept!.result, "a cancelled job records no result")
    }))

  it.effect("a job outside workflows is cancelled the same way while its producer answers: requested, and a retry leaves it", () =>
    Effect.gen(function*() {
      yield* reset
      const job = yield* Oban.insert(Step.job({ hold: true }))
      yield* claimedBy([job.id], "live-node", yield* liveProducer(prefix))
      const answer = Option.getOrThrow(yield* Oban.cancelJob(job.id))
      assert.deepStrictEqual([answer.state, answer.cancelRequestedAt !== null], ["executing", true])
      assert.isTrue(Option.isNone(yield* Oban.retryJob(job.id)))
      const row = yield* jobRow(prefix, job.id)
      assert.deepStrictEqual([row.state, row.cancel_requested_at !== null], ["executing", true])
    }))

  it.effect("a job outside workflows whose producer is gone, dead or silent past its rescueAfter is cancelled at once (how an operator clears it)", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const jobs = yield* Oban.insertAll([Step.job({ hold: true }), Step.job({ hold: true }), Step.job({ hold: true }), Step.job({ hold: true }),
        Step.job({ hold: true }), Step.job({ hold: true })])
      const [gone, dead, silent, slow, late, eternal] = jobs.map((job) => job.id)
      // No producer row at all (every node stopped); one a rescue marked dead; one silent for 2 minutes (the default
      // rescueAfter is 60 s); one silent as long whose node rescues after 5 minutes; and one silent for 30 s with a
      // 10 s heartbeat: late for the views, but a rescuer would not take its jobs yet, nor would a cancel.
      yield* claimedBy([gone!], "gone-node", crypto.randomUUID())
      const deadId = yield* liveProducer(prefix, "dead-node")
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET dead_at = now() WHERE id = ${deadId}`
      yield* claimedBy([dead!], "dead-node", deadId)
      yield* claimedBy([silent!], "silent-node", yield* silentProducer(prefix, "silent-node", "2 minutes"))
      yield* claimedBy([slow!], "slow-node", yield* silentProducer(prefix, "slow-node", "2 minutes", { rescueAfterMillis: 300_000 }))
      yield* claimedBy([late!], "late-node", yield* silentProducer(prefix, "late-node", "30 seconds", { heartbeatMillis: 10_000 }))
      // A rescueAfter of 31,000 years put the statement's time out of range: every cancel of a running job failed.
      yield* claimedBy([eternal!], "eternal-node", yield* silentProducer(prefix, "eternal-node", "2 minutes", { rescueAfterMillis: 1e15 }))
      const answers = yield* Effect.forEach([gone!, dead!, silent!, slow!, late!, eternal!], (id) => Effect.map(Oban.cancelJob(id), Option.getOrThrow))
      assert.deepStrictEqual(answers.map((job) => [job.state, job.cancelRequestedAt !== null]), [
        ["cancelled", false],
        ["cancelled", false],
        ["cancelled", false],
        ["executing", true],
        ["executing", true],
        ["executing", true]
      ])
      // Those cancelled at once say so in their history: their attempts may still run on a stalled node.
      assert.deepStrictEqual(answers.map((job) => job.errors.map((entry) => entry.kind)), [["cancelled"], ["cancelled"], ["cancelled"], [], [], []])
      assert.include(answers[2]!.errors[0]!.message, "cancelled while executing on node silent-node, which no longer answers for it")
      // The bulk cancel decides the same way.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', cancelled_at = NULL WHERE id = ${gone!}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET cancel_requested_at = NULL WHERE id = ${late!}`
      const bulk = yield* Jobs.cancel({ ids: [gone!, late!] })
      assert.deepStrictEqual([bulk.changed, bulk.requested], [2, 1])
      assert.deepStrictEqual([yield* stateOf(gone!), yield* stateOf(late!)], ["cancelled", "executing"])
    }))
})
