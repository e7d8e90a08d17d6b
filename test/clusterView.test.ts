/**
 * Cluster: the view of a running node (producers, running jobs, leader,
 * crontab) and queue commands and bulk cancels given from outside the node,
 * which reach it through its signals.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "../src/Cluster.ts"
import * as Cron from "../src/Cron.ts"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("clusterview")

layer(testLayer(prefix, { maxConnections: 5 }), { excludeTestServices: true })("Cluster and bulk cancel against a running node", (it) => {
  it.effect("the view shows the node, its producers and running jobs, the leader and the crontab; commands reach the node", () =>
    Effect.gen(function*() {
      const interrupted = yield* Ref.make<ReadonlyArray<number>>([])
      const Hang = Worker.make("Hang", {
        args: Schema.Struct({ n: Schema.Int }),
        queue: "slow",
        perform: (job) => Effect.onInterrupt(Effect.never, () => Ref.update(interrupted, (ids) => [...ids, job.id]))
      })
      const { oban } = yield* startNode({
        node: "viewed",
        queues: { slow: 3, other: 2 },
        workers: [Hang],
        crontab: [Cron.entry("0 4 * * *", Hang, { n: 0 }, { name: "nightly", timezone: "Europe/Paris", queue: "crons" })]
      })
      yield* oban.ready
      const jobs = yield* Oban.insertAll([Hang.job({ n: 1 }), Hang.job({ n: 2 })])
      yield* waitFor("both jobs executing", Effect.map(Cluster.view, (view) =>
        view.nodes.some((node) => node.producers.some((p) => p.queue === "slow" && p.running === 2))))
      yield* waitFor("leadership", oban.isLeader)
      const view = yield* Cluster.view
      const node = view.nodes.find((item) => item.node === "viewed")!
      assert.isTrue(node.leader)
      assert.strictEqual(view.leader?.node, "viewed")
      assert.deepStrictEqual(node.producers.map((p) => [p.queue, p.limit, p.paused]).sort(), [["other", 2, false], ["slow", 3, false]])
      assert.isTrue(node.producers.every((p) => p.silentForMillis < 10_000))
      assert.isTrue(node.producers.every((p) => p.leader))
      // A dead incarnation of the same node name (SIGKILLed and restarted), not yet rescued: its row
      // is listed under the node, but not as the leader's.
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
                 VALUES (gen_random_uuid(), 'viewed', 'slow', 3, false, '{"instance":"a-process-gone"}',
                         now() - interval '2 minutes', now() - interval '30 seconds')`
      // Its heartbeats are late (30 s against the default interval of 10 s: more than twice it and 5 s); those of
      // a node that beats once a minute are not, after as long.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
                 VALUES (gen_random_uuid(), 'sparse', 'slow', 3, false, '{"instance":"a-sparse-process","heartbeatMillis":60000}',
                         now() - interval '2 minutes', now() - interval '30 seconds')`
      const withDead = yield* Cluster.view
      assert.deepStrictEqual(
        withDead.nodes.find((item) => item.node === "viewed")!.producers.map((p) => [p.queue, p.leader, p.silentForMillis > 20_000, p.late]).sort(),
        [["other", true, false, false], ["slow", false, true, true], ["slow", true, false, false]]
      )
      assert.deepStrictEqual(withDead.nodes.find((item) => item.node === "sparse")!.producers.map((p) => p.late), [false])
      yield* sql`DELETE FROM ${sql(prefix)}.oban_producers WHERE meta->>'instance' IN ('a-process-gone', 'a-sparse-process')`
      assert.strictEqual(view.crons.length, 1)
      const cron = view.crons[0]!
      assert.deepStrictEqual([cron.name, cron.expression, cron.timezone, cron.worker, cron.queue, cron.nodes], [
        "nightly", "0 4 * * *", "Europe/Paris", "Hang", "crons", ["viewed"]
      ])
      assert.isTrue(cron.nextRun !== undefined && cron.nextRun.getTime() > view.now.getTime())
      assert.isTrue(cron.nextRun!.getTime() - view.now.getTime() <= 24 * 3_600_000)
      // The node with the crontab holds the cron lease (taken at start, like the leader's).
      yield* waitFor("the cron lease", Effect.map(Cluster.view, (current) => current.cronLeader?.node === "viewed"))

      // Queue commands from outside the node: stored, signalled, applied.
      assert.strictEqual(yield* Cluster.pauseQueue("other"), 1)
      yield* waitFor("other paused on the node", Effect.map(oban.checkQueue("other"), (state) => state.paused))
      assert.strictEqual(yield* Cluster.scaleQueue("slow", 7, { node: "viewed" }), 1)
      yield* waitFor("slow scaled on the node", Effect.map(oban.checkQueue("slow"), (state) => state.limit === 7))
      assert.strictEqual(yield* Cluster.scaleQueue("slow", 5, { node: "elsewhere" }), 0)
      assert.strictEqual(yield* Cluster.resumeQueue("nope"), 0)
      assert.strictEqual((yield* Effect.flip(Cluster.scaleQueue("slow", 0)))._tag, "InvalidConfigError")
      // Bad names fail as bad input, not as a database error (NUL reached PostgreSQL before).
      const nul = yield* Effect.flip(Cluster.pauseQueue("sl\u0000ow"))
      assert.strictEqual(nul._tag, "InvalidConfigError")
      assert.match(nul.message, /NUL character/)
      assert.strictEqual((yield* Effect.flip(Cluster.resumeQueue("x".repeat(129))))._tag, "InvalidConfigError")
      assert.strictEqual((yield* Effect.flip(Cluster.scaleQueue("\uDC00", 3, { node: "viewed" })))._tag, "InvalidConfigError")
      // A node no name can fit: the same typed refusal, on its field (it used to find no node, and return 0).
      for (const node of ["", "n\u0000", "n".repeat(256)]) {
        const badNode = yield* Effect.flip(Cluster.pauseQueue("slow", { node }))
        assert.deepStrictEqual([badNode._tag, (badNode as { field?: string }).field], ["InvalidConfigError", "node"])
      }
      yield* Cluster.resumeQueue("other", { node: "viewed" })
      yield* waitFor("other resumed", Effect.map(oban.checkQueue("other"), (state) => !state.paused))

      // A bulk cancel from outside the node interrupts its executing jobs there.
      const result = yield* Jobs.cancel({ queues: ["slow"], ids: [jobs[0]!.id] })
      assert.strictEqual(result.changed, 1)
      yield* waitFor("the job was interrupted on the node", Effect.map(Ref.get(interrupted), (ids) => ids.includes(jobs[0]!.id)))
      // Its row stays executing, with the cancel requested, until the node writes the attempt's outcome.
      yield* waitFor("the job's row cancelled", Effect.map(jobRow(prefix, jobs[0]!.id), (row) => row.state === "cancelled"))
      // And through the node's own service.
      const own = yield* oban.cancelJobs({ states: ["executing"] })
      assert.strictEqual(own.changed, 1)
      yield* waitFor("the second job was interrupted", Effect.map(Ref.get(interrupted), (ids) => ids.includes(jobs[1]!.id)))
      yield* waitFor("the second job's row cancelled", Effect.map(jobRow(prefix, jobs[1]!.id), (row) => row.state === "cancelled"))
      const counts = yield* oban.countJobs()
      assert.strictEqual(counts.queues.find((q) => q.queue === "slow")?.states.cancelled, 2)
    }))
})
