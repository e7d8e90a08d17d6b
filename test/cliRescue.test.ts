/**
 * `effect-oban jobs rescue` as an OS process: the leader's rescue, run by an
 * operator when no node runs. Jobs left executing by a node that no longer
 * answers (silent past its own rescueAfter, or its row gone) go back to run
 * again, out of attempts are discarded, with a cancel requested are
 * cancelled; jobs of a node that still answers are left alone.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { cliIn } from "./support/cli.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, silentProducer } from "./support/node.ts"
import { insertJobs } from "./support/dashboard.ts"

const prefix = uniquePrefix("cli_rescue")
const cli = cliIn(prefix)

layer(testLayer(prefix), { excludeTestServices: true })("effect-oban jobs rescue", (it) => {
  it.effect("puts back the jobs of nodes past their rescueAfter, and leaves a node that still answers alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Silent 2 minutes (default rescueAfter 60 s), silent 2 minutes with a rescueAfter of 5, and no row at all.
      const gone = yield* silentProducer(prefix, "gone-node", "2 minutes")
      const patient = yield* silentProducer(prefix, "patient-node", "2 minutes", { rescueAfterMillis: 300_000 })
      // A rescueAfter of 31,000 years, which put the statement's time out of range and failed every rescue.
      const eternal = yield* silentProducer(prefix, "eternal-node", "2 minutes", { rescueAfterMillis: 1e15 })
      // A row dead for two days: the CLI leaves forgetting it to the nodes, whose forgetAfter it does not know.
      const longDead = yield* silentProducer(prefix, "long-dead-node", "3 days")
      yield* sql.unsafe(`UPDATE "${prefix}".oban_producers SET dead_at = now() - interval '2 days' WHERE id = '${longDead}'`)
      const ids = yield* insertJobs(prefix, [{ queue: "q" }, { queue: "q" }, { queue: "q" }, { queue: "q" }, { queue: "q" }, { queue: "q" }])
      const claim = (id: number, node: string, producer: string, attempt: number, extra = "") =>
        sql.unsafe(`UPDATE "${prefix}".oban_jobs SET state = 'executing', attempt = ${attempt}, max_attempts = 3,
                    attempted_at = now(), attempted_by = ARRAY['${node}', '${producer}', gen_random_uuid()::text]${extra}
                    WHERE id = ${id}`)
      const [again, spent, cancelAsked, kept, orphan, keptLong] = ids as [number, number, number, number, number, number]
      yield* claim(again, "gone-node", gone, 1)
      yield* claim(spent, "gone-node", gone, 3)
      yield* claim(cancelAsked, "gone-node", gone, 1, ", cancel_requested_at = now()")
      yield* claim(kept, "patient-node", patient, 1)
      yield* claim(orphan, "vanished-node", crypto.randomUUID(), 1)
      yield* claim(keptLong, "eternal-node", eternal, 1)

      const run = yield* cli("jobs", "rescue", "--json")
      assert.strictEqual(run.code, 0, run.stderr)
      const output = JSON.parse(run.stdout) as {
        readonly rescued: number
        readonly discarded: number
        readonly cancelled: number
        readonly answering: ReadonlyArray<{ readonly node: string; readonly jobs: number; readonly silentSeconds: number; readonly rescueAfterSeconds: number }>
      }
      assert.deepStrictEqual([output.rescued, output.discarded, output.cancelled], [2, 1, 1])
      // What is left, and when it would be rescued: the patient node's job after 5 minutes of silence.
      assert.deepStrictEqual(output.answering.map((entry) => [entry.node, entry.jobs, entry.rescueAfterSeconds]), [
        ["eternal-node", 1, 100 * 365 * 24 * 3600],
        ["patient-node", 1, 300]
      ])
      assert.approximately(output.answering[1]!.silentSeconds, 120, 10)
      const states = yield* Effect.forEach(ids, (id) => Effect.map(jobRow(prefix, id), (row) => row.state))
      assert.deepStrictEqual(states, ["available", "discarded", "cancelled", "executing", "available", "executing"])
      const [left] = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM "${prefix}".oban_producers WHERE id = '${longDead}'`)
      assert.strictEqual(left!.n, 1)
      const rescuedEntry = (yield* jobRow(prefix, again)).errors.at(-1)!
      assert.deepStrictEqual([rescuedEntry.kind, rescuedEntry.message.startsWith("node gone-node stopped heart-beating")], ["rescued", true])

      // Nothing left to rescue: said so, and the patient node's job is still left alone.
      const again2 = yield* cli("jobs", "rescue")
      assert.strictEqual(again2.code, 0, again2.stderr)
      assert.match(again2.stdout, /^no orphaned job\nleft executing under nodes that still answer for them:\n/)
      assert.match(again2.stdout, /  patient-node: 1 job\(s\); heard from 1\d\d s ago, rescued once silent 300 s \(in 1\d\d s at the earliest\)/)
      assert.strictEqual((yield* jobRow(prefix, kept)).state, "executing")
    }), 60_000)
})
