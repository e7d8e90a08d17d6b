/**
 * Edges of the operators' API (found in review): filters that must not widen to
 * every job, cursors that must be refused as bad input, and bulk actions run
 * inside a caller's transaction.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../src/Jobs.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("reviewops")
const Mail = Worker.make("Mail", { args: Schema.Struct({ to: Schema.String }), perform: () => Effect.void })

const reset = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
  return yield* Oban.insertAll([
    Mail.job({ to: "a" }, { tags: ["vip"] }),
    Mail.job({ to: "b" }, { tags: ["eu"] }),
    Mail.job({ to: "c" })
  ])
})

const count = Effect.gen(function*() {
  const sql = yield* SqlClient
  return (yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`)[0]!.n
})

const failureTag = <A, E>(effect: Effect.Effect<A, E, SqlClient>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return "success"
    const reason = exit.cause.reasons[0]
    return reason?._tag === "Fail" ? (reason.error as { readonly _tag: string })._tag : `defect: ${String(reason)}`
  })

layer(testLayer(prefix), { excludeTestServices: true })("Jobs review", (it) => {
  it.effect("tags: [] with tagsMatch 'any' matches no job (any of no tags), so a bulk delete by it deletes nothing", () =>
    Effect.gen(function*() {
      yield* reset
      // queues: [], states: [], workers: [] and ids: [] all match nothing; "any of no tags" must too.
      assert.strictEqual((yield* Jobs.remove({ queues: [] })).changed, 0)
      const page = yield* Jobs.list({ filter: { tags: [], tagsMatch: "any" } })
      assert.deepStrictEqual(page.jobs.map((job) => job.id), [], "no job carries any of zero tags")
      const removed = yield* Jobs.remove({ tags: [], tagsMatch: "any" })
      assert.strictEqual(removed.changed, 0)
      assert.strictEqual(yield* count, 3)
    }))

  it.effect("a bulk action whose filter leaves every job in is refused unless asked for every job", () =>
    Effect.gen(function*() {
      yield* reset
      // A filter built from values that turned out undefined (`{ queues: maybeQueues }`) is `{}` in effect.
      const queues: ReadonlyArray<string> | undefined = undefined
      const everything: ReadonlyArray<Jobs.Filter> = [
        {},
        { queues },
        { args: {} },
        { meta: {}, tags: [] },
        { inserted: {}, tagsMatch: "all" }
      ]
      for (const filter of everything) {
        for (const action of [Jobs.remove(filter), Jobs.cancel(filter), Jobs.retry(filter), Jobs.reschedule(filter, new Date())]) {
          const refused = yield* Effect.flip(action)
          assert.deepStrictEqual([refused._tag, (refused as { field?: string }).field], ["InvalidFilterError", "filter"])
          assert.include(refused.message, "pass { all: true }")
        }
      }
      assert.strictEqual(yield* count, 3)
      // Filters that match no job narrow: they are run (and change nothing).
      assert.strictEqual((yield* Jobs.remove({ ids: [] })).changed, 0)
      assert.strictEqual((yield* Jobs.remove({ tags: [], tagsMatch: "any" })).changed, 0)
      // A filter with a condition needs nothing more; every job, when asked for.
      assert.strictEqual((yield* Jobs.remove({ tags: ["vip"] })).changed, 1)
      assert.strictEqual((yield* Jobs.remove({}, { all: true })).changed, 2)
      assert.strictEqual(yield* count, 0)
    }))

  it.effect("args or meta holding values JSON cannot carry are refused, not dropped into a filter that matches every job", () =>
    Effect.gen(function*() {
      yield* reset
      // A caller's `args: { to: user.email }` with an undefined email: JSON.stringify drops the key,
      // `args @> '{}'` holds for every job, and the bulk action hits every job of every recipient.
      // (Cast: after the fix the types refuse it too, but input from untyped code or a decoded body reaches it.)
      const tenant: string | undefined = undefined
      const loose = (value: Record<string, unknown>) => value as Jobs.Filter["args"]
      assert.strictEqual(yield* failureTag(Jobs.remove({ args: loose({ to: tenant }) })), "InvalidFilterError")
      assert.strictEqual(yield* failureTag(Jobs.cancel({ meta: loose({ tenant }) })), "InvalidFilterError")
      assert.strictEqual(yield* count, 3)
      // A bigint is not JSON either: a typed refusal, not a defect thrown by JSON.stringify.
      assert.strictEqual(yield* failureTag(Jobs.list({ filter: { args: loose({ n: 1n }) } })), "InvalidFilterError")
    }))

  it.effect("a cursor whose position is out of range is bad input (InvalidFilterError), not a database error", () =>
    Effect.gen(function*() {
      yield* reset
      const sort = { by: "scheduledAt", order: "asc" } as const
      for (const micros of ["9999999999999999999", "9223372036854775807", "-9223372036854775808"]) {
        const cursor = Buffer.from(JSON.stringify({ c: "scheduled_at", d: 0, m: micros, i: 1 })).toString("base64url")
        assert.strictEqual(yield* failureTag(Jobs.list({ sort, cursor })), "InvalidFilterError", micros)
      }
      // The earliest and latest positions the query can turn back into a timestamp still work.
      for (const micros of ["-210866803200000000", "9223372036854774784"]) {
        const cursor = Buffer.from(JSON.stringify({ c: "scheduled_at", d: 0, m: micros, i: 1 })).toString("base64url")
        assert.strictEqual(yield* failureTag(Jobs.list({ sort, cursor })), "success", micros)
      }
    }))

  it.effect("a bulk retry with a unique conflict inside the caller's transaction skips the conflicting job and retries the rest", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const jobs = yield* reset
      const ids = jobs.map((job) => job.id)
      // Job 0 holds key K while available; job 1 shares K and is discarded; job 2 is discarded with no key.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'discarded', discarded_at = now() WHERE id IN ${sql.in(ids.slice(1))}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET unique_states = 1, unique_key = 'K' WHERE id IN ${sql.in(ids.slice(0, 2))}`
      const result = yield* sql.withTransaction(Jobs.retry({ states: ["discarded"] }))
      assert.strictEqual(result.changed, 1)
      assert.deepStrictEqual(result.skipped, [{ id: ids[1]!, reason: `unique key held by job ${ids[0]}` }])
      const states = yield* sql<{ readonly state: string }>`SELECT state::text FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
      assert.deepStrictEqual(states.map((row) => row.state), ["available", "discarded", "available"])
    }))
})

const hangPrefix = uniquePrefix("reviewhang")

layer(testLayer(hangPrefix), { excludeTestServices: true })("bulk cancel racing with a node's claims", (it) => {
  it.effect("cancels given from outside while the node keeps claiming leave no cancelled job running on the node", () =>
    Effect.gen(function*() {
      const { startNode, waitFor } = yield* Effect.promise(() => import("./support/node.ts"))
      const Cluster = yield* Effect.promise(() => import("../src/Cluster.ts"))
      const running = new Set<number>()
      const Hang = Worker.make("Hang", {
        args: Schema.Struct({ n: Schema.Int }),
        queue: "hang",
        perform: (job) =>
          Effect.acquireUseRelease(
            Effect.sync(() => running.add(job.id)),
            () => Effect.never,
            () => Effect.sync(() => running.delete(job.id))
          )
      })
      const { oban } = yield* startNode({ node: "hang-node", queues: { hang: 8 }, workers: [Hang], shutdownGracePeriod: "100 millis" })
      yield* oban.ready
      // Jobs keep arriving; each round cancels whatever executes, often while the node is taking new jobs.
      let rounds = 0
      while (rounds < 150) {
        rounds++
        yield* Oban.insertAll(Array.from({ length: 4 }, (_, n) => Hang.job({ n })))
        yield* Effect.sleep(`${rounds % 7} millis`)
        yield* Jobs.cancel({ queues: ["hang"], states: ["executing"] })
      }
      yield* waitFor("every job claimed and cancelled", Effect.gen(function*() {
        yield* Jobs.cancel({ queues: ["hang"] })
        const states = (yield* Jobs.counts({ exact: true })).queues.find((q) => q.queue === "hang")?.states
        return states !== undefined && states.available + states.executing === 0
      }))
      yield* waitFor("no job runs on the node", Effect.sync(() => running.size === 0), "5 seconds").pipe(
        Effect.catchDefect(() => Effect.void)
      )
      const view = yield* Cluster.view
      const stuck = [...running]
      assert.deepStrictEqual(stuck, [], `cancelled jobs still running on the node after ${rounds} rounds: ${stuck.join(", ")} (producer running: ${JSON.stringify(view.nodes.flatMap((n) => n.producers.map((p) => p.running)))})`)
    }), 60_000)

  it.effect("a bulk cancel of the executing jobs cancels those, not the backlog the node claims as their slots free up", () =>
    Effect.gen(function*() {
      const { startNode, waitFor } = yield* Effect.promise(() => import("./support/node.ts"))
      const Stuck = Worker.make("Stuck", { args: Schema.Struct({ n: Schema.Int }), queue: "stuck", perform: () => Effect.never })
      const { oban } = yield* startNode({ node: "stuck-node", queues: { stuck: 4 }, workers: [Stuck], shutdownGracePeriod: "100 millis" })
      yield* oban.ready
      yield* Oban.insertAll(Array.from({ length: 200 }, (_, n) => Stuck.job({ n })))
      const stateCounts = Effect.map(Jobs.counts({ exact: true }), (counts) => counts.queues.find((q) => q.queue === "stuck")!.states)
      yield* waitFor("4 jobs executing", Effect.map(stateCounts, (states) => states.executing === 4))
      // "Kill what is stuck now": the 4 executing jobs. Each batch frees a slot, the node claims a
      // job of the backlog, and a later batch (higher id) finds it executing and cancels it too.
      // To make the timing certain, another session holds the last executing job for a moment
      // (as an ack or a user's transaction can), so the node claims while the action waits.
      const sql = yield* SqlClient
      const executing = yield* sql<{ readonly id: string }>`
        SELECT id::text FROM ${sql(hangPrefix)}.oban_jobs_all WHERE state = 'executing' ORDER BY id`
      const last = Number(executing.at(-1)!.id)
      const locked = yield* Deferred.make<void>()
      yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(hangPrefix)}.oban_jobs WHERE id = ${last} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Effect.sleep("700 millis")
      })))
      yield* Deferred.await(locked)
      const result = yield* Jobs.cancel({ queues: ["stuck"], states: ["executing"] }, { batchSize: 1 })
      const after = yield* stateCounts
      assert.strictEqual(result.changed, 4, `cancelled ${result.changed} jobs; ${after.available} of 196 waiting jobs left`)
      // Their cancels are only requested: each row says cancelled once the node has stopped its job.
      assert.strictEqual(result.requested, 4)
      yield* waitFor("the 4 rows cancelled", Effect.map(stateCounts, (states) => states.cancelled === 4), "10 seconds")
    }), 60_000)
})
