/**
 * Backpressure from outcome writes to claims, against real PostgreSQL: when
 * the database writes outcomes slower than jobs run (here a trigger makes
 * each `completed` write take a millisecond), a node stops claiming once
 * `maxUnwrittenOutcomes` outcomes wait to be written, instead of claiming
 * the whole backlog and piling finished jobs up in memory and in
 * `executing` rows. Every job still runs once and completes.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { maxUnwrittenOutcomes } from "../src/Producer.ts"
import * as Worker from "../src/Worker.ts"
import { report, testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("backpressure")
const jobs = 4_000

/** Counts its performs by args, so a second run of a job shows. */
const Counted = Worker.make("Counted", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "fast",
  perform: (job) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.performs (n) VALUES (${job.args.n})`
    })
})

layer(testLayer(prefix), { excludeTestServices: true })("backpressure from outcome writes", (it) => {
  it.effect("a node whose outcomes are written slower than its jobs run stops claiming past the bound", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE ${sql(prefix)}.performs (n int NOT NULL)`
      yield* sql.unsafe(`
        CREATE FUNCTION "${prefix}".slow_completion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END $$`)
      yield* sql.unsafe(`
        CREATE TRIGGER slow_completion BEFORE UPDATE ON "${prefix}".oban_jobs
        FOR EACH ROW WHEN (NEW.state = 'completed') EXECUTE FUNCTION "${prefix}".slow_completion()`)
      yield* Oban.insertAll(Array.from({ length: jobs }, (_, n) => Counted.job({ n })))
      let most = 0
      const sampler = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
        const [row] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE state = 'executing'`
        most = Math.max(most, row!.n)
        yield* Effect.sleep("20 millis")
      })))
      const node = yield* startNode({ prefix, workers: [Counted], queues: { fast: 50 } })
      yield* waitFor(`${jobs} completed`, Effect.map(countByState(prefix), (c) => c["completed"] === jobs), "90 seconds")
      yield* Fiber.interrupt(sampler)
      yield* node.stop
      const [performs] = yield* sql<{ runs: number; distinct: number }>`
        SELECT count(*)::int AS runs, count(DISTINCT n)::int AS distinct FROM ${sql(prefix)}.performs`
      assert.deepStrictEqual(performs, { runs: jobs, distinct: jobs })
      report(`backpressure: most executing rows while ${jobs} jobs drained with slow outcome writes: ${most}`)
      // Executing rows: the unwritten outcomes (at most the bound, plus the batch in flight), the jobs
      // claimed ahead (at most 1,000) and the running ones. Without the bound, most of the 4,000.
      assert.strictEqual(maxUnwrittenOutcomes, 1_000)
      assert.isBelow(most, 1_000 + 500 + 1_000 + 50)
    }), 120_000)
})
