/**
 * PostgreSQL's `infinity` and `-infinity`, which plain SQL may store in a
 * job's times (`scheduled_at = 'infinity'` parks a job): the driver reads
 * them as an invalid `Date`, on which `toISOString` throws. The dashboard's
 * pages and the CLI's tables show them as `infinite`, and a list sorted by
 * the time walks past them.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Metric, Option, Schema } from "effect"
import * as Worker from "../src/Worker.ts"
import { SqlClient } from "effect/sql/SqlClient"
import * as Dashboard from "../src/Dashboard.ts"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import { cell } from "../src/cli/output.ts"
import { byFetchOrder } from "../src/internal/sql/claims.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { Client, insertJobs } from "./support/dashboard.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("infinite_times")
const token = "test-token-0123456789abcdef"
const EarlyRuns = Worker.make("EarlyRuns", { args: Schema.Struct({}), queue: "early", perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("times at infinity", (it) => {
  it.effect("the dashboard's pages, the CLI's cells and a list sorted by scheduled_at take them", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [parked, first, plain] = yield* insertJobs(prefix, [{ queue: "far" }, { queue: "far" }, { queue: "far" }])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'scheduled', scheduled_at = 'infinity' WHERE id = ${parked!}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET scheduled_at = '-infinity' WHERE id = ${first!}`
      const job = Option.getOrThrow(yield* Oban.getJob(parked!))
      assert.isTrue(Number.isNaN(job.scheduledAt.getTime()))
      assert.strictEqual(cell(job.scheduledAt), "infinite")
      // A producer sorts a fetched batch: an invalid time comes first, consistently (NaN compared as nothing).
      const at = (id: number, time: number) => ({ ...job, id, priority: 0, scheduledAt: new Date(time) })
      const sorted = [at(3, Number.NaN), at(1, 5), at(2, Number.NaN), at(4, 1)].sort(byFetchOrder)
      assert.deepStrictEqual(sorted.map((entry) => entry.id), [2, 3, 4, 1])

      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const client = new Client(url, { authorization: `Bearer ${token}` })
      for (const path of [`/jobs/${parked}`, `/jobs/${first}`, "/jobs?queue=far", "/jobs?queue=far&sort=scheduledAt&order=asc"]) {
        const page = yield* client.get(path)
        assert.strictEqual(page.status, 200, path)
        assert.include(page.text, "infinite", path)
      }

      // One job a page, both ways: every job once, -infinity first and infinity last going up.
      for (const order of ["asc", "desc"] as const) {
        const seen: Array<number> = []
        let cursor: string | undefined
        do {
          const page = yield* Jobs.list({ filter: { queues: ["far"] }, sort: { by: "scheduledAt", order }, limit: 1, cursor })
          seen.push(...page.jobs.map((entry) => entry.id))
          cursor = page.next
        } while (cursor !== undefined && seen.length < 10)
        const expected = [first!, plain!, parked!]
        assert.deepStrictEqual(seen, order === "asc" ? expected : expected.toReversed(), order)
      }
    }).pipe(Effect.scoped), 30_000)

  it.effect("a job due at -infinity runs, and the queue-time histogram keeps a finite sum", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [early, plain] = yield* insertJobs(prefix, [{ queue: "early", worker: "EarlyRuns" }, { queue: "early", worker: "EarlyRuns" }])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET scheduled_at = '-infinity' WHERE id = ${early!}`
      yield* startNode({ prefix, queues: { early: 1 }, workers: [EarlyRuns] })
      const completed = (id: number) => Effect.map(jobRow(prefix, id), (row) => row.state === "completed")
      yield* waitFor("both completed", Effect.map(Effect.all([completed(early!), completed(plain!)]), (done) => done.every(Boolean)))
      // The plain job's wait is recorded; the other's (infinite, read as NaN) is not, which made the sum NaN for good.
      const queueTime = (yield* Metric.snapshot).find((metric) =>
        metric.id === "oban_job_queue_time_ms" && metric.attributes?.["worker"] === "EarlyRuns"
      )
      const state = queueTime!.state as { readonly count: number; readonly sum: number }
      assert.deepStrictEqual([state.count, Number.isFinite(state.sum)], [1, true])
    }).pipe(Effect.scoped), 30_000)
})
