/**
 * What a job's `errors` holds when it did not come from the library, or grew
 * long: a job failing with long messages attempt after attempt grew its
 * `errors` past the 16 MiB the driver reads in one message, and no fetch of
 * its queue could read it again (a new user's walkthrough: 128 attempts of
 * 128 KiB). The column keeps the latest 20 entries, and a fetch reads no
 * more of a row written before. An entry of another shape (plain SQL wrote
 * `[null]`) broke every read of the job and every fetch that claimed it; it
 * is read as a well-formed entry that says so. A row that no fetch can read
 * all the same (written by plain SQL) is discarded, saying why.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../src/Jobs.ts"
import * as Config from "../src/Config.ts"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { ackJobs } from "../src/internal/sql/acks.ts"
import { claimJobs, fetchJobs } from "../src/internal/sql/claims.ts"
import { discardOversized } from "../src/internal/sql/oversizedRows.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startLogged, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("error_entries")

const Fails = Worker.make("EntriesFails", { args: Schema.Struct({ n: Schema.Int }), maxAttempts: 50, perform: () => Effect.void })
const Runs = Worker.make("EntriesRuns", { args: Schema.Struct({ n: Schema.Int }), queue: "poisoned", perform: () => Effect.void })
/** Args as large as the ceiling allows, of the shape whose `jsonb` text grows most (one-digit numbers). */
const Digits = Worker.make("EntriesDigits", {
  args: Schema.Struct({ d: Schema.Array(Schema.Number) }),
  queue: "largest",
  perform: (job) => job.args.d.length > 4_000_000 ? Effect.void : Effect.die("args lost")
})

/** `count` well-formed entries, numbered from 1, each with a message of `bytes` characters. */
const entries = (count: number, bytes = 10) =>
  JSON.stringify(Array.from({ length: count }, (_, i) => ({
    attempt: i + 1,
    at: "2026-12-07T10:00:00Z",
    kind: "failure",
    message: `#${i + 1} ${"x".repeat(bytes)}`
  })))

/** The states of `ids` (not the whole rows, which a driver cannot read past 16 MiB). */
const allCompleted = (ids: ReadonlyArray<number>) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ state: string }>`SELECT state::text AS state FROM ${sql(prefix)}.oban_jobs_all WHERE id = ANY(${`{${ids.join(",")}}`}::bigint[])`,
      (rows) => rows.length === ids.length && rows.every((row) => row.state === "completed")
    ))

const stateOf = (id: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(sql<{ state: string }>`SELECT state::text AS state FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`, ([row]) => row?.state))

const attemptsIn = (id: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ attempts: ReadonlyArray<number> }>`
        SELECT COALESCE((SELECT array_agg((e ->> 'attempt')::int ORDER BY n) FROM jsonb_array_elements(errors) WITH ORDINALITY AS x(e, n)), '{}') AS attempts
        FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`,
      ([row]) => row!.attempts
    ))

layer(testLayer(prefix), { excludeTestServices: true })("a job's errors entries", (it) => {
  it.effect("an attempt's failure keeps the latest 20 entries; a fetch reads at most 20 of a longer row", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const job = yield* Oban.insert(Fails.job({ n: 1 }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET errors = ${entries(20)}::jsonb, attempt = 20 WHERE id = ${job.id}`
      const [claimed] = yield* claimJobs(sql, prefix, yield* now(sql), [job.id], "entries-node")
      yield* ackJobs(sql, prefix, yield* now(sql), "entries-node", [ackOf(claimed!, "retryable", {
        delay_ms: 0,
        error: { attempt: 21, kind: "failure", message: "the 21st" }
      })])
      // The oldest went; the new one is last.
      assert.deepStrictEqual(yield* attemptsIn(job.id), Array.from({ length: 20 }, (_, i) => i + 2))

      // A row written before the bound, with 30 entries: a fetch returns its latest 20, the row keeps all.
      const old = yield* Oban.insert(Fails.job({ n: 2 }, { queue: "old" }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET errors = ${entries(30)}::jsonb, attempt = 30 WHERE id = ${old.id}`
      const fetched = yield* fetchJobs(sql, prefix, yield* now(sql), {
        queue: "old", demand: 5, startNow: 5, node: "entries-node", producer: crypto.randomUUID(), claim: crypto.randomUUID()
      })
      assert.deepStrictEqual(fetched.jobs[0]!.errors.map((entry) => entry.attempt), Array.from({ length: 20 }, (_, i) => i + 11))
      assert.lengthOf(yield* attemptsIn(old.id), 30)
    }))

  it.effect("a job whose entries would have passed 16 MiB keeps running, and so does its queue", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // 150 entries of 128 KiB (the most one entry holds), 19 MiB, as the walkthrough's job had grown: no fetch
      // could read it before. The job and the others in its queue run.
      const big = yield* Oban.insert(Runs.job({ n: 0 }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET errors = ${entries(150, 128 * 1024)}::jsonb WHERE id = ${big.id}`
      const others = yield* Oban.insertAll([Runs.job({ n: 1 }), Runs.job({ n: 2 })])
      yield* startNode({ prefix, queues: { poisoned: 5 }, workers: [Runs] })
      yield* waitFor("all three completed", allCompleted([big.id, ...others.map((job) => job.id)]), "15 seconds")
      // Its row (moved to the finished jobs' table with all 150) reads with the latest 20.
      const read = Option.getOrThrow(yield* Oban.getJob(big.id))
      assert.deepStrictEqual([read.errors.length, read.errors[0]!.attempt, read.errors[19]!.attempt], [20, 131, 150])
    }).pipe(Effect.scoped), 30_000)

  it.effect("entries of another shape are read as well-formed ones that say so: the job runs, getJob and list read it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const poisoned = yield* Oban.insert(Runs.job({ n: 10 }))
      const neighbours = yield* Oban.insertAll([Runs.job({ n: 11 }), Runs.job({ n: 12 })])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs
                 SET errors = '[null, 7, {"attempt": 1, "at": "2026-12-07T10:00:00Z", "kind": "failure", "message": "fine"}, {"kind": "weird"}]'
                 WHERE id = ${poisoned.id}`
      const job = Option.getOrThrow(yield* Oban.getJob(poisoned.id))
      assert.deepStrictEqual(job.errors.map((entry) => [entry.attempt, entry.kind, entry.message]), [
        [0, "failure", "malformed errors entry: null"],
        [0, "failure", "malformed errors entry: 7"],
        [1, "failure", "fine"],
        [0, "failure", `malformed errors entry: {"kind":"weird"}`]
      ])
      assert.strictEqual(job.errors[2]!.at, "2026-12-07T10:00:00.000Z")
      const listed = yield* Jobs.list({ filter: { workers: ["EntriesRuns"] } })
      assert.include(listed.jobs.map((entry) => entry.id), poisoned.id)
      // Claimed with its neighbours, it runs, and they do.
      yield* startNode({ prefix, queues: { poisoned: 5 }, workers: [Runs] })
      yield* waitFor("all three completed", allCompleted([poisoned.id, ...neighbours.map((entry) => entry.id)]), "15 seconds")
    }).pipe(Effect.scoped), 30_000)

  it.effect("arrays plain SQL made odd (first index past 1, two dimensions, NULLs) read as plain lists: the jobs run, getJob and list read them", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const late = yield* Oban.insert(Runs.job({ n: 30 }))
      const square = yield* Oban.insert(Runs.job({ n: 31 }))
      const holes = yield* Oban.insert(Runs.job({ n: 32 }))
      const neighbour = yield* Oban.insert(Runs.job({ n: 33 }))
      // Assigning past the end of an empty array makes one whose first index is 3 ('[3:3]={late}').
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET tags[3] = 'late' WHERE id = ${late.id}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET tags = '{{a,b},{c,d}}' WHERE id = ${square.id}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET tags = '{x,NULL,y}' WHERE id = ${holes.id}`
      const [stored] = yield* sql<{ tags: string }>`SELECT tags::text AS tags FROM ${sql(prefix)}.oban_jobs WHERE id = ${late.id}`
      assert.strictEqual(stored!.tags, "[3:3]={late}")
      // The driver refused to decode the first two: getJob, the lists and every fetch of their queue failed on them.
      const tagsOf = (id: number) => Effect.map(Oban.getJob(id), (job) => Option.getOrThrow(job).tags)
      assert.deepStrictEqual(yield* Effect.all([tagsOf(late.id), tagsOf(square.id), tagsOf(holes.id)]), [
        ["late"],
        ["a", "b", "c", "d"],
        ["x", "y"]
      ])
      const listed = yield* Jobs.list({ filter: { workers: ["EntriesRuns"], tags: ["late"] } })
      assert.deepStrictEqual(listed.jobs.map((job) => job.id), [late.id])
      yield* startNode({ prefix, queues: { poisoned: 5 }, workers: [Runs] })
      yield* waitFor("all four completed", allCompleted([late.id, square.id, holes.id, neighbour.id]), "15 seconds")
      // attempted_by, which every read returns too.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs_finished SET attempted_by = '[2:3]={a,b}' WHERE id = ${late.id}`
      const done = Option.getOrThrow(yield* Oban.getJob(late.id))
      assert.deepStrictEqual([done.state, done.tags, done.attemptedBy], ["completed", ["late"], ["a", "b"]])
    }).pipe(Effect.scoped), 30_000)

  it.effect("a row over 16 MiB written by plain SQL is discarded, saying why; its queue runs on and the node becomes ready", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const huge = yield* Oban.insert(Runs.job({ n: 20 }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = jsonb_build_object('n', 20, 'pad', repeat('x', 17 * 1024 * 1024))
                 WHERE id = ${huge.id}`
      // 4 million one-letter tags: 8 MiB as text, but 19 MiB as the driver reads them (a binary array, 5 bytes each).
      const tagged = yield* Oban.insert(Runs.job({ n: 23 }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET tags = array_fill('x'::text, ARRAY[4000000]) WHERE id = ${tagged.id}`
      const neighbours = yield* Oban.insertAll([Runs.job({ n: 21 }), Runs.job({ n: 22 })])
      const { lines, oban } = yield* startLogged({ prefix, queues: { poisoned: 5 }, workers: [Runs] })
      // Before, every fetch of the queue failed on it for good, and `ready` never returned.
      yield* oban.ready.pipe(Effect.timeout("10 seconds"))
      yield* waitFor("the neighbours completed", allCompleted(neighbours.map((job) => job.id)), "10 seconds")
      const [row] = yield* sql<{ state: string; attempt: number; kinds: ReadonlyArray<string>; message: string }>`
        SELECT state::text AS state, attempt,
               (SELECT array_agg(e ->> 'kind') FROM jsonb_array_elements(errors) AS e) AS kinds,
               errors -> -1 ->> 'message' AS message
        FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${huge.id}`
      assert.deepStrictEqual([row!.state, row!.attempt, row!.kinds], ["discarded", 0, ["discarded"]])
      assert.match(row!.message, /^not run: its row is 17\.\d MiB as a fetch reads it, more than the driver reads in one message \(16\.0 MiB, the client's maxMessageSize\)/)
      assert.isTrue(lines.some((line) => line.text.includes(`discarded job ${huge.id}`)), lines.map((line) => line.text).join("\n"))
      yield* waitFor("the tagged row discarded", Effect.map(stateOf(tagged.id), (state) => state === "discarded"), "10 seconds")
    }).pipe(Effect.scoped), 60_000)

  it.effect("in a partitioned queue, a row too large behind more than a window of another partition's jobs is found too", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // 1,500 jobs of account a, held back by one of theirs executing (global 1 per account), ahead of account b's
      // oversized row in every order: the partitioned claim takes b's row (and c's job), a look at the queue's first
      // jobs in fetch order finds only a's.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args)
                 SELECT 'available', 'parted', 'EntriesRuns', jsonb_build_object('n', n, 'account', 'a') FROM generate_series(1, 1500) AS n`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args, attempt, attempted_at, attempted_by)
                 VALUES ('executing', 'parted', 'EntriesRuns', '{"n": 0, "account": "a"}', 1, now(), ARRAY['elsewhere', ${crypto.randomUUID()}, 'claim'])`
      const huge = yield* Oban.insert(Runs.job({ n: 30 }, { queue: "parted" }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = jsonb_build_object('n', 30, 'account', 'b', 'pad', repeat('x', 17 * 1024 * 1024))
                 WHERE id = ${huge.id}`
      const other = yield* Oban.insert(Runs.job({ n: 31 }, { queue: "parted" }))
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = '{"n": 31, "account": "c"}' WHERE id = ${other.id}`
      yield* startNode({
        prefix,
        queues: { parted: { limit: 5, global: 1, partition: { by: "args", key: "account" } } },
        workers: [Runs]
      })
      yield* waitFor("account c's job completed", allCompleted([other.id]), "20 seconds")
      assert.strictEqual(yield* stateOf(huge.id), "discarded")
    }).pipe(Effect.scoped), 60_000)

  it.effect("a look in id order does not go past an oversized row it cannot discard yet (executing under a failed fetch's claim)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const look = (after: number) =>
        Effect.flatMap(now(sql), (time) =>
          discardOversized(sql, prefix, time, { queue: "lookahead", window: 1, onward: 5, after, maxMessageBytes: 16 * 1024 * 1024 }))
      const small = yield* Oban.insertAll(Array.from({ length: 8 }, (_, n) => Runs.job({ n: 40 + n }, { queue: "lookahead" })))
      const ids = small.map((job) => job.id)
      // The third is oversized and executing, as when the failed fetch's claim committed and awaits its release.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET args = jsonb_build_object('pad', repeat('x', 17 * 1024 * 1024)),
                 state = 'executing', attempt = 1, attempted_at = now() WHERE id = ${ids[2]!}`
      const held = yield* look(0)
      assert.deepStrictEqual([held.discarded, held.heldBack, held.scannedTo], [[], true, ids[2]! - 1])
      // Released: the next look from there discards it, and goes on to the queue's end.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'available', attempt = 0 WHERE id = ${ids[2]!}`
      const found = yield* look(held.scannedTo)
      assert.deepStrictEqual([found.discarded.map((row) => row.id), found.heldBack, found.scannedTo], [[ids[2]!], false, ids[6]!])
      const rest = yield* look(found.scannedTo)
      assert.deepStrictEqual([rest.discarded, rest.scannedTo], [[], 0])
      assert.strictEqual(yield* stateOf(ids[2]!), "discarded")
    }))

  it.effect("the largest row the limits allow is fetched: args at the 8 MiB ceiling and 20 entries of 128 KiB", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // 8 MiB of compact JSON, about 12 MiB as PostgreSQL writes it back.
      const digits = Array.from({ length: Math.floor((8 * 1024 * 1024 - 16) / 2) }, () => 7)
      const job = yield* Oban.insert(Digits.job({ d: digits })).pipe(
        Effect.provide(Config.layer({ prefix, maxArgsBytes: 8 * 1024 * 1024 }))
      )
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET errors = ${entries(20, 128 * 1024)}::jsonb WHERE id = ${job.id}`
      yield* startNode({ prefix, queues: { largest: 1 }, workers: [Digits] })
      yield* waitFor("completed", allCompleted([job.id]), "20 seconds")
    }).pipe(Effect.scoped), 60_000)
})
