/**
 * The claim statements on their own, where a node's local bookkeeping would
 * hide a wrong statement: the order a fetch claims in and how many it takes,
 * an outcome or a give-back for a claim that is no longer the job's, and a
 * claim of a job whose attempts were used up.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { now, statementNow } from "../src/ObanClock.ts"
import { failAck } from "../src/internal/sql/ackFallbacks.ts"
import { fetchJobs, releaseJobs } from "../src/internal/sql/claims.ts"
import { fetchLimited } from "../src/internal/sql/limitedClaims.ts"
import { storeQueueLimits } from "../src/internal/sql/queues.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("claimsql")
const node = "claim-node"

const ran = Ref.makeUnsafe<ReadonlyArray<string>>([])
const Named = Worker.make("ClaimNamed", {
  args: Schema.Struct({ name: Schema.String }),
  queue: "ordered",
  perform: (job) => Ref.update(ran, (names) => [...names, job.args.name])
})

const truncate = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished`
})

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)

/** Five due jobs whose fetch order is C, E, B, A, D (priority, then scheduled_at, then id). */
const insertOrdered = (queue: string) =>
  Oban.insertAll([
    Named.job({ name: "A" }, { queue, priority: 5, scheduledAt: minutesAgo(1) }),
    Named.job({ name: "B" }, { queue, priority: 0, scheduledAt: minutesAgo(1) }),
    Named.job({ name: "C" }, { queue, priority: 0, scheduledAt: minutesAgo(2) }),
    Named.job({ name: "D" }, { queue, priority: 9, scheduledAt: minutesAgo(3) }),
    Named.job({ name: "E" }, { queue, priority: 0, scheduledAt: minutesAgo(2) })
  ])

const fetch = (queue: string, demand: number, claim: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* fetchJobs(sql, prefix, yield* now(sql), { queue, demand, startNow: demand, node, producer: "p", claim })
  })

const executing = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs WHERE queue = ${queue} AND state = 'executing'`
    return rows[0]!.n
  })

layer(testLayer(prefix, { maxConnections: 6 }), { excludeTestServices: true })("the claim statements", (it) => {
  it.effect("a fetch claims in priority, scheduled_at, id order, and never more than its demand", () =>
    Effect.gen(function*() {
      yield* truncate
      const jobs = yield* insertOrdered("ordered")
      // insertAll returns the jobs in the order given: A, B, C, D, E.
      const names = new Map(jobs.map((job, index) => [job.id, "ABCDE"[index]!]))
      const order: Array<string> = []
      for (let n = 0; n < 5; n++) {
        const fetched = yield* fetch("ordered", 1, `one-${n}`)
        assert.strictEqual(fetched.jobs.length, 1)
        order.push(names.get(fetched.jobs[0]!.id)!)
      }
      assert.deepStrictEqual(order, ["C", "E", "B", "A", "D"])

      yield* insertOrdered("counted")
      const two = yield* fetch("counted", 2, "two")
      assert.strictEqual(two.jobs.length, 2)
      assert.strictEqual(yield* executing("counted"), 2)
      const rest = yield* fetch("counted", 10, "rest")
      assert.strictEqual(rest.jobs.length, 3)
    }))

  it.effect("a queue with a global limit of 1 runs its jobs in fetch order, one at a time", () =>
    Effect.gen(function*() {
      yield* truncate
      yield* Ref.set(ran, [])
      yield* insertOrdered("ordered")
      // A local limit under the backlog: the candidates the statement looks at must be the first ones.
      yield* startNode({ node, queues: { ordered: { limit: 2, global: 1 } }, workers: [Named] })
      yield* waitFor("all five ran", Effect.map(Ref.get(ran), (names) => names.length === 5))
      assert.deepStrictEqual(yield* Ref.get(ran), ["C", "E", "B", "A", "D"])
    }))

  it.effect("a queue's limit caps the jobs running at once, while short jobs are claimed ahead", () =>
    Effect.gen(function*() {
      yield* truncate
      const running = yield* Ref.make(0)
      const most = yield* Ref.make(0)
      const done = yield* Ref.make(0)
      const Short = Worker.make("ClaimShort", {
        args: Schema.Struct({ n: Schema.Int }),
        queue: "capped",
        perform: () =>
          Effect.gen(function*() {
            const now = yield* Ref.updateAndGet(running, (n) => n + 1)
            yield* Ref.update(most, (m) => Math.max(m, now))
            yield* Effect.sleep("20 millis")
            yield* Ref.update(running, (n) => n - 1)
            yield* Ref.update(done, (n) => n + 1)
          })
      })
      yield* Oban.insertAll(Array.from({ length: 60 }, (_, n) => Short.job({ n })))
      yield* startNode({ node, queues: { capped: 3 }, workers: [Short] })
      yield* waitFor("all sixty ran", Effect.map(Ref.get(done), (n) => n === 60))
      assert.strictEqual(yield* Ref.get(most), 3)
    }))

  it.effect("an outcome or a give-back for a claim the job no longer has changes nothing", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Named.job({ name: "stale" }, { queue: "stale" })])
      const fetched = yield* fetch("stale", 1, "old-claim")
      assert.strictEqual(fetched.jobs[0]!.id, job!.id)
      // Rescued and claimed again meanwhile (by this node, restarted under its name): the row is the new claim's.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempted_by = ARRAY[${node}, 'q', 'new-claim'], attempt = 2
        WHERE id = ${job!.id}`
      const failed = yield* failAck(sql, prefix, yield* now(sql), node, {
        id: job!.id,
        claim: "old-claim",
        attempt: 1,
        delayMillis: 1_000,
        message: "late outcome",
        withError: true
      })
      assert.isFalse(failed)
      assert.strictEqual(yield* releaseJobs(sql, prefix, [{ id: job!.id, claim: "old-claim", ahead: false }]), 0)
      const row = yield* jobRow(prefix, job!.id)
      assert.deepStrictEqual([row.state, row.attempt, row.errors], ["executing", 2, []])
    }))

  it.effect("a job given back before it started gets its attempt back; one claimed ahead keeps it", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      yield* Oban.insertAll([Named.job({ name: "now" }, { queue: "back" }), Named.job({ name: "ahead" }, { queue: "back" })])
      const fetched = yield* fetchJobs(sql, prefix, yield* now(sql), {
        queue: "back",
        demand: 2,
        startNow: 1,
        node,
        producer: "p",
        claim: "give-back"
      })
      const started = fetched.jobs.find((job) => !fetched.ahead.has(job.id))!
      const ahead = fetched.jobs.find((job) => fetched.ahead.has(job.id))!
      assert.strictEqual((yield* jobRow(prefix, started.id)).attempt, 1)
      assert.strictEqual((yield* jobRow(prefix, ahead.id)).attempt, 0)
      const released = yield* releaseJobs(sql, prefix, [
        { id: started.id, claim: "give-back", ahead: false },
        { id: ahead.id, claim: "give-back", ahead: true }
      ])
      assert.strictEqual(released, 2)
      for (const id of [started.id, ahead.id]) {
        const row = yield* jobRow(prefix, id)
        assert.deepStrictEqual([row.state, row.attempt], ["available", 0])
      }
    }))

  it.effect("a job made available again after its last attempt is claimed with one more attempt allowed", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Named.job({ name: "spent" }, { queue: "spent", maxAttempts: 1 })])
      // Put back by hand (or by an older release) with every attempt used.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 1 WHERE id = ${job!.id}`
      const fetched = yield* fetch("spent", 1, "spent-claim")
      assert.strictEqual(fetched.jobs.length, 1)
      const [row] = yield* sql<{ attempt: number; max_attempts: number; state: string }>`
        SELECT attempt, max_attempts, state::text FROM ${sql(prefix)}.oban_jobs WHERE id = ${job!.id}`
      assert.deepStrictEqual(row, { attempt: 2, max_attempts: 2, state: "executing" })
    }))

  it.effect("a node's claim, limited or not, takes nothing while its producer's row is marked dead", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const producer = crypto.randomUUID()
      // As a rescue leaves the row of a producer whose process stalled past rescueAfter.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", dead_at)
                 VALUES (${producer}::uuid, ${node}, 'live', 10, now())`
      const limits = { global: 5, partition: undefined, rate: undefined }
      yield* storeQueueLimits(sql, prefix, "limited-live", limits)
      yield* Oban.insertAll([
        ...["a", "b", "c"].map((name) => Named.job({ name }, { queue: "live" })),
        ...["d", "e", "f"].map((name) => Named.job({ name }, { queue: "limited-live" }))
      ])
      const claim = (liveProducer: boolean) =>
        Effect.gen(function*() {
          const by = { node, producer, claim: crypto.randomUUID(), liveProducer }
          const plain = yield* fetchJobs(sql, prefix, yield* now(sql), { queue: "live", demand: 2, startNow: 1, ...by })
          const limited = yield* fetchLimited(sql, prefix, yield* statementNow(sql), {
            queue: "limited-live",
            demand: 2,
            finished: [],
            expected: limits,
            ...by
          })
          return [plain.jobs.length, limited.jobs.length, limited.stale]
        })
      assert.deepStrictEqual(yield* claim(true), [0, 0, false])
      assert.deepStrictEqual([yield* executing("live"), yield* executing("limited-live")], [0, 0])
      // Without the option (tests, the inline runner) the row is not read.
      assert.deepStrictEqual(yield* claim(false), [2, 2, false])
      // Registered again, the producer claims.
      yield* sql`UPDATE ${sql(prefix)}.oban_producers SET dead_at = NULL WHERE id = ${producer}::uuid`
      assert.deepStrictEqual(yield* claim(true), [1, 1, false])
    }))

  it.effect("a claim on a virtual clock whose time was read before its staged job fell due stamps the attempt at the due time", () =>
    Effect.gen(function*() {
      yield* truncate
      const sql = yield* SqlClient
      const limits = { global: 5, partition: undefined, rate: undefined }
      yield* storeQueueLimits(sql, prefix, "virtual-limited", limits)
      // Scheduled for a minute from now, then made available (as a stager woken at its time does) after
      // the claims below read their time, 8 s before it.
      const due = new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000)
      const staged = yield* Oban.insertAll(["a", "b", "c", "d"].map((name) =>
        Named.job({ name }, { queue: name < "c" ? "virtual" : "virtual-limited", scheduledAt: due })
      ))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'available' WHERE id IN ${sql.in(staged.map((job) => job.id))}`
      const claimAt = (at: Date, queue: string, virtualClock: boolean) =>
        Effect.gen(function*() {
          const by = { node, producer: "p", claim: crypto.randomUUID(), virtualClock }
          const time = sql`${at}::timestamptz`
          const fetched = queue === "virtual-limited"
            ? yield* fetchLimited(sql, prefix, time, { queue, demand: 1, finished: [], expected: limits, ...by })
            : yield* fetchJobs(sql, prefix, time, { queue, demand: 1, startNow: 1, ...by })
          assert.strictEqual(fetched.jobs.length, 1)
          return (yield* jobRow(prefix, fetched.jobs[0]!.id)).attempted_at!.getTime() - at.getTime()
        })
      const readEarly = new Date(due.getTime() - 8_000)
      // The claim as on the database clock: its time as given.
      assert.strictEqual(yield* claimAt(readEarly, "virtual", false), 0)
      assert.strictEqual(yield* claimAt(readEarly, "virtual-limited", false), 0)
      // On a virtual clock: never before the staged job fell due.
      assert.strictEqual(yield* claimAt(readEarly, "virtual", true), 8_000)
      assert.strictEqual(yield* claimAt(readEarly, "virtual-limited", true), 8_000)
      // A job inserted available keeps the claim's time, also one whose times come from another clock (the
      // server's, as an external insert stamps them) far ahead of the virtual one.
      const [inserted] = yield* Oban.insertAll([Named.job({ name: "e" }, { queue: "virtual-inserted" })])
      const virtualNow = new Date(Date.UTC(2000, 0, 1))
      assert.strictEqual(yield* claimAt(virtualNow, "virtual-inserted", true), 0)
      assert.isAbove(inserted!.scheduledAt.getTime(), virtualNow.getTime())
      assert.strictEqual((yield* executing("virtual")) + (yield* executing("virtual-limited")), staged.length)
    }))
})
