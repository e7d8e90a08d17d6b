/**
 * Liveness with real OS processes: heartbeats that a starved pool cannot hold
 * back, a node restarted under the same name (its crashed incarnation's jobs
 * are rescued, the new one's never), two live processes given the same
 * node name, a process whose event loop stalls past rescueAfter, and a
 * leader paused along with another node (SIGSTOP, as a paused VM). Every
 * perform is counted in a side table, so a duplicate run shows.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Schema, type Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { PgClient } from "@effect/sql-pg"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, producersRegistered, startNode, waitFor } from "./support/node.ts"
import { awaitReady, type NodeProcess, spawnNode, stopNode } from "./support/processes.ts"

// The same name and args as the worker in nodeProcess.ts; only used to build requests here.
const Record = Worker.make("Record", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

/**
 * Records each run in `<prefix>.runs` (node "stalled"); job 0's first run then blocks the whole
 * process for `stallMillis`, as a CPU-bound worker, a VM pause or SIGSTOP would.
 */
const stallMillis = 6_000
let stalled = false
const Stall = Worker.make("Stall", {
  args: Schema.Struct({ n: Schema.Int, prefix: Schema.String }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(job.args.prefix)}.runs (job_id, node) VALUES (${job.id}, 'stalled')`
      if (job.args.n !== 0 || stalled) return
      stalled = true
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMillis)
    })
})

/**
 * Job 0's first run blocks the whole process for `stallMillis`, then works on for a second: a job
 * still running when its node wakes from the stall. Each run is recorded in `<prefix>.runs`.
 */
let loneStalled = false
const LoneStall = Worker.make("LoneStall", {
  args: Schema.Struct({ n: Schema.Int, prefix: Schema.String }),
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(job.args.prefix)}.runs (job_id, node) VALUES (${job.id}, 'lone')`
      if (job.args.n !== 0 || loneStalled) return
      loneStalled = true
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMillis)
      yield* Effect.sleep("1 second")
    })
})

/**
 * Fast maintenance, so that a wrong rescue shows within seconds. A live node's heartbeat may be
 * 3.7 s late (its lease renewal 3.5 s) before it counts as gone: room for a loaded machine's stalls.
 */
const fastMaintenance = {
  HEARTBEAT_MS: "300",
  RESCUE_AFTER_MS: "4000",
  RESCUE_INTERVAL_MS: "300",
  LEASE_TTL_MS: "4000",
  LEASE_RENEW_MS: "500"
}

const setUp = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`
  })

const envFor = (prefix: string, extra: Record<string, string>) => ({
  DATABASE_URL: databaseUrl(),
  PREFIX: prefix,
  ...fastMaintenance,
  ...extra
})

/** Per job: how often it ran and the kinds of its errors entries. */
const history = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql<{ id: number; state: string; runs: number; kinds: ReadonlyArray<string> }>`
      SELECT j.id::int AS id, j.state::text AS state,
             (SELECT count(*)::int FROM ${sql(prefix)}.runs r WHERE r.job_id = j.id) AS runs,
             ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(j.errors) e) AS kinds
      FROM ${sql(prefix)}.oban_jobs_all j ORDER BY j.id`
  })

/**
 * Two node processes: "watcher", which leads (its lease, 30 s, outlasts a pause, so it still leads
 * when it wakes; `watcherEnv` adds its queues and settings), and "busy", running two 8 s jobs once
 * this returns. Each logs its warnings.
 */
const watcherAndBusy = (prefix: string, watcherEnv: Record<string, string>) =>
  Effect.gen(function*() {
    const lease = { LEASE_TTL_MS: "30000", LEASE_RENEW_MS: "1000" }
    const watcher = yield* spawnNode("watcher", envFor(prefix, { ...lease, ...watcherEnv, LOG_LEVEL: "Warn" }))
    yield* awaitReady(watcher)
    const watcherReadyAt = yield* Clock.currentTimeMillis
    yield* waitFor("the watcher to lead", Effect.sync(() => watcher.isLeader()))
    const busy = yield* spawnNode(
      "busy",
      envFor(prefix, { ...lease, QUEUES: JSON.stringify({ default: 2 }), JOB_MS: "8000", JOB_MS_NODE: "busy" })
    )
    yield* awaitReady(busy)
    const jobs = yield* Oban.insertAll([Record.job({ n: 1 }), Record.job({ n: 2 })])
    yield* waitFor(
      "both jobs running on busy",
      Effect.map(history(prefix), (rows) => rows.length === 2 && rows.every((job) => job.runs === 1))
    )
    // The watcher counts as connected for rescueAfter (4 s) from its start, and its rescuer runs only then.
    const untilWatcherRescues = Effect.flatMap(
      Clock.currentTimeMillis,
      (now) => Effect.sleep(Math.max(0, watcherReadyAt + 4_500 - now))
    )
    return { watcher, busy, jobs, untilWatcherRescues }
  })

/**
 * A paused VM holding both processes: `SIGSTOP` both for 6 s, wake `first`, and wake `second` 1.5 s
 * later, its rows then older than rescueAfter (4 s) for as long.
 */
const pausedTogether = (first: NodeProcess, second: NodeProcess) =>
  Effect.gen(function*() {
    second.child.kill("SIGSTOP")
    first.child.kill("SIGSTOP")
    yield* Effect.sleep("6 seconds")
    first.child.kill("SIGCONT")
    yield* Effect.sleep("1500 millis")
    second.child.kill("SIGCONT")
  })

/**
 * Waits for jobs `ids` to complete, then until a leader that woke could rescue again (rescueAfter,
 * 4 s, plus a round), and checks that each ran once and none was rescued.
 */
const ranOnceUnrescued = (prefix: string, ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const wanted = new Set(ids)
    const mine = Effect.map(history(prefix), (rows) => rows.filter((job) => wanted.has(job.id)))
    yield* waitFor("the jobs completed", Effect.map(mine, (rows) => rows.every((job) => job.state === "completed")), "40 seconds")
    yield* Effect.sleep("3 seconds")
    for (const job of yield* mine) {
      assert.deepStrictEqual([job.state, job.runs, job.kinds], ["completed", 1, []], `job ${job.id}`)
    }
  })

/** Runs `effect` on a fresh, migrated schema `prefix` (testLayer also provides its Config). */
const inPrefix = (prefix: string) => <A, E>(effect: Effect.Effect<A, E, SqlClient | PgClient.PgClient | Scope.Scope>) =>
  Effect.provide(effect, testLayer(prefix))

describe("liveness across OS processes", () => {
  it.live("a pool smaller than the queue limit, with workers holding connections: no live job is rescued", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_pool")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        // The leader runs no jobs: its rescuer watches the busy node.
        const watcher = yield* spawnNode("watcher", envFor(prefix, { QUEUES: JSON.stringify({ other: 1 }) }))
        yield* awaitReady(watcher)
        yield* waitFor("the watcher to lead", Effect.sync(() => watcher.isLeader()))
        // Pool 3, limit 6: each job holds a pooled connection for 6 s, so the pool is busy for about 12 s,
        // three times rescueAfter.
        const busy = yield* spawnNode(
          "busy",
          envFor(prefix, { QUEUES: JSON.stringify({ default: 6 }), POOL: "3", JOB_DB_MS: "6000" })
        )
        yield* awaitReady(busy)
        yield* Oban.insertAll(Array.from({ length: 6 }, (_, n) => Record.job({ n })))
        yield* waitFor("every job completed", Effect.map(countByState(prefix), (c) => c["completed"] === 6), "60 seconds")
        for (const job of yield* history(prefix)) {
          assert.deepStrictEqual([job.state, job.runs, job.kinds], ["completed", 1, []], `job ${job.id}`)
        }
      }))
    }).pipe(Effect.scoped), 120_000)

  it.live("a node SIGKILLed and restarted under the same name: the old incarnation's jobs are rescued, the new one's never", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_restart")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        const first = yield* spawnNode("web-1", envFor(prefix, { QUEUES: JSON.stringify({ default: 5 }), JOB_MS: "600000" }))
        yield* awaitReady(first)
        yield* Oban.insertAll(Array.from({ length: 3 }, (_, n) => Record.job({ n })))
        yield* waitFor("the first incarnation runs every job", Effect.map(history(prefix), (jobs) => jobs.every((j) => j.runs === 1)))
        yield* stopNode(first, "SIGKILL")
        // Restarted at once, under the same name; its own jobs take 8 s, longer than rescueAfter.
        const second = yield* spawnNode(
          "web-1",
          envFor(prefix, { QUEUES: JSON.stringify({ default: 5 }), JOB_MS: "8000", LOG_LEVEL: "Warn" })
        )
        yield* awaitReady(second)
        yield* waitFor("the orphans completed", Effect.map(countByState(prefix), (c) => c["completed"] === 3), "40 seconds")
        // The dead incarnation's rows were fresh when it started, but never beat again: no namesake warning.
        assert.notInclude(second.output(), "another live process")
        // Each orphan ran once on the dead incarnation and once more after its rescue; never a third time.
        for (const job of yield* history(prefix)) {
          assert.deepStrictEqual([job.state, job.runs, job.kinds], ["completed", 2, ["rescued"]], `job ${job.id}`)
        }
        // A job of the new incarnation that outlives rescueAfter is left alone.
        const [fresh] = yield* Oban.insertAll([Record.job({ n: 99 })])
        yield* waitFor("the new job completed", Effect.map(history(prefix), (jobs) =>
          jobs.some((j) => j.id === fresh!.id && j.state === "completed")), "30 seconds")
        const again = (yield* history(prefix)).find((j) => j.id === fresh!.id)!
        assert.deepStrictEqual([again.runs, again.kinds], [1, []])
      }))
    }).pipe(Effect.scoped), 120_000)

  it.live("two live processes given the same node name: one leader at a time, each job run once", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_twins")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        const env = envFor(prefix, { QUEUES: JSON.stringify({ default: 10 }), JOB_MS: "5", LOG_LEVEL: "Warn" })
        const twins: ReadonlyArray<NodeProcess> = yield* Effect.forEach(["twin", "twin"], (name) => spawnNode(name, env))
        yield* Effect.forEach(twins, (node) => awaitReady(node))
        yield* Oban.insertAll(Array.from({ length: 2_000 }, (_, n) => Record.job({ n })))
        const deadline = Date.now() + 60_000
        while ((yield* countByState(prefix))["completed"] !== 2_000) {
          assert.isAtMost(twins.filter((node) => node.isLeader()).length, 1, "both processes lead")
          assert.isBelow(Date.now(), deadline, "the drain did not finish")
          yield* Effect.sleep("50 millis")
        }
        assert.isAtMost(twins.filter((node) => node.isLeader()).length, 1, "both processes lead")
        const sql = yield* SqlClient
        const [stats] = yield* sql<{ runs: number; jobs: number }>`
          SELECT count(*)::int AS runs, count(DISTINCT job_id)::int AS jobs FROM ${sql(prefix)}.runs`
        assert.deepStrictEqual(stats, { runs: 2_000, jobs: 2_000 })
        const producers = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers WHERE node = 'twin' AND queue = 'default'`
        assert.strictEqual(producers[0]!.n, 2)
        // The one that registered second saw the other's row beat since, and said so.
        assert.include(twins.map((node) => node.output()).join("\n"), "another live process runs queue default under the node name twin")
      }))
    }).pipe(Effect.scoped), 120_000)

  it.live("a node whose heartbeats cannot get through stops claiming jobs, and claims again once they do", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_lost")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* startNode({
          prefix,
          node: "silenced",
          queues: { default: 5 },
          workers: [Record],
          pollInterval: "100 millis",
          heartbeatInterval: "300 millis",
          rescuer: { rescueAfter: "2 seconds" }
        })
        yield* producersRegistered(prefix)
        // Another session locks the producers table: heartbeats wait behind it, fetching does not.
        const locked = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        yield* Effect.forkScoped(sql.withTransaction(Effect.gen(function*() {
          yield* sql`LOCK TABLE ${sql(prefix)}.oban_producers IN ACCESS EXCLUSIVE MODE`
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(release)
        })))
        yield* Deferred.await(locked)
        // Past rescueAfter - heartbeatInterval (1.7 s) without a heartbeat, the node must not claim; and
        // already before rescueAfter itself (2 s, when a rescuer could take what it claims).
        yield* Effect.sleep("1900 millis")
        yield* Oban.insertAll(Array.from({ length: 3 }, (_, n) => Record.job({ n })))
        yield* Effect.sleep("1 second")
        assert.deepStrictEqual(yield* countByState(prefix), { available: 3 })
        yield* Deferred.succeed(release, undefined)
        yield* waitFor("the jobs completed once heartbeats got through", Effect.map(countByState(prefix), (c) =>
          c["completed"] === 3), "15 seconds")
      }))
    }).pipe(Effect.scoped), 60_000)

  it.live("a process stalled past rescueAfter does not start the jobs it claimed ahead: they were rescued meanwhile", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_stall")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        // The leader, in a process of its own, runs no jobs: its rescuer judges the stalled node.
        const watcher = yield* spawnNode("watcher", envFor(prefix, { QUEUES: JSON.stringify({ other: 1 }) }))
        yield* awaitReady(watcher)
        yield* waitFor("the watcher to lead", Effect.sync(() => watcher.isLeader()))
        yield* startNode({
          prefix,
          node: "stalled",
          queues: { default: 1 },
          workers: [Stall],
          heartbeatInterval: "300 millis",
          rescuer: { rescueAfter: "4 seconds" }
        })
        yield* producersRegistered(prefix)
        // Limit 1: job 1 runs alone; once it has, short jobs are claimed ahead, so the stalling job 0 and
        // the 40 after it wait in the node's buffer, claimed. The rescue puts them back while it stalls.
        const job = (n: number, priority: number) => Stall.job({ n, prefix }, { priority })
        const jobs = yield* Oban.insertAll([
          ...Array.from({ length: 20 }, (_, k) => job(k + 1, 0)),
          job(0, 1),
          ...Array.from({ length: 40 }, (_, k) => job(k + 21, 2))
        ])
        // The stall blocks this process's event loop too: a connection this test's pool was opening then
        // times out as the loop resumes (its timer fires before its socket is read). Such a poll counts as
        // "not yet".
        yield* waitFor(
          "every job completed",
          Effect.map(countByState(prefix), (c) => c["completed"] === 61).pipe(Effect.orElseSucceed(() => false)),
          "60 seconds"
        )
        const byId = new Map((yield* history(prefix)).map((run) => [run.id, run]))
        const [before, [stalling], after] = [jobs.slice(0, 20), jobs.slice(20, 21), jobs.slice(21)]
        // The stalling job ran past rescueAfter: rescued, and run again (at least once, as documented).
        assert.deepStrictEqual([byId.get(stalling!.id)!.runs, byId.get(stalling!.id)!.kinds], [2, ["rescued"]])
        // Jobs that had finished before the stall ran again only if their outcome was not written yet.
        for (const { id } of before) {
          const run = byId.get(id)!
          assert.deepStrictEqual([run.runs, run.kinds], run.runs === 1 ? [1, []] : [2, ["rescued"]], `job ${id}`)
        }
        // Those waiting in the node's buffer were rescued during the stall: they ran once, after it.
        for (const { id } of after) assert.strictEqual(byId.get(id)!.runs, 1, `job ${id}`)
      }))
    }).pipe(Effect.scoped), 90_000)

  it.live("a leader that wakes from a stall past rescueAfter takes back none of the jobs it is running itself", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_lone")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        const sql = yield* SqlClient
        // The only node, so it leads; its lease (30 s) outlasts the stall. Before 2026-12-06 its rescuer ran as
        // soon as the process woke, before the heartbeat (due every 3 s) had refreshed its own rows. Now the
        // stall is a lapse of the process (over 1 s with these settings) and holds its rescues back for
        // rescueAfter; the rescuer sparing its own producers (`liveProducers`) is tested on its own in
        // maintenance.test.ts. This stays as the end-to-end check that such a stall runs nothing twice.
        const node = yield* startNode({
          prefix,
          node: "lone",
          queues: { default: 1 },
          workers: [LoneStall],
          heartbeatInterval: "3 seconds",
          rescuer: { rescueAfter: "4 seconds", interval: "50 millis" }
        })
        yield* producersRegistered(prefix)
        yield* waitFor("the node to lead", node.oban.isLeader)
        // The stall starts just after a heartbeat, so the rescuer's next run is due long before the next beat.
        const lastBeat = sql<{ at: string }>`SELECT max(updated_at)::text AS at FROM ${sql(prefix)}.oban_producers`.pipe(
          Effect.map((rows) => rows[0]?.at ?? "")
        )
        const before = yield* lastBeat
        yield* waitFor("a heartbeat", Effect.map(lastBeat, (at) => at !== before))
        const [job] = yield* Oban.insertAll([LoneStall.job({ n: 0, prefix })])
        yield* waitFor(
          "the job completed",
          Effect.map(countByState(prefix), (c) => c["completed"] === 1).pipe(Effect.orElseSucceed(() => false)),
          "60 seconds"
        )
        // A second round of rescues after it, which would take it back had it been judged dead.
        yield* Effect.sleep("500 millis")
        const [run] = (yield* history(prefix)).filter((row) => row.id === job!.id)
        assert.deepStrictEqual([run!.state, run!.runs, run!.kinds], ["completed", 1, []])
      }))
    }).pipe(Effect.scoped), 90_000)

  it.live("a leader and a node paused together (a paused VM), woken one after the other: the node's running jobs are not rescued", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_vm")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        yield* setUp(prefix)
        const { watcher, busy, untilWatcherRescues } = yield* watcherAndBusy(prefix, { QUEUES: JSON.stringify({ other: 1 }) })
        // The watcher has been connected for longer than rescueAfter (4 s), so its rescuer (every 300 ms)
        // runs as soon as it wakes; busy wakes 1.5 s later, its rows then 7.5 s old.
        yield* untilWatcherRescues
        yield* pausedTogether(watcher, busy)
        yield* ranOnceUnrescued(prefix, (yield* history(prefix)).map((job) => job.id))
        assert.isTrue(watcher.isLeader())
        assert.include(watcher.output(), "this process did not run for")
      }))
    }).pipe(Effect.scoped), 120_000)

  it.live("a leader paused with another node after its rescuer decided, while the rescue waited for a connection: nothing is rescued", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_window")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* setUp(prefix)
        // The watcher's two pooled connections are both taken by its own jobs (3 s of pg_sleep each): its
        // rescuer, which runs every 300 ms, has decided to rescue and waits for a connection.
        const { watcher, busy, jobs, untilWatcherRescues } = yield* watcherAndBusy(prefix, {
          QUEUES: JSON.stringify({ hog: 2 }),
          POOL: "2",
          JOB_DB_MS: "3000"
        })
        // The watcher has been connected for longer than rescueAfter (4 s) by the time its pool is taken, so
        // its rescuer runs (it does not before), however quickly busy and its jobs started.
        yield* untilWatcherRescues
        yield* Oban.insertAll([Record.job({ n: 3 }, { queue: "hog" }), Record.job({ n: 4 }, { queue: "hog" })])
        yield* waitFor("both hog jobs in pg_sleep", Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.runs WHERE node = 'watcher'`,
          (rows) => rows[0]!.n === 2
        ))
        yield* Effect.sleep("500 millis")
        // Paused together; the hog jobs' pg_sleep ends on the server meanwhile, so the watcher's rescue gets
        // its connection right as it wakes, with busy's rows 6 s old and busy still paused for 1.5 s.
        yield* pausedTogether(watcher, busy)
        yield* ranOnceUnrescued(prefix, jobs.map((job) => job.id))
        assert.isTrue(watcher.isLeader())
        assert.include(watcher.output(), "job(s) was rolled back")
      }))
    }).pipe(Effect.scoped), 120_000)

  it.live("a job stranded under a live node (its outcome or claim lost on the way) is released by that node", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("live_stranded")
      yield* inPrefix(prefix)(Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* startNode({
          prefix,
          node: "forgetful",
          queues: { default: 5 },
          workers: [Record],
          pollInterval: "100 millis",
          heartbeatInterval: "300 millis",
          rescuer: { rescueAfter: "2 seconds", interval: "300 millis" }
        })
        yield* producersRegistered(prefix)
        const [producer] = yield* sql<{ id: string }>`SELECT id::text AS id FROM ${sql(prefix)}.oban_producers`
        // As after a database crash that forgot an ack: executing under this live producer, run by nobody.
        const [job] = yield* Oban.insertAll([Record.job({ n: 1 }, { scheduleIn: "1 hour" })])
        yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1,
                   attempted_at = now() - interval '3 seconds',
                   attempted_by = ARRAY['forgetful', ${producer!.id}, 'a-claim-nobody-holds']
                   WHERE id = ${job!.id}`
        yield* waitFor("the stranded job completed", Effect.map(
          sql<{ state: string; kinds: ReadonlyArray<string> }>`
            SELECT state::text, ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(errors) e) AS kinds
            FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job!.id}`,
          (rows) => rows[0]!.state === "completed"
        ), "15 seconds")
        const [after] = yield* sql<{ kinds: ReadonlyArray<string>; attempt: number }>`
          SELECT attempt, ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(errors) e) AS kinds
          FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job!.id}`
        assert.deepStrictEqual([after!.attempt, after!.kinds], [2, ["rescued"]])
      }))
    }).pipe(Effect.scoped), 60_000)
})
