/**
 * Cancelling an executing workflow step under faults (docs/workflows.md,
 * "Cancelling a running step"; migration 0012): the cancel only records the
 * request and signals the node, and whatever then ends the attempt makes the
 * row `cancelled`.
 *
 * - SIGTERM through `Layer.launch(...).pipe(NodeRuntime.runMain)`, in an OS
 *   process, while the step executes and its cancel was requested from
 *   another connection: the step stopping in its cleanup, and a step that
 *   ignores the interrupt until the shutdown's grace period is over.
 * - The cancel against the ack of a step that has just finished, ordered by
 *   a TCP proxy in front of the node (the cancel before the ack reaches the
 *   server, the ack committed before the cancel), and by row locks (each
 *   statement waiting on the other's uncommitted write).
 *
 * Every perform is counted in a side table, so a step run twice shows.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { startNode, waitFor } from "./support/node.ts"
import { awaitReady, spawnNode, stopNode } from "./support/processes.ts"
import { startProxy } from "./support/proxy.ts"

/** A step's row with what the tests look at, and how many performs it had. */
interface StepRow {
  readonly step: string
  readonly state: string
  readonly errors: ReadonlyArray<{ readonly kind: string; readonly message: string }>
  readonly result: unknown
  readonly cancelledBy: string | null
  readonly cancelRequested: boolean
  readonly runs: number
  readonly attempt: number
}

/** Every step of workflow `id`, by step name. */
const stepsOf = (prefix: string, id: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<StepRow>`
      SELECT j.meta #>> '{workflow,step}' AS step, j.state::text AS state, j.errors, j.result,
             j.meta #>> '{workflow,cancelled_by,step}' AS "cancelledBy",
             j.cancel_requested_at IS NOT NULL AS "cancelRequested", j.attempt,
             (SELECT count(*)::int FROM ${sql(prefix)}.runs r WHERE r.job_id = j.id) AS runs
      FROM ${sql(prefix)}.oban_jobs_all j WHERE j.workflow_id = ${id}`
    return Object.fromEntries(rows.map((row) => [row.step, row])) as Record<string, StepRow>
  })

/** How many jobs of the schema are `executing`. */
const executing = (prefix: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing'`,
      (rows) => rows[0]!.n
    ))

/** The message the trigger of migration 0012 writes for an attempt that ended as `state`. */
const endedAs = (state: string) => `cancelled while executing; the attempt ended ${state} after the cancel was requested`

const errorsOf = (row: StepRow) => row.errors.map((entry) => [entry.kind, entry.message])

// ---------------------------------------------------------------------------------------------
// SIGTERM in an OS process (test/support/stepProcess.ts)
// ---------------------------------------------------------------------------------------------

// The same name and args as the worker in stepProcess.ts; only used to build requests here.
const CancelStep = Worker.make("CancelStep", {
  args: Schema.Struct({ mode: Schema.Literals(["quick", "hold", "stubborn"]) }),
  perform: () => Effect.void
})

/**
 * Step `a` (of `mode`) and three dependents of it, one per policy: `c`
 * (default, "cancel"), `w` ("wait") and `r` ("run").
 */
const fourSteps = (id: string, mode: "hold" | "stubborn") =>
  Workflow.make(id)
    .add("a", CancelStep.job({ mode }))
    .add("c", CancelStep.job({ mode: "quick" }), { deps: ["a"] })
    .add("w", CancelStep.job({ mode: "quick" }), { deps: [{ step: "a", onFailure: "wait" }] })
    .add("r", CancelStep.job({ mode: "quick" }), { deps: [{ step: "a", onFailure: "run" }] })

/** Starts a step node in its own process, inserts the workflow, waits until `a` runs, and requests its cancel. */
const cancelRunningStep = (prefix: string, id: string, mode: "hold" | "stubborn", env: Record<string, string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL,
               started_at timestamptz DEFAULT clock_timestamp(), interrupted_at timestamptz, ended_at timestamptz)`
    const node = yield* spawnNode("steps", { DATABASE_URL: databaseUrl(), PREFIX: prefix, ...env }, "stepProcess.ts")
    yield* awaitReady(node)
    const flow = yield* Workflow.insert(fourSteps(id, mode))
    yield* waitFor("step a to run", Effect.map(stepsOf(prefix, id), (steps) => steps["a"]!.runs === 1))
    // From this test's own connection, as an operator would: the node only gets the signal.
    const answer = Option.getOrThrow(yield* Oban.cancelJob(flow.jobs.a.id))
    assert.strictEqual(answer.state, "executing")
    assert.instanceOf(answer.cancelRequestedAt, Date)
    return { node, a: flow.jobs.a.id }
  })

/** When the perform of job `id` was interrupted and ended, as the process stamped them. */
const runTimes = (prefix: string, id: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ interrupted: boolean; ended: boolean; millis: number }>`
        SELECT interrupted_at IS NOT NULL AS interrupted, ended_at IS NOT NULL AS ended,
               (extract(epoch FROM ended_at - started_at) * 1000)::int AS millis
        FROM ${sql(prefix)}.runs WHERE job_id = ${id}`,
      (rows) => rows[0]!
    ))

/** The dependents of a step that ended cancelled after its node went away: settled by their policies, none run. */
const assertDependentsSettled = (steps: Record<string, StepRow>) => {
  assert.deepStrictEqual(
    [steps["c"]!.state, steps["c"]!.cancelledBy, steps["c"]!.runs],
    ["cancelled", "a", 0],
    "the default policy cancels the dependent, naming the step"
  )
  assert.deepStrictEqual([steps["w"]!.state, steps["w"]!.runs], ["suspended", 0], "'wait' keeps waiting")
  // Released by the cancel while the node shut down: it waits for the next node, it was not started.
  assert.deepStrictEqual([steps["r"]!.state, steps["r"]!.runs], ["available", 0], "'run' is released")
}

describe("SIGTERM under NodeRuntime.runMain while a step whose cancel was requested executes", () => {
  it.live("the step stopping in its cleanup: it ends cancelled, ran once, the process exits 0 without waiting out the grace", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("wfcf_sigterm")
      yield* Effect.gen(function*() {
        // A cleanup of 4 s: the row still executes when the test looks, however late; a grace period far longer.
        const { a, node } = yield* cancelRunningStep(prefix, "sigterm-cleanup", "hold", { GRACE_MS: "20000", CLEANUP_MS: "4000" })
        // The node got the signal and interrupted the step; its cleanup still runs, so the row still executes.
        yield* waitFor("the step to be interrupted", Effect.map(runTimes(prefix, a), (run) => run.interrupted))
        const before = yield* stepsOf(prefix, "sigterm-cleanup")
        assert.deepStrictEqual([before["a"]!.state, before["c"]!.state, before["r"]!.state], ["executing", "suspended", "suspended"])

        const sentAt = Date.now()
        const code = yield* stopNode(node, "SIGTERM")
        const millis = Date.now() - sentAt
        assert.strictEqual(code, 0, node.output())
        assert.isBelow(millis, 12_000, "it waited out the grace period instead of the step's cleanup")

        const steps = yield* stepsOf(prefix, "sigterm-cleanup")
        assert.strictEqual(steps["a"]!.state, "cancelled")
        assert.deepStrictEqual(errorsOf(steps["a"]!), [["cancelled", "cancelled while executing"]])
        assert.strictEqual(steps["a"]!.runs, 1)
        assert.isTrue((yield* runTimes(prefix, a)).ended, "the step's perform ended before the process exited")
        assertDependentsSettled(steps)
        assert.strictEqual(yield* executing(prefix), 0)
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("the step ignoring the interrupt past the grace period: it ends cancelled, as the cancel it was stopped for says", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("wfcf_stubborn")
      yield* Effect.gen(function*() {
        // It ignores interrupts for 3 s; the grace period is 1 s.
        const { a, node } = yield* cancelRunningStep(prefix, "sigterm-stubborn", "stubborn", { GRACE_MS: "1000", STUBBORN_MS: "3000" })
        const sentAt = Date.now()
        const code = yield* stopNode(node, "SIGTERM")
        const millis = Date.now() - sentAt
        assert.strictEqual(code, 0, node.output())
        assert.isAtLeast(millis, 900, "it did not give the step its grace period")

        const run = yield* runTimes(prefix, a)
        assert.isTrue(run.interrupted && run.ended, "the step was interrupted once it listened, and ended")
        assert.isAtLeast(run.millis, 2_900, "the step ignored the interrupts for the time it was told")
        const steps = yield* stepsOf(prefix, "sigterm-stubborn")
        assert.strictEqual(steps["a"]!.state, "cancelled")
        // The node had stopped it for the cancel before the grace period ended, and keeps that reason: the
        // shutdown's interrupt does not make it a give-back (which the cancel request then turned into the
        // cancel, with a "shutdown" entry and a second one saying it ended available).
        assert.deepStrictEqual(errorsOf(steps["a"]!), [["cancelled", "cancelled while executing"]])
        assert.strictEqual(steps["a"]!.runs, 1)
        assert.strictEqual(steps["a"]!.attempt, 1)
        assertDependentsSettled(steps)
        assert.strictEqual(yield* executing(prefix), 0)
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)
})

// ---------------------------------------------------------------------------------------------
// The cancel against the ack, for a node behind a TCP proxy
// ---------------------------------------------------------------------------------------------

const prefix = uniquePrefix("wfcf_race")
/** The node's connections are known to PostgreSQL by this name. */
const nodeApplication = `race ${prefix}`

/** The node's pool: room for its ack beside its LISTEN connection and maintenance statements. */
const nodePool = 10

/** Per job: its perform started; it may finish (`gate`, for a gated step). */
const signals = { started: new Map<number, Deferred.Deferred<void>>(), gate: new Map<number, Deferred.Deferred<void>>() }
const signal = (kind: keyof typeof signals, id: number) => {
  const existing = signals[kind].get(id)
  if (existing !== undefined) return existing
  const deferred = Deferred.makeUnsafe<void>()
  signals[kind].set(id, deferred)
  return deferred
}

/** Records each perform in `runs`; a gated one then waits for its gate. Its result is recorded. */
const RaceStep = Worker.make("RaceStep", {
  args: Schema.Struct({ gated: Schema.Boolean }),
  result: Schema.Struct({ done: Schema.Boolean }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.runs (job_id, node) VALUES (${job.id}, 'race')`
      yield* Deferred.succeed(signal("started", job.id), undefined)
      if (job.args.gated) yield* Deferred.await(signal("gate", job.id))
      return { done: true }
    })
})

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL)`
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits,
             ${sql(prefix)}.oban_producers, ${sql(prefix)}.runs`
  signals.started.clear()
  signals.gate.clear()
})

/**
 * A proxy, and a node whose every connection goes through it; then workflow
 * `id`: a gated step `a`, with dependents `c` (default policy) and `r`
 * ("run"). Returns once `a` runs, with its id and claim.
 */
const raceSetup = (id: string, options: { readonly deleteCompleted?: boolean } = {}) =>
  Effect.gen(function*() {
    yield* reset
    const proxy = yield* startProxy(databaseUrl())
    const context = yield* Layer.build(
      PgClient.layer({ url: Redacted.make(proxy.url), maxConnections: nodePool, applicationName: nodeApplication })
    )
    // Every pooled connection opened while the proxy forwards: a connection opened during a hold could not
    // finish its handshake, and a statement waiting for it would wait for the release.
    yield* Effect.all(
      Array.from({ length: nodePool }, () => Effect.flatMap(SqlClient, (sql) => sql`SELECT pg_sleep(0.05)`)),
      { concurrency: "unbounded", discard: true }
    ).pipe(Effect.provideContext(context))
    yield* startNode({
      prefix,
      node: "race",
      queues: { default: 5 },
      workers: [RaceStep],
      pollInterval: "200 millis",
      pruner: false,
      ...options
    }).pipe(Effect.provideContext(context))
    const flow = yield* Workflow.insert(
      Workflow.make(id)
        .add("a", RaceStep.job({ gated: true }))
        .add("c", RaceStep.job({ gated: false }), { deps: ["a"] })
        .add("r", RaceStep.job({ gated: false }), { deps: [{ step: "a", onFailure: "run" }] })
    )
    const a = flow.jobs.a.id
    yield* Deferred.await(signal("started", a)).pipe(Effect.timeout("10 seconds"))
    const sql = yield* SqlClient
    const [row] = yield* sql<{ claim: string }>`SELECT attempted_by[3] AS claim FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${a}`
    return { proxy, a, claim: row!.claim, ids: [a, flow.jobs.c.id, flow.jobs.r.id] as const }
  })

/** How many performs each job had. */
const performs = (ids: ReadonlyArray<number>) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.forEach(ids, (id) =>
      Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.runs WHERE job_id = ${id}`, (rows) =>
        rows[0]!.n)))

/** The job's state; undefined once it is gone (a completed job under `deleteCompleted`). */
const stateOf = (id: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(sql<{ state: string }>`SELECT state::text AS state FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`, (rows) =>
      rows[0]?.state))

/** Backends of this schema's statements waiting for a row lock. */
const waitingOnLocks = Effect.flatMap(SqlClient, (sql) =>
  Effect.map(
    sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                      WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}`,
    (rows) => rows[0]!.n
  ))

/** Whether the job completed (or, under `deleteCompleted`, completed and was deleted). */
const done = (id: number) => Effect.map(stateOf(id), (state) => state === "completed" || state === undefined)

/**
 * `a` ended cancelled by the request (its attempt ended `completed`): no
 * result, `c` cancelled naming it, `r` ran; one perform each of `a` and `r`.
 */
const assertCancelWon = (id: string, [a, c, r]: readonly [number, number, number]) =>
  Effect.gen(function*() {
    yield* waitFor("r to complete", done(r))
    const steps = yield* stepsOf(prefix, id)
    assert.strictEqual(steps["a"]!.state, "cancelled")
    assert.deepStrictEqual(errorsOf(steps["a"]!), [["cancelled", endedAs("completed")]])
    assert.isNull(steps["a"]!.result, "a cancelled step records no result")
    assert.deepStrictEqual([steps["c"]!.state, steps["c"]!.cancelledBy], ["cancelled", "a"])
    assert.deepStrictEqual(yield* performs([a, c, r]), [1, 0, 1])
    assert.strictEqual(yield* executing(prefix), 0)
  })

/** `a` completed before the cancel came: the cancel changed nothing, its result is kept, both dependents ran once. */
const assertAckWon = (id: string, [a, c, r]: readonly [number, number, number]) =>
  Effect.gen(function*() {
    yield* waitFor("c and r to complete", Effect.map(Effect.all([done(c), done(r)]), ([one, two]) => one && two))
    const steps = yield* stepsOf(prefix, id)
    assert.deepStrictEqual(
      [steps["a"]!.state, steps["a"]!.errors, steps["a"]!.result, steps["a"]!.cancelRequested],
      ["completed", [], { done: true }, false]
    )
    assert.deepStrictEqual(yield* performs([a, c, r]), [1, 1, 1])
    assert.strictEqual(yield* executing(prefix), 0)
  })

layer(testLayer(prefix, { maxConnections: 8 }), { excludeTestServices: true })("the cancel of a step against its ack", (it) => {
  for (const deleteCompleted of [false, true]) {
    it.effect(`the cancel lands after the attempt ended and before its ack reached the server${deleteCompleted ? " (deleteCompleted)" : ""}: cancelled`, () =>
      Effect.gen(function*() {
        const id = `proxy-cancel-first-${deleteCompleted}`
        const { a, claim, ids, proxy } = yield* raceSetup(id, { deleteCompleted })
        // The node's statements stop at the proxy; the step finishes and its ack is sent, and held.
        yield* proxy.holdRequests
        yield* Deferred.succeed(signal("gate", a), undefined)
        yield* waitFor("the ack to be held", proxy.heldRequestsInclude(claim))
        const answer = Option.getOrThrow(yield* Oban.cancelJob(a))
        assert.deepStrictEqual([answer.state, answer.cancelRequestedAt instanceof Date], ["executing", true])
        assert.strictEqual(yield* stateOf(a), "executing", "the ack was written before the cancel")
        yield* proxy.release
        yield* assertCancelWon(id, ids)
      }).pipe(Effect.scoped), 30_000)
  }

  it.effect("the ack commits and its reply is held when the cancel comes: completed, the cancel changes nothing", () =>
    Effect.gen(function*() {
      const { a, ids, proxy } = yield* raceSetup("proxy-ack-first")
      // The ack reaches the server and commits; the node has not heard back yet.
      yield* proxy.holdReplies
      yield* Deferred.succeed(signal("gate", a), undefined)
      yield* waitFor("the ack to commit", Effect.map(stateOf(a), (state) => state === "completed"))
      assert.isTrue(Option.isNone(yield* Oban.cancelJob(a)), "the cancel of a completed step changed it")
      yield* proxy.release
      yield* assertAckWon("proxy-ack-first", ids)
    }).pipe(Effect.scoped), 30_000)

  for (const deleteCompleted of [false, true]) {
    it.effect(`the ack waits for the row while the cancel's transaction is open${deleteCompleted ? " (deleteCompleted)" : ""}: cancelled`, () =>
      Effect.gen(function*() {
        const id = `lock-cancel-first-${deleteCompleted}`
        const { a, ids } = yield* raceSetup(id, { deleteCompleted })
        const sql = yield* SqlClient
        yield* sql.withTransaction(Effect.gen(function*() {
          // The cancel, in a transaction that keeps the row locked until it commits.
          const answer = Option.getOrThrow(yield* Oban.cancelJob(a))
          assert.strictEqual(answer.state, "executing")
          yield* Deferred.succeed(signal("gate", a), undefined)
          // The ack is at the server, waiting for the row. (After its 1 s lock timeout it would try again: the
          // outcome is the same, only this ordering would not be the one tested.)
          yield* waitFor("the ack to wait for the row", Effect.map(waitingOnLocks, (n) => n === 1))
        }))
        yield* assertCancelWon(id, ids)
      }).pipe(Effect.scoped), 30_000)
  }

  it.effect("the cancel waits for the row while the ack's statement is still running: completed, the cancel changes nothing", () =>
    Effect.gen(function*() {
      const { a, ids } = yield* raceSetup("lock-ack-first")
      const sql = yield* SqlClient
      const locked = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      // Dependent c locked by an open transaction: the ack changes a, then waits to release c, holding a's row.
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs
                   WHERE workflow_id = 'lock-ack-first' AND meta #>> '{workflow,step}' = 'c' FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(commit)
      })))
      yield* Deferred.await(locked)
      yield* Deferred.succeed(signal("gate", a), undefined)
      yield* waitFor("the ack to wait", Effect.map(waitingOnLocks, (n) => n === 1))
      // Another connection's cancel now waits for a's row, which the ack has changed but not committed. Both
      // waiting at once means the ack holds a: had it given up (its lock timeout is 1 s), the cancel would not wait.
      const cancel = yield* Effect.forkChild(Oban.cancelJob(a))
      yield* waitFor("the cancel to wait too", Effect.map(waitingOnLocks, (n) => n === 2), "5 seconds")
      yield* Deferred.succeed(commit, undefined)
      yield* Fiber.join(holder)
      assert.isTrue(Option.isNone(yield* Fiber.join(cancel)), "the cancel changed the step its ack had completed")
      yield* assertAckWon("lock-ack-first", ids)
    }).pipe(Effect.scoped), 30_000)
})
