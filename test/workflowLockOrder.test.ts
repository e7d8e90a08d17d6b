/**
 * A workflow insert that keeps steps (`existingSteps: "keep"`) and depends on
 * steps inserted earlier holds both (`FOR SHARE`) until it commits. It locked
 * them in two statements, the kept ones and then the dependencies, while a
 * node's outcome write locks the rows it finishes in id order: the two could
 * form a lock cycle, which PostgreSQL breaks by failing one of them. The
 * insert now locks them all in one statement, in id order.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("workflow_lock_order")

const Step = Worker.make("LockOrderStep", { args: Schema.Struct({}), perform: () => Effect.void })

layer(testLayer(prefix), { excludeTestServices: true })("a workflow insert's locks", (it) => {
  it.effect("a kept step and an earlier dependency are locked in id order: a writer locking them in that order waits, no deadlock", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // "dep" first (lower id), then "kept".
      const flow = yield* Oban.insertWorkflow(Workflow.make("lock-order").add("dep", Step.job({})).add("kept", Step.job({})))
      const dep = flow.jobs.dep.id
      const kept = flow.jobs.kept.id
      assert.isBelow(dep, kept)

      // As a node's outcome write finishing both: the lower id first, then (once the insert waits) the higher.
      const holding = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      const writer = yield* Effect.forkChild(Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${dep} FOR UPDATE`
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(go)
        yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${kept} FOR UPDATE`
      }))))
      yield* Deferred.await(holding)
      // Keeps "kept", adds "next" after "dep".
      const inserting = yield* Effect.forkChild(Effect.exit(Oban.insertWorkflow(
        Workflow.make<string>("lock-order", { existingSteps: "keep" })
          .add("kept", Step.job({}))
          .add("next", Step.job({}), { deps: ["dep"] })
      )))
      // The insert waits for "dep" (a statement of this schema waits on a lock). Before, it held "kept" already, and
      // the writer's second lock closed a cycle.
      yield* waitFor("the insert to wait for a lock", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                           WHERE wait_event_type = 'Lock' AND query LIKE ${`%"${prefix}"%FOR SHARE%`}`,
        ([row]) => row!.n > 0
      ))
      yield* Deferred.succeed(go, undefined)
      const written = yield* Fiber.join(writer)
      const inserted = yield* Fiber.join(inserting)
      assert.strictEqual(written._tag, "Success", JSON.stringify(written))
      assert.strictEqual(inserted._tag, "Success", JSON.stringify(inserted))
      if (inserted._tag === "Success") {
        const jobs = inserted.value.jobs as Record<string, Oban.Inserted>
        assert.deepStrictEqual([jobs["kept"]!.id, jobs["kept"]!.conflict], [kept, true])
        assert.deepStrictEqual([jobs["next"]!.state, jobs["next"]!.conflict], ["suspended", false])
      }
    }), 30_000)
})
