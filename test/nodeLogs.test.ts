/**
 * Every line a node writes names it: its start line, its shutdown lines, its
 * loops' lines and the lines about its jobs carry the annotation `node` (and
 * `package`), the job lines keeping the job's own annotations.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../src/Cluster.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startLogged, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("node_logs")

/** Interrupted by shutdown inside an uninterruptible region of 3 s, which the node waits for. */
const Holds = Worker.make("NodeLogsHolds", {
  args: Schema.Struct({}),
  perform: () => Effect.uninterruptible(Effect.sleep("3 seconds"))
})

/** Runs until shutdown interrupts it after the grace period. */
const Stuck = Worker.make("NodeLogsStuck", { args: Schema.Struct({}), perform: () => Effect.never })
const Fails = Worker.make("NodeLogsFails", {
  args: Schema.Struct({}),
  maxAttempts: 1,
  perform: () => Effect.fail(new Error("no"))
})

layer(testLayer(prefix), { excludeTestServices: true })("a node's own log lines", (it) => {
  it.effect("its start and shutdown lines, like all its other lines, carry the node's name", () =>
    Effect.gen(function*() {
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "logs-node",
        queues: { default: 5 },
        workers: [Stuck, Fails],
        shutdownGracePeriod: "100 millis"
      })
      const [stuck, fails] = yield* oban.insertAll([Stuck.job({}), Fails.job({})])
      yield* waitFor("the stuck job runs", Effect.map(jobRow(prefix, stuck!.id), (row) => row.state === "executing"))
      yield* waitFor("the failing job is discarded", Effect.map(jobRow(prefix, fails!.id), (row) => row.state === "discarded"))
      yield* stop

      const line = (text: string | RegExp) => {
        const found = lines.find((line) => typeof text === "string" ? line.text === text : text.test(line.text))
        assert.isDefined(found, `a line ${String(text)} among ${JSON.stringify(lines.map((line) => line.text))}`)
        return found!.annotations
      }
      const named = (annotations: Readonly<Record<string, unknown>>) => [annotations["node"], annotations["package"]]
      assert.deepStrictEqual(named(line(/^node logs-node running queues default\(5\)/)), ["logs-node", "effect-oban"])
      assert.deepStrictEqual(named(line("shutdown: waiting up to 100ms for 1 job(s)")), ["logs-node", "effect-oban"])
      assert.deepStrictEqual(
        named(line("shutdown: interrupting 1 job(s) after the grace period")),
        ["logs-node", "effect-oban"]
      )
      // The job's line keeps the job's annotations, and says which node ran it too.
      const attempt = line(new RegExp(`^job ${fails!.id} \\(NodeLogsFails\\) attempt 1 of 1 failed`))
      assert.deepStrictEqual(
        [attempt["jobId"], attempt["worker"], attempt["queue"], attempt["attempt"], attempt["outcome"], attempt["node"]],
        [fails!.id, "NodeLogsFails", "default", 1, "failed", "logs-node"]
      )
      assert.deepStrictEqual(lines.filter((line) => line.annotations["node"] !== "logs-node"), [])
    }).pipe(Effect.scoped))

  it.effect("a job still inside an uninterruptible region 2 s after shutdown interrupted it is named in a warning", () =>
    Effect.gen(function*() {
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "holds-node",
        queues: { holds: 1 },
        workers: [Holds],
        shutdownGracePeriod: "100 millis"
      })
      const held = yield* oban.insert(Holds.job({}, { queue: "holds" }))
      yield* waitFor("the job runs", Effect.map(jobRow(prefix, held.id), (row) => row.state === "executing"))
      yield* Effect.sleep("200 millis")
      const started = Date.now()
      yield* stop
      const took = Date.now() - started
      assert.isAtLeast(took, 2_000, "the node waited for the uninterruptible region")
      const warning = lines.find((line) => line.text.startsWith("shutdown: 1 interrupted job(s) still running after 2 s"))
      assert.isDefined(warning, JSON.stringify(lines.map((line) => line.text)))
      assert.include(warning!.text, `(ids ${held.id}): each is inside an uninterruptible region`)
      assert.strictEqual(warning!.annotations["node"], "holds-node")
      // Its region was its last step, and ran to its end: it completed (interrupted inside it, Effect would
      // have dropped what the region did, and the job was given back to run a second time).
      const row = yield* jobRow(prefix, held.id)
      assert.deepStrictEqual([row.state, row.attempt], ["completed", 1])
    }).pipe(Effect.scoped), 20_000)

  it.effect("a loop that fails again and again gives the whole cause once, says a missing table may be a migration behind, and says when it recovers", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { lines, stop } = yield* startLogged({
        prefix,
        node: "behind-node",
        queues: { behind: 1 },
        workers: [],
        heartbeatInterval: "200 millis"
      })
      yield* waitFor("a heartbeat", Effect.sync(() => lines.some((line) => line.text.startsWith("node behind-node running"))))
      // The heartbeat's table goes away for a while, as when a migration is rolled back under running nodes.
      const moved = sql`ALTER TABLE ${sql(prefix)}.oban_producers RENAME TO oban_producers_away`
      const back = sql`ALTER TABLE ${sql(prefix)}.oban_producers_away RENAME TO oban_producers`.pipe(Effect.orDie)
      const failed = () => lines.filter((line) => line.text.startsWith("heartbeat failed"))
      yield* Effect.ensuring(
        Effect.andThen(moved, waitFor("three failed heartbeats", Effect.sync(() => failed().length >= 3), "10 seconds")),
        back
      )
      yield* waitFor("heartbeats again", Effect.sync(() => lines.some((line) => /^heartbeats get through again, after \d+ failed$/.test(line.text))))
      yield* stop
      const [first, ...repeats] = failed()
      for (const line of [first!, ...repeats]) assert.include(line.text, "the schema may be behind this release (run effect-oban migrate up")
      // The first carries the pretty cause (many lines); the repeats are one line each.
      assert.include(first!.text, "\n")
      for (const line of repeats) assert.notInclude(line.text, "\n", line.text)
    }).pipe(Effect.scoped), 20_000)

  it.effect("the leader's election and the LISTEN connection log failures in a row the same way, and say when they recover", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "elect-node",
        queues: { elect: 1 },
        workers: [],
        heartbeatInterval: "200 millis",
        leader: { ttl: "3 seconds", renewInterval: "300 millis" }
      })
      yield* oban.ready
      yield* waitFor("the lead", oban.isLeader)
      // The leases' table goes away for a while (a migration rolled back): every election fails.
      const moved = sql`ALTER TABLE ${sql(prefix)}.oban_peers RENAME TO oban_peers_away`
      const back = sql`ALTER TABLE ${sql(prefix)}.oban_peers_away RENAME TO oban_peers`.pipe(Effect.orDie)
      const failed = () => lines.filter((line) => line.text.startsWith("leader election failed"))
      yield* Effect.ensuring(
        Effect.andThen(moved, waitFor("three failed elections", Effect.sync(() => failed().length >= 3), "10 seconds")),
        back
      )
      yield* waitFor("elections again", Effect.sync(() => lines.some((line) => /^leader elections get through again, after \d+ failed$/.test(line.text))))
      // The node's LISTEN connection is cut: it connects again and says so.
      yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${"oban_notifier elect-node"}`
      yield* waitFor("LISTEN again", Effect.sync(() => lines.some((line) => /^LISTEN connection up again, after 1 failed$/.test(line.text))))
      yield* stop
      const [first, ...repeats] = failed()
      assert.isAtLeast(repeats.length, 2)
      for (const line of [first!, ...repeats]) assert.include(line.text, "the schema may be behind this release")
      assert.include(first!.text, "\n")
      for (const line of repeats) assert.notInclude(line.text, "\n", line.text)
      const lost = lines.filter((line) => line.text.startsWith("LISTEN connection lost"))
      assert.lengthOf(lost, 1, JSON.stringify(lines.map((line) => line.text)))
    }).pipe(Effect.scoped), 30_000)

  it.effect("a queue command that changes the node's queue is logged once, and so is one caught up by a heartbeat", () =>
    Effect.gen(function*() {
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "told-node",
        queues: { told: 5 },
        workers: [],
        heartbeatInterval: "200 millis"
      })
      yield* oban.ready
      const about = () => lines.filter((line) => line.text.startsWith("queue told ")).map((line) => line.text)
      yield* Cluster.pauseQueue("told")
      yield* waitFor("paused", Effect.map(oban.checkQueue("told"), (state) => state.paused))
      // A pause of a paused queue changes nothing: not said.
      yield* oban.pauseQueue("told")
      // Given through the node's own service, in this fiber (whose loggers are not the node's): the node
      // applies it at once and hears its signal too; said once, by the node's logger.
      yield* oban.scaleQueue("told", 7)
      yield* waitFor("scaled", Effect.map(oban.checkQueue("told"), (state) => state.limit === 7))
      yield* oban.resumeQueue("told")
      yield* waitFor("resumed", Effect.map(oban.checkQueue("told"), (state) => !state.paused))
      // Stored without its signal, as if this node's LISTEN connection were down: its heartbeat catches up.
      const sql = yield* SqlClient
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET paused = true, "limit" = 3 WHERE node = 'told-node'`
      yield* waitFor("paused by a heartbeat", Effect.map(oban.checkQueue("told"), (state) => state.paused))
      yield* Effect.sleep("500 millis")
      yield* stop
      // A heartbeat may read a command back in the moment before its signal arrives: it says so then.
      const heard = (change: string) => new RegExp(`^queue told ${change}(: read back by a heartbeat.*)?$`)
      const told = about()
      assert.strictEqual(told.length, 4, JSON.stringify(told))
      assert.match(told[0]!, /^queue told paused(: no more jobs start; running ones finish|: read back by a heartbeat.*)$/)
      assert.match(told[1]!, heard("scaled from 5 to 7"))
      assert.match(told[2]!, heard("resumed"))
      assert.strictEqual(
        told[3],
        "queue told paused and scaled from 7 to 3: read back by a heartbeat, from a command not applied here yet"
      )
      const said = lines.find((line) => line.text.startsWith("queue told resumed"))!.annotations
      assert.deepStrictEqual([said["node"], said["queue"], said["component"]], ["told-node", "told", "Producer"])
    }).pipe(Effect.scoped))

  it.effect("back from an outage that got its row marked dead, a node takes the commands stored in it meanwhile and says so", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { lines, oban, stop } = yield* startLogged({
        prefix,
        node: "away-node",
        queues: { away: 5 },
        workers: [],
        heartbeatInterval: "200 millis"
      })
      yield* oban.ready
      // A pause and a scale for this node alone, stored while it was cut off (it never heard their signals),
      // and the rescuer's mark after rescueAfter, in one statement: the node's next heartbeat finds no live
      // row and registers again. Before migration 22 the rescuer removed the row, and the commands with it.
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET paused = true, "limit" = 2, dead_at = now()
                 WHERE node = 'away-node'`
      yield* waitFor("paused again", Effect.map(oban.checkQueue("away"), (state) => state.paused && state.limit === 2))
      const rows = yield* sql<{ paused: boolean; limit: number; dead: boolean }>`
        SELECT paused, "limit", dead_at IS NOT NULL AS dead FROM ${sql(prefix)}.oban_producers WHERE node = 'away-node'`
      assert.deepStrictEqual(rows, [{ paused: true, limit: 2, dead: false }])
      // A resume for every node given during the next outage: the dead row takes it too, so the
      // registration that follows does not pause the node again. In one transaction, so that no
      // heartbeat registers in between.
      yield* sql.withTransaction(Effect.andThen(
        sql`UPDATE ${sql(prefix)}.oban_producers SET dead_at = now() WHERE node = 'away-node'`,
        Cluster.resumeQueue("away")
      ))
      yield* waitFor("registered again", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers
                           WHERE node = 'away-node' AND dead_at IS NULL AND NOT paused`,
        (rows) => rows[0]!.n === 1
      ))
      yield* Effect.sleep("100 millis")
      assert.isFalse((yield* oban.checkQueue("away")).paused)
      yield* stop
      const told = lines.filter((line) => line.text.startsWith("queue away ")).map((line) => line.text)
      assert.deepStrictEqual(told.slice(0, 1), [
        "queue away paused and scaled from 5 to 2: by a command given while this node could not reach the database"
      ])
      assert.match(told[1]!, /^queue away resumed(: by a command given while this node could not reach the database|: read back.*)?$/)
    }).pipe(Effect.scoped))

  it.effect("a node that inherits its queue's state from the last run under its name says so at start", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // What a run that crashed left: its pause and scale for this node alone, in its row.
      yield* sql`
        INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
        VALUES (gen_random_uuid(), 'heir-node', 'heir', 3, true, '{}'::jsonb, now() - interval '5 minutes',
                now() - interval '1 minute')`
      const { lines, oban, stop } = yield* startLogged({ prefix, node: "heir-node", queues: { heir: 5 }, workers: [] })
      yield* oban.ready
      const state = yield* oban.checkQueue("heir")
      yield* stop
      assert.deepStrictEqual([state.paused, state.limit], [true, 3])
      assert.deepStrictEqual(lines.map((line) => line.text).filter((text) => text.startsWith("queue heir")), [
        "queue heir starts paused with limit 3 (configured 5), as the last run of node heir-node left it " +
        "(what a command changed on this node, given for it or for every node, outlives a crash; a clean shutdown clears it)"
      ])
    }).pipe(Effect.scoped))
})

describe("a node whose database does not exist (a wrong DATABASE_URL)", () => {
  const missing = PgClient.layer({
    url: Redacted.make(databaseUrl().replace(/\/[^/?]*(\?|$)/, "/effect_oban_no_such_database$1")),
    connectTimeout: "2 seconds"
  })
  layer(missing, { excludeTestServices: true })((it) => {
    it.effect("says what the server said in its start line and in each retrying loop's warning, not only deep in a cause", () =>
      Effect.gen(function*() {
        const { lines, stop } = yield* startLogged({
          prefix,
          node: "no-db-node",
          queues: { default: 1 },
          workers: [Fails],
          heartbeatInterval: "200 millis"
        })
        const said = 'database "effect_oban_no_such_database" does not exist'
        const has = (pattern: RegExp) => lines.some((line) => pattern.test(line.text) && line.text.includes(said))
        yield* waitFor(
          "a heartbeat and a LISTEN warning with the reason",
          // Never made, so not "lost".
          Effect.sync(() => has(/^heartbeat failed/) && has(/^LISTEN connection could not be made/)),
          "10 seconds"
        )
        yield* stop
        const texts = lines.map((line) => line.text)
        assert.isTrue(has(/^could not check migrations at start-up; starting anyway: /), JSON.stringify(texts))
        assert.isTrue(has(/^node no-db-node running queues default\(1\); its database could not be checked at start-up/), JSON.stringify(texts))
        assert.isFalse(texts.some((text) => text.startsWith("LISTEN connection lost")), JSON.stringify(texts))
        // A failure to connect carries no stack (35 lines of the driver's socket handling each), shutdown's warnings neither.
        for (const line of lines.filter((entry) => entry.text.includes(said))) assert.notInclude(line.text, "\n    at ", line.text)
      }), 20_000)
  })
})
