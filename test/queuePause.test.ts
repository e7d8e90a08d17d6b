/**
 * A queue paused on every node stays paused for nodes that start later (a
 * rolling deploy, a new replica, a restart after a clean shutdown), until it
 * is resumed on every node; a pause for one node stays that node's. Checked
 * with real nodes, jobs that must not run, and the stored `paused_at`.
 */
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import pg from "pg"
import * as Cluster from "../src/Cluster.ts"
import { channel } from "../src/Config.ts"
import { storeQueuePause } from "../src/internal/sql/queues.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"
import { awaitReady, spawnNode, stopNode } from "./support/processes.ts"

const prefix = uniquePrefix("queuepause")

const runs: Array<number> = []
const Count = Worker.make("Count", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "mail",
  perform: (job) => Effect.sync(() => runs.push(job.id))
})

const base = { prefix, workers: [Count], pollInterval: "200 millis" } as const

// The worker of the node processes (support/nodeProcess.ts), by its name and args; it records each run in `runs`.
const Record = Worker.make("Record", { args: Schema.Struct({ n: Schema.Int }), perform: () => Effect.void })

/** When the queue was paused on every node, as stored; null when it is not. */
const pausedAt = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ paused_at: Date | null }>`
      SELECT paused_at FROM ${sql(prefix)}.oban_queues WHERE name = ${queue}`
    return rows[0]?.paused_at ?? null
  })

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_queues`
  runs.length = 0
})

/** The job is still waiting after its queue's nodes had time to fetch it. */
const stillWaiting = (id: number) =>
  Effect.gen(function*() {
    yield* Effect.sleep("600 millis")
    assert.strictEqual((yield* jobRow(prefix, id)).state, "available")
    assert.notInclude(runs, id)
  })

/** Some statement waits for a lock held by `client`'s open transaction (other test files share the server). */
const blockedBy = (client: Raw) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${client.pid}::int = ANY(pg_blocking_pids(pid))`
    return rows[0]!.n > 0
  })

/** A connection of its own, and its server process, closed with the test's scope. */
interface Raw {
  readonly query: (text: string) => Promise<unknown>
  readonly pid: number
  readonly schema: string
}
const rawClient = Effect.acquireRelease(
  Effect.promise(async (): Promise<Raw & { readonly end: () => Promise<void> }> => {
    const client = new pg.Client({ connectionString: databaseUrl() })
    await client.connect()
    const result = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")
    return {
      query: (text) => client.query(text),
      pid: result.rows[0]!.pid,
      schema: client.escapeIdentifier(prefix),
      end: () => client.end()
    }
  }),
  (client) => Effect.promise(() => client.end())
)

/** A clean slate with the queue's row in place, and a connection of its own inside an open transaction. */
const openTransaction = Effect.gen(function*() {
  yield* reset
  const sql = yield* SqlClient
  yield* sql`INSERT INTO ${sql(prefix)}.oban_queues (name) VALUES ('mail')`
  const client = yield* rawClient
  yield* Effect.promise(() => client.query("BEGIN"))
  return client
})

/**
 * A clean slate and a node `node` running `queue` (heartbeats every 200 ms), after a pause and a resume
 * for every node that its heartbeats have read; with the queue's count of those.
 */
const pausedAndResumed = (node: string, queue: string, heartbeatInterval: Duration.Input = "200 millis") =>
  Effect.gen(function*() {
    yield* reset
    const sql = yield* SqlClient
    const { oban } = yield* startNode({ ...base, node, queues: { [queue]: 2 }, heartbeatInterval })
    yield* oban.ready
    yield* Cluster.pauseQueue(queue)
    yield* waitFor("paused", Effect.map(oban.checkQueue(queue), (state) => state.paused))
    yield* Cluster.resumeQueue(queue)
    yield* waitFor("resumed", Effect.map(oban.checkQueue(queue), (state) => !state.paused))
    yield* Effect.sleep("500 millis")
    const [row] = yield* sql<{ count: string }>`
      SELECT pause_commands::text AS count FROM ${sql(prefix)}.oban_queues WHERE name = ${queue}`
    return { oban, count: BigInt(row!.count) }
  })

const completed = (id: number) => waitFor(`job ${id} completed`, Effect.map(jobRow(prefix, id), (row) => row.state === "completed"))

layer(testLayer(prefix, { maxConnections: 10 }), { excludeTestServices: true })("a queue paused on every node", (it) => {
  it.effect("stays paused on nodes that start later, under a new name or the same one after a clean shutdown", () =>
    Effect.gen(function*() {
      yield* reset
      const a = yield* startNode({ ...base, node: "pause-a", queues: { mail: 5 } })
      yield* a.oban.ready
      yield* a.oban.pauseQueue("mail")
      const since = yield* pausedAt("mail")
      assert.isNotNull(since)
      // A clean shutdown removes the node's producer rows, which used to be where the pause lived.
      yield* a.stop
      const again = yield* startNode({ ...base, node: "pause-a", queues: { mail: 5 } })
      const fresh = yield* startNode({ ...base, node: "pause-new", queues: { mail: 5 } })
      yield* again.oban.ready
      yield* fresh.oban.ready
      assert.isTrue((yield* again.oban.checkQueue("mail")).paused)
      assert.isTrue((yield* fresh.oban.checkQueue("mail")).paused)
      const job = yield* Oban.insert(Count.job({ n: 1 }))
      yield* stillWaiting(job.id)
      // A second pause keeps the time of the first.
      yield* fresh.oban.pauseQueue("mail")
      assert.deepStrictEqual(yield* pausedAt("mail"), since)

      yield* fresh.oban.resumeQueue("mail")
      assert.isNull(yield* pausedAt("mail"))
      yield* completed(job.id)
      yield* waitFor("the other node resumed by the signal", Effect.map(again.oban.checkQueue("mail"), (state) => !state.paused))
      const later = yield* startNode({ ...base, node: "pause-later", queues: { mail: 5 } })
      yield* later.oban.ready
      assert.isFalse((yield* later.oban.checkQueue("mail")).paused)
    }))

  it.effect("a pause for one node is that node's: nodes that start later run the queue", () =>
    Effect.gen(function*() {
      yield* reset
      const a = yield* startNode({ ...base, node: "one-a", queues: { mail: 5 } })
      yield* a.oban.ready
      yield* a.oban.pauseQueue("mail", { scope: "node" })
      assert.isNull(yield* pausedAt("mail"))
      const b = yield* startNode({ ...base, node: "one-b", queues: { mail: 5 } })
      yield* b.oban.ready
      assert.isFalse((yield* b.oban.checkQueue("mail")).paused)
      const job = yield* Oban.insert(Count.job({ n: 2 }))
      yield* completed(job.id)
      const [row] = yield* (yield* SqlClient)<{ node: string }>`
        SELECT attempted_by[1] AS node FROM ${(yield* SqlClient)(prefix)}.oban_jobs_all WHERE id = ${job.id}`
      assert.strictEqual(row!.node, "one-b")
    }))

  it.effect("Cluster.pauseQueue before any node runs the queue holds it paused from the first node's start", () =>
    Effect.gen(function*() {
      yield* reset
      // No producer yet: nobody is told, but the pause is kept for the queue.
      assert.strictEqual(yield* Cluster.pauseQueue("mail"), 0)
      const job = yield* Oban.insert(Count.job({ n: 3 }))
      const a = yield* startNode({ ...base, node: "early-a", queues: { mail: 5 } })
      yield* a.oban.ready
      assert.isTrue((yield* a.oban.checkQueue("mail")).paused)
      yield* stillWaiting(job.id)
      // Resuming one node runs the queue there; the pause stays for nodes that start later.
      yield* Cluster.resumeQueue("mail", { node: "early-a" })
      yield* completed(job.id)
      const since = yield* pausedAt("mail")
      assert.isNotNull(since)
      // The node runs the queue, and checkQueue says it is still paused for nodes that start later.
      const check = yield* a.oban.checkQueue("mail")
      assert.isFalse(check.paused)
      assert.deepStrictEqual(check.cluster?.pausedSince, since!)
      assert.strictEqual(yield* Cluster.resumeQueue("mail"), 1)
      assert.isNull(yield* pausedAt("mail"))
      assert.isUndefined((yield* a.oban.checkQueue("mail")).cluster?.pausedSince)
    }))

  it.effect("a node registering while a pause for every node commits starts paused (the row lock orders them)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // A pause for every node, as Cluster.pauseQueue writes it, held open in its transaction.
      const client = yield* openTransaction
      yield* Effect.promise(() => client.query(`UPDATE ${client.schema}.oban_queues SET paused_at = now() WHERE name = 'mail'`))
      const starting = yield* Effect.forkChild(startNode({ ...base, node: "racer", queues: { mail: 5 } }))
      // The node's registration now waits for the queue's row, having taken its snapshot before the commit.
      yield* waitFor("the registration waiting for the row lock", blockedBy(client))
      yield* Effect.promise(() => client.query("COMMIT"))
      const node = yield* Fiber.join(starting)
      yield* node.oban.ready
      assert.isTrue((yield* node.oban.checkQueue("mail")).paused)
      const job = yield* Oban.insert(Count.job({ n: 4 }))
      yield* stillWaiting(job.id)
      const [row] = yield* sql<{ paused: boolean }>`
        SELECT paused FROM ${sql(prefix)}.oban_producers WHERE node = 'racer' AND queue = 'mail'`
      assert.isTrue(row!.paused, "the stored producer row says paused too (heartbeats read it back)")
    }))

  it.effect("a node resumed for itself right after a pause for every node keeps running when it registers again before its next heartbeat", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const node = yield* startNode({ ...base, node: "quick", queues: { mail: 5 }, heartbeatInterval: "2 seconds" })
      yield* node.oban.ready
      // The pause's signal carries the queue's count of such commands; the node remembers it from there, not
      // only from its next heartbeat.
      yield* Cluster.pauseQueue("mail")
      yield* waitFor("paused by the signal", Effect.map(node.oban.checkQueue("mail"), (state) => state.paused))
      yield* Cluster.resumeQueue("mail", { node: "quick" })
      yield* waitFor("resumed here", Effect.map(node.oban.checkQueue("mail"), (state) => !state.paused))
      // Its rows removed (as after an outage) with no command for every node since: it keeps its own state.
      yield* sql`DELETE FROM ${sql(prefix)}.oban_producers WHERE node = 'quick'`
      yield* waitFor("the node registered again", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers WHERE node = 'quick'`,
        (rows) => rows[0]!.n === 1
      ))
      const job = yield* Oban.insert(Count.job({ n: 6 }))
      yield* completed(job.id)
      assert.isNotNull(yield* pausedAt("mail"), "still kept for nodes that start later")
    }))

  it.effect("a scale that arrives while a node registers under a kept pause scales it and leaves it paused", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // The queue paused for every node, its row held locked by a transaction of the test's, so the node's
      // registration waits for it.
      const client = yield* openTransaction
      yield* sql`UPDATE ${sql(prefix)}.oban_queues SET paused_at = now() WHERE name = 'mail'`.pipe(
        Effect.andThen(Effect.promise(() => client.query(`SELECT 1 FROM ${client.schema}.oban_queues WHERE name = 'mail' FOR UPDATE`)))
      )
      const starting = yield* Effect.forkChild(startNode({ ...base, node: "scaled", queues: { mail: 5 } }))
      yield* waitFor("the registration waiting for the row lock", blockedBy(client))
      // A scale for this node, as a command's signal says it (a command for a node whose row is not written yet
      // signals nothing, so the test sends it): it reaches the node while it registers.
      const signal = JSON.stringify({ action: "scale", queue: "mail", limit: 7, node: "scaled" })
      yield* sql`SELECT pg_notify(${channel(prefix, "signal")}, ${signal})`
      // A notification reaches a listening node in milliseconds; the margin is for a loaded machine.
      yield* Effect.sleep("2 seconds")
      yield* Effect.promise(() => client.query("COMMIT"))
      const node = yield* Fiber.join(starting)
      yield* node.oban.ready
      const state = yield* node.oban.checkQueue("mail")
      assert.deepStrictEqual([state.limit, state.paused], [7, true])
      const job = yield* Oban.insert(Count.job({ n: 5 }))
      yield* stillWaiting(job.id)
      const [row] = yield* sql<{ limit: number; paused: boolean }>`
        SELECT "limit", paused FROM ${sql(prefix)}.oban_producers WHERE node = 'scaled' AND queue = 'mail'`
      assert.deepStrictEqual([row!.limit, row!.paused], [7, true], "stored so, for heartbeats to read back")
    }))

  it.effect("a pause for every node waiting behind a registration pauses the producer that registered meanwhile", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // A registration, as registerProducer writes it: the queue's row locked, then the producer's row.
      const client = yield* openTransaction
      const schema = client.schema
      yield* Effect.promise(() =>
        client.query(`INSERT INTO ${schema}.oban_queues (name) VALUES ('mail') ON CONFLICT (name) DO UPDATE SET name = excluded.name`)
      )
      yield* Effect.promise(() =>
        client.query(`INSERT INTO ${schema}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
          VALUES (gen_random_uuid(), 'registering', 'mail', 5, false, '{}', now(), now())`)
      )
      const pausing = yield* Effect.forkChild(Cluster.pauseQueue("mail"))
      yield* waitFor("the pause waiting for the queue's row", blockedBy(client))
      yield* Effect.promise(() => client.query("COMMIT"))
      // Its update of the producer rows ran after the registration committed, and found its row.
      assert.strictEqual(yield* Fiber.join(pausing), 1)
      const [row] = yield* sql<{ paused: boolean }>`
        SELECT paused FROM ${sql(prefix)}.oban_producers WHERE node = 'registering'`
      assert.isTrue(row!.paused)
    }))

  it.effect("a node whose rows were removed during an outage registers again: it takes the queue's pause if it missed a pause or resume for every node, else keeps its own", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      // Kept before the node starts: "free" starts paused, and is then resumed for this node alone.
      yield* Cluster.pauseQueue("free")
      const queues = { mail: 5, own: 5, free: 5, again: 5 }
      const node = yield* startNode({ ...base, node: "away", queues, heartbeatInterval: "200 millis" })
      yield* node.oban.ready
      yield* node.oban.pauseQueue("mail")
      yield* node.oban.pauseQueue("own", { scope: "node" })
      yield* node.oban.pauseQueue("again", { scope: "node" })
      yield* Cluster.resumeQueue("free", { node: "away" })
      yield* waitFor("free resumed here", Effect.map(node.oban.checkQueue("free"), (state) => !state.paused))
      // A heartbeat after the commands: their signals are in, and the node has read the queues' counts.
      const [{ t }] = yield* sql<{ t: Date }>`SELECT now() AS t`
      yield* waitFor("a heartbeat after the commands", Effect.map(
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers WHERE node = 'away' AND updated_at > ${t}`,
        (rows) => rows[0]!.n === 4
      ))
      // What a long outage leaves: the rescuer removed the node's rows as stale, and a resume for every node of
      // "mail" and of "again" was given meanwhile (its queue rows written by storeQueuePause, as the command
      // writes them), whose row updates and signals the node could not see. Written in one transaction, without
      // a signal, so the node learns of it only by registering again.
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`DELETE FROM ${sql(prefix)}.oban_producers WHERE node = 'away'`
        yield* storeQueuePause(sql, prefix, "mail", false)
        yield* storeQueuePause(sql, prefix, "again", false)
      }))
      yield* waitFor("the node registered again", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers WHERE node = 'away'`,
        (rows) => rows[0]!.n === 4
      ))
      const [mail, own, free, again] = yield* Effect.forEach(
        ["mail", "own", "free", "again"],
        (queue, n) => Oban.insert(Count.job({ n: 10 + n }, { queue }))
      )
      // The pause for every node was lifted while it was away: the queue runs again (it used to stay paused).
      yield* completed(mail!.id)
      // A resume for every node resumes the node's own pause too, as it would have with its rows in place.
      yield* completed(again!.id)
      // Resumed for this node under a kept pause, and no command for every node since: it keeps running.
      yield* completed(free!.id)
      // Its own pause, and no command for every node since: it holds.
      yield* stillWaiting(own!.id)
      const rows = yield* sql<{ queue: string; paused: boolean }>`
        SELECT queue, paused FROM ${sql(prefix)}.oban_producers WHERE node = 'away' ORDER BY queue`
      assert.deepStrictEqual(rows.map((row) => [row.queue, row.paused]), [
        ["again", false],
        ["free", false],
        ["mail", false],
        ["own", true]
      ])
      assert.isNotNull(yield* pausedAt("free"), "the pause for every node of free is still kept")
    }))

  it.effect("a pause signal older than a resume the node has seen is not applied (a heartbeat can read the later command first)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Heartbeats far apart: one reads back the node's stored state, which would undo the scale signal
      // below (sent without a command behind it) before the test sees it.
      const { count, oban } = yield* pausedAndResumed("late-signal", "late", "10 seconds")
      // The pause's signal delivered now, after the resume: as a late signal would be, had a heartbeat
      // read the resume before it arrived.
      const older = String(count - 1n)
      yield* sql`SELECT pg_notify(${channel(prefix, "signal")}, ${
        JSON.stringify({ action: "pause", queue: "late", pause_commands: older })
      })`
      // A signal it would apply (the same count as the resume) is sent after it, so once that one has
      // been applied the stale one has been read too.
      yield* sql`SELECT pg_notify(${channel(prefix, "signal")}, ${
        JSON.stringify({ action: "scale", queue: "late", limit: 3 })
      })`
      yield* waitFor("the scale applied", Effect.map(oban.checkQueue("late"), (state) => state.limit === 3))
      assert.isFalse((yield* oban.checkQueue("late")).paused, "a stale pause signal paused the queue")
    }))

  it.effect("a late pause signal that arrives while the node registers again is not stored for it: the resume it read holds", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { count: n, oban } = yield* pausedAndResumed("late-reg", "latereg")
      // A pause (n + 1) and a resume (n + 2) for every node: the resume's transaction holds the queue's row.
      const client = yield* rawClient
      yield* Effect.promise(() => client.query("BEGIN"))
      yield* Effect.promise(() =>
        client.query(`UPDATE ${client.schema}.oban_queues SET paused_at = NULL, pause_commands = ${n + 2n} WHERE name = 'latereg'`)
      )
      // The node's row removed, as the rescuer does after an outage: its next heartbeat registers again and waits.
      yield* sql`DELETE FROM ${sql(prefix)}.oban_producers WHERE node = 'late-reg'`
      yield* waitFor("the registration waits for the queue's row", blockedBy(client))
      // The pause's signal arrives while it waits: the node pauses for now.
      yield* sql`SELECT pg_notify(${channel(prefix, "signal")}, ${
        JSON.stringify({ action: "pause", queue: "latereg", pause_commands: String(n + 1n) })
      })`
      yield* waitFor("paused by the late signal", Effect.map(oban.checkQueue("latereg"), (state) => state.paused))
      yield* Effect.promise(() => client.query("COMMIT"))
      // The registration read the resume (n + 2): the node runs, and its row says so for heartbeats to read back.
      yield* waitFor("running again", Effect.map(oban.checkQueue("latereg"), (state) => !state.paused))
      yield* Effect.sleep("600 millis")
      const rows = yield* sql<{ paused: boolean }>`SELECT paused FROM ${sql(prefix)}.oban_producers WHERE node = 'late-reg'`
      assert.deepStrictEqual(rows, [{ paused: false }])
      assert.isFalse((yield* oban.checkQueue("latereg")).paused)
    }))

  it.effect("after the queues table is emptied (a test's TRUNCATE), a node applies the new commands' signals at once", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      const { oban } = yield* startNode({ ...base, node: "recount", queues: { recount: 2 }, heartbeatInterval: "3 seconds" })
      yield* oban.ready
      const paused = (want: boolean) => Effect.map(oban.checkQueue("recount"), (state) => state.paused === want)
      // Four pauses and resumes: the node remembers a count of 4.
      for (let i = 0; i < 2; i++) {
        yield* Cluster.pauseQueue("recount")
        yield* waitFor("paused", paused(true))
        yield* Cluster.resumeQueue("recount")
        yield* waitFor("resumed", paused(false))
      }
      yield* sql`TRUNCATE ${sql(prefix)}.oban_queues`
      // Counted from 1 again: the first signal looks older than 4, and a heartbeat (3 s) brings the pause.
      yield* Cluster.pauseQueue("recount")
      yield* waitFor("paused by a heartbeat", paused(true), "10 seconds")
      // That heartbeat read the lower count and took it: the next signal applies at once, not at a heartbeat.
      yield* Cluster.resumeQueue("recount")
      yield* waitFor("resumed by its signal", paused(false), "1 second")
    }), 30_000)

  it.effect("Cluster.view lists the queues paused for every node until resumed for every node", () =>
    Effect.gen(function*() {
      yield* reset
      yield* Cluster.pauseQueue("mail")
      yield* Cluster.pauseQueue("other", { node: "somewhere" })
      const view = yield* Cluster.view
      assert.deepStrictEqual(view.pausedQueues.map((entry) => entry.queue), ["mail"])
      assert.isTrue(view.pausedQueues[0]!.since.getTime() <= view.now.getTime())
      yield* Cluster.resumeQueue("mail")
      assert.deepStrictEqual((yield* Cluster.view).pausedQueues, [])
    }))
  it.effect("the documented deploy: a node process under runMain, paused for every node, SIGTERMed and started again, comes back paused", () =>
    Effect.gen(function*() {
      yield* reset
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`
      const env = { DATABASE_URL: databaseUrl(), PREFIX: prefix, QUEUES: JSON.stringify({ default: 5 }) }
      const producerRows = Effect.map(
        sql<{ paused: boolean }>`SELECT paused FROM ${sql(prefix)}.oban_producers WHERE node = 'deploy-a' AND queue = 'default'`,
        (rows) => rows.map((row) => row.paused)
      )
      const first = yield* spawnNode("deploy-a", env)
      yield* awaitReady(first)
      yield* waitFor("the first process registered", Effect.map(producerRows, (rows) => rows.length === 1))
      assert.strictEqual(yield* Cluster.pauseQueue("default"), 1)
      assert.isNotNull(yield* stopNode(first, "SIGTERM"))
      // A clean shutdown: its producer row, where the pause used to live, is gone.
      assert.deepStrictEqual(yield* producerRows, [])

      const second = yield* spawnNode("deploy-a", env)
      yield* awaitReady(second)
      yield* waitFor("the new process registered", Effect.map(producerRows, (rows) => rows.length === 1))
      assert.deepStrictEqual(yield* producerRows, [true])
      const job = yield* Oban.insert(Record.job({ n: 1 }))
      // Two of the process's 500 ms polls, besides the insert's notification.
      yield* Effect.sleep("1200 millis")
      assert.strictEqual((yield* jobRow(prefix, job.id)).state, "available")
      const ran = sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.runs`
      assert.strictEqual((yield* ran)[0]!.n, 0)
      assert.strictEqual(yield* Cluster.resumeQueue("default"), 1)
      yield* waitFor("the job ran once resumed", Effect.map(ran, (rows) => rows[0]!.n === 1))
      assert.isNotNull(yield* stopNode(second, "SIGTERM"))
    }))
})
