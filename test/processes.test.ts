/**
 * The cluster with real OS processes: leader election under SIGKILL and
 * SIGTERM, rescue of a killed node's jobs with the default settings, four
 * processes draining one queue, and cron across a leader change.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Oban from "../src/Oban.ts"
import * as Rescuer from "../src/Rescuer.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix, report } from "./support/db.ts"
import { countByState, waitFor } from "./support/node.ts"
import { awaitReady, type NodeProcess, spawnNode, stopNode } from "./support/processes.ts"

// The same name and args as the worker in nodeProcess.ts; only used to build requests here.
const Record = Worker.make("Record", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

const setUp = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`
  })

const envFor = (prefix: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: databaseUrl(),
  PREFIX: prefix,
  ...extra
})

const leaders = (nodes: ReadonlyArray<NodeProcess>) => nodes.filter((node) => node.alive() && node.isLeader())

/** Samples leadership every 50 ms for `millis`, failing if two processes lead at once. */
const sampleLeaders = (nodes: ReadonlyArray<NodeProcess>, millis: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      const now = leaders(nodes)
      assert.isAtMost(now.length, 1, `two leaders at once: ${now.map((node) => node.name).join(", ")}`)
      yield* Effect.sleep("50 millis")
    }
  })

const runStats = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ runs: number; jobs: number }>`
      SELECT count(*)::int AS runs, count(DISTINCT job_id)::int AS jobs FROM ${sql(prefix)}.runs`
    return row!
  })

describe("a cluster of OS processes", () => {
  it.live("exactly one leader at any moment; SIGKILL -> a new one within one TTL; SIGTERM -> at once", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("proc_lead")
      // A TTL well above what a loaded machine adds, so that "within one TTL" and "at once" (a resign)
      // stay apart from a lease that merely lapsed.
      const ttl = 6_000
      const run = Effect.gen(function*() {
        yield* setUp(prefix)
        const env = envFor(prefix, { LEASE_TTL_MS: String(ttl), LEASE_RENEW_MS: "1000" })
        const nodes = yield* Effect.forEach(["p1", "p2", "p3"], (name) => spawnNode(name, env))
        yield* Effect.forEach(nodes, (node) => awaitReady(node))
        yield* waitFor("a leader", Effect.sync(() => leaders(nodes).length === 1))
        yield* sampleLeaders(nodes, 2_000)

        const first = leaders(nodes)[0]!
        const killedAt = Date.now()
        yield* stopNode(first, "SIGKILL")
        yield* waitFor("a new leader after SIGKILL", Effect.sync(() => leaders(nodes).length === 1), "20 seconds")
        const takeover = Date.now() - killedAt
        assert.isAtMost(takeover, ttl + 2_500, `took ${takeover} ms`)
        yield* sampleLeaders(nodes, 1_500)

        const second = leaders(nodes)[0]!
        const stoppedAt = Date.now()
        // It exits by itself (NodeRuntime reports the interruption with exit code 130), not by a kill.
        assert.isNotNull(yield* stopNode(second, "SIGTERM"))
        yield* waitFor("a new leader after SIGTERM", Effect.sync(() => leaders(nodes).length === 1), "20 seconds")
        // Including the process's exit; a lapsed lease would take at least ttl - 1 s (the renew interval).
        assert.isAtMost(Date.now() - stoppedAt, 4_000)
        yield* sampleLeaders(nodes, 1_000)
      })
      yield* run.pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)

  it.live("a node killed with SIGKILL mid-job: the others rescue and complete its jobs within 90 s (defaults)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("proc_rescue")
      const run = Effect.gen(function*() {
        yield* setUp(prefix)
        // The victim's jobs would take a minute; on the other nodes they are quick.
        const env = envFor(prefix, { QUEUES: JSON.stringify({ default: 5 }), JOB_MS: "60000", JOB_MS_NODE: "victim" })
        const victim = yield* spawnNode("victim", env)
        yield* awaitReady(victim)
        const jobs = yield* Oban.insertAll(Array.from({ length: 5 }, (_, n) => Record.job({ n })))
        yield* waitFor("the victim to run every job", Effect.map(runStats(prefix), (s) => s.jobs === 5))
        const others = yield* Effect.forEach(["rescuer-1", "rescuer-2"], (name) => spawnNode(name, env))
        yield* Effect.forEach(others, (node) => awaitReady(node))
        const killedAt = Date.now()
        yield* stopNode(victim, "SIGKILL")
        assert.strictEqual((yield* countByState(prefix))["executing"], 5)
        yield* waitFor("every job completed", Effect.map(countByState(prefix), (c) => c["completed"] === 5), "90 seconds")
        const elapsed = Date.now() - killedAt
        assert.isAtMost(elapsed, 90_000)
        const sql = yield* SqlClient
        const rows = yield* sql<{ id: number; node: string; kinds: ReadonlyArray<string> }>`
          SELECT id::int AS id, attempted_by[1] AS node, ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(errors) e) AS kinds
          FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
        assert.deepStrictEqual(rows.map((row) => row.id), jobs.map((job) => job.id))
        for (const row of rows) {
          assert.notStrictEqual(row.node, "victim")
          assert.deepStrictEqual(row.kinds, ["rescued"])
        }
        report(`rescued and completed ${jobs.length} jobs ${elapsed} ms after SIGKILL`)
      })
      yield* run.pipe(Effect.provide(testLayer(prefix)), Effect.provide(Config.layer({ prefix })))
    }).pipe(Effect.scoped), 150_000)

  it.live("a job that kills its node (SIGKILL) with maxAttempts 1 runs at most twice, then is discarded", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("proc_poison")
      const run = Effect.gen(function*() {
        yield* setUp(prefix)
        const sql = yield* SqlClient
        const poison = yield* Oban.insert(Record.job({ n: -1 }, { maxAttempts: 1 }))
        const poisonRow = Effect.map(
          sql<{ state: string; scheduled_at: Date }>`
            SELECT state::text AS state, scheduled_at FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${poison.id}`,
          (rows) => rows[0]!
        )
        const env = envFor(prefix, { QUEUES: JSON.stringify({ default: 10 }), JOB_MS: "2" })
        // Each round: short jobs due before the poison job, so the producer has measured short jobs and claims
        // ahead by the time it reaches it (a job claimed ahead counts its attempt only when it ends); then a node,
        // which the poison job kills; then the test rescues it, as the leader of the next node would.
        for (let round = 0; round < 5; round++) {
          const { state, scheduled_at } = yield* poisonRow
          if (state === "discarded") break
          assert.strictEqual(state, "available")
          yield* Oban.insertAll(Array.from({ length: 300 }, (_, n) =>
            Record.job({ n }, { scheduledAt: new Date(scheduled_at.getTime() - 60_000 + n) })))
          const node = yield* spawnNode(`poisoned-${round}`, env)
          yield* waitFor("the poison job to kill the node", Effect.sync(() => !node.alive()), "30 seconds")
          yield* waitFor(
            "the poison job rescued",
            Effect.map(
              Effect.andThen(Rescuer.runOnce({ sql, prefix, rescueAfter: Duration.millis(1) }), poisonRow),
              (row) => row.state !== "executing"
            ),
            "30 seconds"
          )
        }
        const runs = yield* sql<{ node: string }>`SELECT node FROM ${sql(prefix)}.runs WHERE job_id = ${poison.id} ORDER BY at`
        const [row] = yield* sql<{ state: string; attempt: number; kinds: ReadonlyArray<string> }>`
          SELECT state::text AS state, attempt, ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(errors) e) AS kinds
          FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${poison.id}`
        // Every run of it was claimed ahead: the case where the attempt is not counted at the claim.
        assert.deepStrictEqual(runs.map((run) => run.node.endsWith(":ahead")), runs.map(() => true), JSON.stringify(runs))
        assert.strictEqual(runs.length, 2, `the poison job ran ${runs.length} times`)
        assert.deepStrictEqual([row!.state, row!.attempt, row!.kinds], ["discarded", 1, ["rescued", "rescued"]])
        report(`poison job ran ${runs.length} times, claimed ahead each time, then was discarded`)
      })
      yield* run.pipe(Effect.provide(testLayer(prefix)), Effect.provide(Config.layer({ prefix })))
    }).pipe(Effect.scoped), 150_000)

  it.live("four processes drain 20,000 jobs: none missed, none run twice", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("proc_drain")
      const run = Effect.gen(function*() {
        yield* setUp(prefix)
        yield* Oban.insertAll(Array.from({ length: 20_000 }, (_, n) => Record.job({ n })))
        const env = envFor(prefix, { QUEUES: JSON.stringify({ default: 20 }) })
        const nodes = yield* Effect.forEach(["d1", "d2", "d3", "d4"], (name) => spawnNode(name, env))
        yield* waitFor(
          "every job completed",
          Effect.map(countByState(prefix), (c) => c["completed"] === 20_000),
          "120 seconds"
        )
        const stats = yield* runStats(prefix)
        assert.deepStrictEqual(stats, { runs: 20_000, jobs: 20_000 })
        const sql = yield* SqlClient
        const perNode = yield* sql<{ node: string }>`SELECT DISTINCT node FROM ${sql(prefix)}.runs ORDER BY node`
        assert.deepStrictEqual(perNode.map((row) => row.node), ["d1", "d2", "d3", "d4"])
        yield* Effect.forEach(nodes, (node) => stopNode(node, "SIGTERM"))
      })
      yield* run.pipe(Effect.provide(testLayer(prefix)), Effect.provide(Config.layer({ prefix })))
    }).pipe(Effect.scoped), 180_000)

  it.live("cron on three processes across a leader change: exactly one job per slot, none missed", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("proc_cron")
      const run = Effect.gen(function*() {
        yield* setUp(prefix)
        const env = envFor(prefix, {
          QUEUES: JSON.stringify({ default: 5 }),
          CRON: "* * * * * *",
          LEASE_TTL_MS: "2000",
          LEASE_RENEW_MS: "500",
          // The killed node may hold a slot's job (running, or its outcome unwritten): rescued within seconds.
          HEARTBEAT_MS: "500",
          RESCUE_AFTER_MS: "2000",
          RESCUE_INTERVAL_MS: "500"
        })
        const nodes = yield* Effect.forEach(["c1", "c2", "c3"], (name) => spawnNode(name, env))
        yield* Effect.forEach(nodes, (node) => awaitReady(node))
        yield* waitFor("a leader", Effect.sync(() => leaders(nodes).length === 1))
        yield* Effect.sleep("3 seconds")
        yield* stopNode(leaders(nodes)[0]!, "SIGKILL")
        yield* waitFor("a new leader", Effect.sync(() => leaders(nodes).length === 1), "10 seconds")
        yield* Effect.sleep("3 seconds")
        const sql = yield* SqlClient
        // Every slot inserted so far: the ones the dead node held come back through the rescuer.
        const [{ last }] = yield* sql<{ last: number }>`
          SELECT count(*)::int AS last FROM ${sql(prefix)}.oban_jobs_all WHERE unique_key LIKE 'cron:%'`
        yield* waitFor(
          "the slots inserted so far completed",
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM (
              SELECT state FROM ${sql(prefix)}.oban_jobs_all WHERE unique_key LIKE 'cron:%' ORDER BY id LIMIT ${last}) AS s
              WHERE state <> 'completed'`,
            (rows) => rows[0]!.n === 0
          ),
          "15 seconds"
        )
        const slots = yield* sql<{ slot: string; jobs: number; runs: number; rescued: boolean }>`
          SELECT j.unique_key AS slot, count(DISTINCT j.id)::int AS jobs, count(r.job_id)::int AS runs,
                 bool_or(j.errors @> '[{"kind": "rescued"}]') AS rescued
          FROM (SELECT * FROM ${sql(prefix)}.oban_jobs_all WHERE unique_key LIKE 'cron:%' ORDER BY id LIMIT ${last}) AS j
          LEFT JOIN ${sql(prefix)}.runs r ON r.job_id = j.id
          GROUP BY j.unique_key ORDER BY j.unique_key`
        assert.isAtLeast(slots.length, 6)
        // One job per slot, run once; a second run only for a job the killed node had run without
        // its outcome reaching the database (at least once, then rescued).
        for (const slot of slots) {
          assert.strictEqual(slot.jobs, 1, slot.slot)
          assert.strictEqual(slot.runs, slot.rescued ? Math.max(1, slot.runs) : 1, slot.slot)
          assert.isAtMost(slot.runs, 2, slot.slot)
        }
        // Consecutive seconds: the new leader caught up the slots of the leaderless gap.
        const times = slots.map((slot) => Date.parse(slot.slot.split(":").slice(2).join(":")))
        for (let i = 1; i < times.length; i++) assert.strictEqual(times[i]! - times[i - 1]!, 1_000)
      })
      yield* run.pipe(Effect.provide(testLayer(prefix)))
    }).pipe(Effect.scoped), 60_000)
})
