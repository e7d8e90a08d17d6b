/**
 * Graceful shutdown through the documented path: a node in its own OS process,
 * `Layer.launch(...).pipe(NodeRuntime.runMain(...))`, sent SIGTERM while its
 * jobs run. Running jobs get their grace period and complete; what outlives it
 * goes back to `available` with the attempt given back; the process exits with
 * the documented code.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { holdRow, waitFor } from "./support/node.ts"
import { rows, startDeployNode } from "./support/deployNode.ts"
import { awaitReady, spawnNode, stopNode } from "./support/processes.ts"
import { startProxy } from "./support/proxy.ts"

// The same name and args as the worker in nodeProcess.ts; only used to build requests here.
const Record = Worker.make("Record", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })
const HeldTimed = Worker.make("HeldTimed", { args: Schema.Struct({}), perform: () => Effect.void })

/** Starts one node, inserts `jobs` jobs, waits until all run, sends SIGTERM; returns the exit code and time taken. */
const sigtermMidJob = (prefix: string, jobs: number, env: Record<string, string>) =>
  Effect.gen(function*() {
    const node = yield* startDeployNode(prefix, env)
    yield* Oban.insertAll(Array.from({ length: jobs }, (_, n) => Record.job({ n })))
    yield* waitFor("every job to be running", Effect.map(rows(prefix), (all) => all.every((row) => row.runs === 1)))
    const sentAt = Date.now()
    const code = yield* stopNode(node, "SIGTERM")
    return { code, sentAt, millis: Date.now() - sentAt, output: node.output() }
  })

/** Locks the row of one job claimed ahead that has not run, and releases it `millis` later (in real time). */
const holdOneWaiting = (prefix: string, millis: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [waiting] = yield* sql<{ id: number }>`
      SELECT j.id::int AS id FROM ${sql(prefix)}.oban_jobs j
      WHERE j.state = 'executing' AND j.attempted_by[4] = 'ahead'
        AND NOT EXISTS (SELECT 1 FROM ${sql(prefix)}.runs r WHERE r.job_id = j.id)
      ORDER BY j.id DESC LIMIT 1`
    assert.isDefined(waiting, "a job claimed ahead was waiting")
    const { release } = yield* holdRow(prefix, waiting!.id)
    const releasing = yield* Effect.forkChild(Effect.andThen(Effect.sleep(millis), release))
    return { id: waiting!.id, releasing }
  })

/**
 * One node with `limit` slots drains `jobs` jobs of `jobMillis`; once more than `executing.moreThan`
 * are executing (some claimed ahead), it gets SIGTERM. Every job then either completed, having run
 * once, or went back `available` without running or using an attempt; at most `startedAfter` jobs
 * started after the runs were counted.
 */
const sigtermWithJobsAhead = (options: {
  readonly name: string
  readonly limit: number
  readonly jobMillis: number
  readonly jobs: number
  readonly executing: { readonly moreThan: number; readonly what: string }
  readonly startedAfter: number
  /**
   * Holds the row of one waiting job locked (as another transaction, a `cancelJob` say, would) from
   * before SIGTERM until this long after it: shutdown must still give it back.
   */
  readonly holdWaitingMillis?: number
}) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(options.name)
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient
      const node = yield* startDeployNode(prefix, {
        QUEUES: JSON.stringify({ default: options.limit }),
        JOB_MS: String(options.jobMillis),
        GRACE_MS: "10000"
      })
      yield* Oban.insertAll(Array.from({ length: options.jobs }, (_, n) => Record.job({ n })))
      yield* waitFor(
        options.executing.what,
        Effect.map(rows(prefix), (all) => all.filter((row) => row.state === "executing").length > options.executing.moreThan)
      )
      // The runs are counted with the node stopped (SIGSTOP), and SIGTERM is pending when it resumes: no
      // job starts between the count and the signal, however long this process takes to send it.
      node.child.kill("SIGSTOP")
      // Statements the node sent before it stopped reach the table.
      yield* Effect.sleep("200 millis")
      const [before] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.runs`
      const held = options.holdWaitingMillis === undefined ? undefined : yield* holdOneWaiting(prefix, options.holdWaitingMillis)
      node.child.kill("SIGTERM")
      node.child.kill("SIGCONT")
      assert.strictEqual(yield* Effect.promise(() => node.exited), 0, node.output())
      if (held !== undefined) {
        yield* Fiber.join(held.releasing)
        const row = (yield* rows(prefix)).find((row) => row.id === held.id)!
        assert.deepStrictEqual([row.state, row.attempt, row.runs], ["available", 0, 0], "the job held locked was given back")
      }
      const after = yield* rows(prefix)
      const completed = after.filter((row) => row.state === "completed")
      const givenBack = after.filter((row) => row.state === "available")
      assert.strictEqual(completed.length + givenBack.length, options.jobs, "no job left executing or elsewhere")
      assert.isAbove(givenBack.length, 0, "some jobs were waiting when SIGTERM came")
      assert.isAtMost(completed.length, before!.n + options.startedAfter)
      for (const row of completed) assert.deepStrictEqual([row.attempt, row.kinds, row.runs], [1, [], 1])
      // A job that waited never ran and used no attempt.
      for (const row of givenBack) assert.deepStrictEqual([row.attempt, row.kinds, row.runs], [0, [], 0])
    }).pipe(Effect.provide(testLayer(prefix)))
  }).pipe(Effect.scoped)

describe("SIGTERM under NodeRuntime.runMain while jobs run", () => {
  it.live("running jobs finish within the grace period and complete; the process exits 0", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_grace")
      yield* Effect.gen(function*() {
        // Jobs of 5 s: still running when SIGTERM comes, however late the test saw them start.
        const result = yield* sigtermMidJob(prefix, 3, { JOB_MS: "5000", GRACE_MS: "20000" })
        assert.strictEqual(result.code, 0, result.output)
        // It waited for the jobs (at most 5 s), not for the whole grace period.
        assert.isAtLeast(result.millis, 1_000)
        assert.isBelow(result.millis, 12_000)
        for (const row of yield* rows(prefix)) {
          assert.deepStrictEqual([row.state, row.attempt, row.kinds, row.runs], ["completed", 1, [], 1])
        }
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("a job cancelled during the grace period stops then, not when it would have ended", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_cancel")
      yield* Effect.gen(function*() {
        const node = yield* startDeployNode(prefix, { JOB_MS: "15000", GRACE_MS: "30000", LOG_LEVEL: "Info" })
        const job = yield* Oban.insert(Record.job({ n: 1 }))
        yield* waitFor("the job to be running", Effect.map(rows(prefix), (all) => all[0]?.runs === 1))
        const sentAt = Date.now()
        node.child.kill("SIGTERM")
        // Shutdown has begun (the process logs it) before the cancel is given.
        yield* waitFor("shutdown to begin", Effect.sync(() => node.output().includes("shutdown: waiting")))
        assert.isTrue(Option.isSome(yield* Oban.cancelJob(job.id)))
        const code = yield* Effect.promise(() => node.exited)
        const millis = Date.now() - sentAt
        assert.strictEqual(code, 0, node.output())
        // The 15 s job was interrupted by the cancel, well before it would have ended.
        assert.isBelow(millis, 10_000, node.output())
        const [row] = yield* rows(prefix)
        assert.deepStrictEqual([row!.state, row!.runs], ["cancelled", 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("an outcome the database refuses during shutdown (its row locked) is written once the lock goes", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_refused_ack")
      yield* Effect.gen(function*() {
        // A 3 s job, and a grace period of 30 s: the flush waits up to 15 s (its most) once the job has ended.
        const node = yield* startDeployNode(prefix, { JOB_MS: "3000", GRACE_MS: "30000", LOG_LEVEL: "Warn" })
        const job = yield* Oban.insert(Record.job({ n: 1 }))
        yield* waitFor("the job to be running", Effect.map(rows(prefix), (all) => all[0]?.runs === 1))
        // Another transaction holds the job's row while it ends, so its outcome is refused (lock timeout).
        const lock = yield* holdRow(prefix, job.id)
        const sentAt = Date.now()
        node.child.kill("SIGTERM")
        // The job ends during the grace period; its ack is refused as a batch and alone, then retried.
        yield* waitFor("the ack to be refused", Effect.sync(() => node.output().includes("one by one")))
        yield* Effect.sleep("1500 millis")
        assert.isTrue(node.alive(), "the node waits for the outcome it could not write")
        yield* lock.release
        const code = yield* Effect.promise(() => node.exited)
        assert.strictEqual(code, 0, node.output())
        // Written once the lock went, before the flush's deadline (15 s after the job ended, 3 s in).
        assert.isBelow(Date.now() - sentAt, 15_000, node.output())
        assert.notInclude(node.output(), "could not be written")
        const [row] = yield* rows(prefix)
        assert.deepStrictEqual([row!.state, row!.attempt, row!.kinds, row!.runs], ["completed", 1, [], 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("an outcome that cannot be written is waited for at most 15 s after the jobs end, however long the grace period", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_flush_bound")
      yield* Effect.gen(function*() {
        // A grace period of 40 s, as a deploy of long jobs sets it: the flush still waits at most 15 s. The job
        // runs 2 s: time to lock its row before it ends.
        const node = yield* startDeployNode(prefix, { JOB_MS: "2000", GRACE_MS: "40000", LOG_LEVEL: "Warn" })
        const job = yield* Oban.insert(Record.job({ n: 1 }))
        yield* waitFor("the job to be running", Effect.map(rows(prefix), (all) => all[0]?.runs === 1))
        // Another transaction holds the job's row until the node has exited: its outcome is never written.
        const lock = yield* holdRow(prefix, job.id)
        const sentAt = Date.now()
        node.child.kill("SIGTERM")
        const code = yield* Effect.promise(() => node.exited)
        const took = Date.now() - sentAt
        yield* lock.release
        assert.strictEqual(code, 0, node.output())
        // The job ended within 2 s, then the flush waited its 15 s, not the 40 s of the grace period.
        assert.isAtLeast(took, 14_000, node.output())
        assert.isBelow(took, 25_000, node.output())
        assert.include(node.output(), "some acks could not be written")
        // Left executing for the rescuer, as the warning says, having run once.
        const [row] = yield* rows(prefix)
        assert.deepStrictEqual([row!.state, row!.runs], ["executing", 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("jobs still running after the grace period go back to available with the attempt given back", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_late")
      yield* Effect.gen(function*() {
        const result = yield* sigtermMidJob(prefix, 2, { JOB_MS: "60000", GRACE_MS: "1000" })
        assert.strictEqual(result.code, 0, result.output)
        assert.isAtLeast(result.millis, 900)
        assert.isBelow(result.millis, 8_000)
        // The jobs were given back when the grace period ended, not later: the process's exit takes
        // its own time, so the bound is on the write (the database's clock, on this machine).
        const sql = yield* SqlClient
        const [given] = yield* sql<{ at: Date }>`
          SELECT max((e->>'at')::timestamptz) AS at
          FROM ${sql(prefix)}.oban_jobs_all j, jsonb_array_elements(j.errors) e WHERE e->>'kind' = 'shutdown'`
        const afterSignal = given!.at.getTime() - result.sentAt
        assert.isAtLeast(afterSignal, 900)
        assert.isBelow(afterSignal, 5_000, `given back ${afterSignal} ms after SIGTERM, with a grace period of 1 s`)
        for (const row of yield* rows(prefix)) {
          assert.deepStrictEqual([row.state, row.attempt, row.kinds], ["available", 0, ["shutdown"]])
        }
        // They keep their scheduled time (the insert's), so their place ahead of jobs inserted later.
        const [moved] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs WHERE scheduled_at <> inserted_at`
        assert.strictEqual(moved!.n, 0)
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("a timeout that fired inside an uninterruptible step, then SIGTERM before the step ends: a timeout failure, not a give-back", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_timed")
      yield* Effect.gen(function*() {
        // A grace period (200 ms) that ends before the step does: shutdown interrupts the job too.
        const node = yield* startDeployNode(prefix, { GRACE_MS: "200" })
        yield* Oban.insertAll([HeldTimed.job({})])
        yield* waitFor("the job to run", Effect.map(rows(prefix), (all) => all.every((row) => row.runs === 1)))
        // Its timeout (300 ms) has fired by now; its uninterruptible sleep (1.5 s) has not ended.
        yield* Effect.sleep("700 millis")
        const code = yield* stopNode(node, "SIGTERM")
        assert.strictEqual(code, 0, node.output())
        // A shutdown that came after the timeout does not turn the attempt into a free one.
        const [row] = yield* rows(prefix)
        assert.deepStrictEqual([row!.state, row!.attempt, row!.kinds, row!.runs], ["retryable", 1, ["timeout"], 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("SIGTERM again and again until the node has exited (an impatient operator or orchestrator): exit 0 every time", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_repeated")
      yield* Effect.gen(function*() {
        // Five processes at once; each gets SIGTERM, then another every millisecond until it has exited.
        // Signals that came while runMain's own listener was gone (it removes it as the fiber ends,
        // before the process exits) took Node's default action and ended the process with 143.
        const nodes = yield* Effect.forEach([1, 2, 3, 4, 5], (n) =>
          spawnNode(`impatient-${n}`, { DATABASE_URL: databaseUrl(), PREFIX: prefix, QUEUES: JSON.stringify({ default: 2 }) }))
        // Five Node processes starting at once on a loaded two-core machine: a minute to start.
        yield* Effect.forEach(nodes, (node) => awaitReady(node, 60_000), { concurrency: "unbounded" })
        const ends = yield* Effect.forEach(nodes, (node) =>
          Effect.promise(async () => {
            node.child.kill("SIGTERM")
            const again = setInterval(() => node.child.kill("SIGTERM"), 1)
            const code = await node.exited
            clearInterval(again)
            return { code, signal: node.child.signalCode, output: node.output() }
          }), { concurrency: "unbounded" })
        for (const end of ends) assert.deepStrictEqual([end.code, end.signal], [0, null], end.output)
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 120_000)

  it.live("SIGTERM while a job is in a long uninterruptible step: the node names it after 2 s, waits for it, and exits 0", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_held")
      yield* Effect.gen(function*() {
        // The step (3.5 s) outlasts the grace period (200 ms) by well over the 2 s after which the node says why it waits.
        const node = yield* startDeployNode(prefix, { GRACE_MS: "200", HELD_MS: "3500", LOG_LEVEL: "Warn" })
        yield* Oban.insertAll([HeldTimed.job({})])
        yield* waitFor("the job to run", Effect.map(rows(prefix), (all) => all.every((row) => row.runs === 1)))
        const started = Date.now()
        const code = yield* stopNode(node, "SIGTERM")
        assert.strictEqual(code, 0, node.output())
        assert.isAtLeast(Date.now() - started, 2_000, "the node waited for the step")
        assert.match(node.output(), /shutdown: 1 interrupted job\(s\) still running after 2 s \(ids \d+\)/)
        const [row] = yield* rows(prefix)
        assert.notStrictEqual(row!.state, "executing")
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("with runMain's default teardown the jobs get the same grace; only the exit code differs (130)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_default")
      yield* Effect.gen(function*() {
        // Jobs of 5 s (the default grace is 15 s): still running when SIGTERM comes, however late.
        const result = yield* sigtermMidJob(prefix, 2, { JOB_MS: "5000", TEARDOWN: "default" })
        assert.strictEqual(result.code, 130, result.output)
        for (const row of yield* rows(prefix)) assert.deepStrictEqual([row.state, row.attempt], ["completed", 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("a grace period longer than rescueAfter: the node's heartbeats go on until its jobs end; no other node runs them", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_long_grace")
      yield* Effect.gen(function*() {
        // Heartbeats every 200 ms, rescue after 3 s of silence (a live node's heartbeat may be 2.8 s late on
        // a loaded machine): a grace period of 25 s is eight times that. The jobs (15 s) still run for more
        // than rescueAfter after SIGTERM (checked below), so heartbeats that stopped with it would have
        // them rescued.
        const fast = {
          HEARTBEAT_MS: "200",
          RESCUE_AFTER_MS: "3000",
          RESCUE_INTERVAL_MS: "200",
          LEASE_TTL_MS: "2000",
          LEASE_RENEW_MS: "500",
          JOB_MS: "15000",
          JOB_MS_NODE: "deploy"
        }
        const node = yield* startDeployNode(prefix, { ...fast, QUEUES: JSON.stringify({ default: 2 }), GRACE_MS: "25000" })
        yield* Oban.insertAll([Record.job({ n: 1 }), Record.job({ n: 2 })])
        yield* waitFor("both jobs running", Effect.map(rows(prefix), (all) => all.every((row) => row.runs === 1)))
        // A second node of the deploy, running the same queue and ready to rescue (and lead once the first stops).
        const other = yield* spawnNode("other", {
          ...fast,
          DATABASE_URL: databaseUrl(),
          PREFIX: prefix,
          QUEUES: JSON.stringify({ default: 2 })
        })
        yield* awaitReady(other)
        yield* Effect.sleep("1500 millis")
        // Otherwise the test would pass without testing anything: the jobs must outlast rescueAfter after SIGTERM.
        const sql = yield* SqlClient
        const [ran] = yield* sql<{ ms: number }>`
          SELECT (extract(epoch FROM clock_timestamp() - min(at)) * 1000)::int AS ms FROM ${sql(prefix)}.runs`
        assert.isBelow(ran!.ms, 15_000 - 3_500, "the jobs had too little left to run after SIGTERM")
        assert.strictEqual(yield* stopNode(node, "SIGTERM"), 0, node.output())
        // Time for the other node's rescuer to act on rows that had gone silent, as it did before.
        yield* Effect.sleep("4 seconds")
        assert.strictEqual(yield* stopNode(other, "SIGTERM"), 0, other.output())
        for (const row of yield* rows(prefix)) {
          assert.deepStrictEqual([row.state, row.attempt, row.kinds, row.runs], ["completed", 1, [], 1], `job ${row.id}`)
        }
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("the leader and cron leases are given up as SIGTERM arrives, not when the grace period ends", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_leases")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        const leases = Effect.map(
          sql<{ name: string }>`
            SELECT name FROM ${sql(prefix)}.oban_peers WHERE node = 'deploy' AND expires_at > now() ORDER BY name`,
          (held) => held.map((row) => row.name)
        )
        // Jobs of 8 s against a grace period of 15 s, and a crontab (so the node holds the cron lease too).
        const node = yield* startDeployNode(prefix, { JOB_MS: "8000", GRACE_MS: "15000", CRON: "0 0 1 1 *" })
        yield* Oban.insertAll([Record.job({ n: 1 }), Record.job({ n: 2 })])
        yield* waitFor("both jobs running", Effect.map(rows(prefix), (all) => all.every((row) => row.runs === 1)))
        yield* waitFor("both leases held", Effect.map(leases, (held) => held.length === 2))
        const sentAt = Date.now()
        const exited = node.exited
        node.child.kill("SIGTERM")
        yield* waitFor("both leases given up", Effect.map(leases, (held) => held.length === 0), "10 seconds")
        const resignedAfter = Date.now() - sentAt
        // Given up while the jobs still ran: another node could lead and schedule cron during the grace period.
        assert.isTrue(node.alive(), "the node still runs its jobs")
        assert.isBelow(resignedAfter, 4_000, `leases given up ${resignedAfter} ms after SIGTERM`)
        assert.deepStrictEqual((yield* rows(prefix)).map((row) => row.state), ["executing", "executing"])
        assert.strictEqual(yield* Effect.promise(() => exited), 0, node.output())
        for (const row of yield* rows(prefix)) assert.deepStrictEqual([row.state, row.attempt, row.runs], ["completed", 1, 1])
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("with full claims overlapping their batches (1,000 ahead), SIGTERM gives back every job not started", () =>
    sigtermWithJobsAhead({
      name: "sigterm_full",
      // Jobs of about 2 ms on ten slots: claims of 500 come back full, and the next one goes out before
      // the batch starts, so more than one claim's worth is executing at once.
      limit: 10,
      jobMillis: 2,
      jobs: 5_000,
      executing: { moreThan: 10 + 500, what: "more jobs executing than one claim and the slots hold" },
      // The ten running then, and the few that started before the signal was handled, ran after it.
      startedAfter: 30
    }), 60_000)

  it.live("jobs claimed ahead and not yet started go back untouched; the rest complete; nothing runs twice", () =>
    sigtermWithJobsAhead({
      name: "sigterm_ahead",
      // Short jobs on a small limit: the producer claims many ahead of its two slots.
      limit: 2,
      jobMillis: 20,
      jobs: 400,
      executing: { moreThan: 2, what: "jobs claimed ahead of the two slots" },
      // Only the two running then (and the few that started before the signal arrived) ran after it: the
      // waiting ones were given back as shutdown began, not started during the grace period.
      startedAfter: 10
    }), 60_000)

  it.live("a waiting job whose row another transaction holds as SIGTERM comes is still given back once it is free", () =>
    sigtermWithJobsAhead({
      name: "sigterm_ahead_held",
      limit: 2,
      jobMillis: 20,
      jobs: 400,
      executing: { moreThan: 2, what: "jobs claimed ahead of the two slots" },
      startedAfter: 10,
      // Well past the node's shutdown (the jobs running are 20 ms), well within its 5 s give-back deadline.
      holdWaitingMillis: 1_500
    }), 60_000)
})

describe("SIGTERM under NodeRuntime.runMain on a network that stopped answering", () => {
  it.live("the process exits 0 within the grace period and the deadlines, its pool closed: nothing waits for a reply for ever", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("sigterm_deaf")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`
        const proxy = yield* startProxy(databaseUrl())
        // Every connection of the node through the proxy. Three queues, each polling every 500 ms, a job
        // that outlives its 1 s grace period, and the pruner every 100 ms in a transaction: as replies
        // stop, each queue's fetch and the pruner's BEGIN wait for one.
        const node = yield* spawnNode("deploy", {
          DATABASE_URL: proxy.url,
          PREFIX: prefix,
          QUEUES: JSON.stringify({ default: 5, mail: 5, reports: 5 }),
          JOB_MS: "600000",
          GRACE_MS: "1000",
          PRUNE_MS: "100",
          LOG_LEVEL: "Warn"
        })
        yield* awaitReady(node)
        yield* waitFor("the node leads", Effect.sync(() => node.isLeader()))
        yield* Oban.insert(Record.job({ n: 1 }))
        yield* waitFor("the job to be running", Effect.map(rows(prefix), (all) => all[0]?.runs === 1))
        yield* proxy.dropReplies
        yield* Effect.sleep("1 second")
        const sentAt = Date.now()
        node.child.kill("SIGTERM")
        const code = yield* Effect.promise(() => node.exited).pipe(
          Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.succeed("still running after 60 s" as const) })
        )
        const took = Date.now() - sentAt
        assert.strictEqual(code, 0, node.output())
        // The producers stop beside the 1 s grace period (up to about 10 s: a fetch's end, its give-backs),
        // then the flush (5 s, for the interrupted job's outcome) and the producer rows (3 s) give up at
        // their deadlines, and closing the pool waits up to 5 s for the driver to give up each connection
        // whose statement was interrupted: 13 s here. Before the pruner's transaction had its own deadline,
        // the process never exited (its BEGIN kept a connection, and closing the pool waited for it).
        assert.isBelow(took, 30_000, node.output())
        assert.include(node.output(), "some acks could not be written")
      }).pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 90_000)
})
