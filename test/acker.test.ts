/**
 * The acker on its own: outcomes are written in batches; a row the database
 * refuses neither blocks the others nor leaves its job `executing` (it ends
 * as a minimal failure), also when shutdown begins while it is retried; an
 * ack re-sent after its job ran again changes nothing and is logged.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, Option, Redacted, References, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import * as Acker from "../src/internal/acker.ts"
import { claimJobs, fetchJobs, releaseClaims } from "../src/internal/sql/claims.ts"
import { ackJobs, type AckRow } from "../src/internal/sql/acks.ts"
import type { Job } from "../src/Job.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { answeredByLiveProducer, holdRow, jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("acker")
const node = "acker-node"
const Noop = Worker.make("Noop", { args: Schema.Struct({}), queue: "acker", perform: () => Effect.void })

/** Claims the jobs as a node would, so each gets a claim of its own. */
const claim = (jobs: ReadonlyArray<Job>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* claimJobs(sql, prefix, yield* now(sql), jobs.map((job) => job.id), node)
  })

const failure = (job: Job, message: string): AckRow =>
  ackOf(job, "retryable", { delay_ms: 60_000, error: { attempt: job.attempt, kind: "failure", message } })

/** An acker whose log lines are kept in `lines`. */
const makeAcker = (lines: Array<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    // Each line starts with its level ("Warn: ...").
    const capture = Logger.make(({ logLevel, message }) => {
      lines.push(`${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    })
    return yield* Acker.make({ sql, prefix, node }).pipe(
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      // The suite logs errors only; this acker's lines are captured, whatever their level.
      Effect.provideService(References.MinimumLogLevel, "All")
    )
  })

/** The line logged about job `id`'s ack that matched no row (fails, listing every line, when there is none). */
const staleLine = (lines: ReadonlyArray<string>, id: number): string => {
  const line = lines.find((text) => text.includes(`ack of job ${id} `))
  assert.isDefined(line, lines.join("\n"))
  return line!
}

const settled = (acker: Acker.Acker) => waitFor("every ack written", Effect.map(acker.pending, (n) => n === 0), "10 seconds")

/** A client of its own with one connection, named `applicationName` in pg_stat_activity, closed with the scope. */
const ownConnection = (applicationName?: string) =>
  Effect.map(
    Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 1, applicationName })),
    (context) => Context.get(context, SqlClient)
  )

/** An acker on a connection of its own whose session has `setting` (`name = value`), as a server's default would. */
const ackerWithSession = (setting: string, applicationName: string, lines: Array<string>) =>
  Effect.gen(function*() {
    const session = yield* ownConnection(applicationName)
    yield* session.unsafe(`SET ${setting}`)
    return yield* makeAcker(lines).pipe(Effect.provideService(SqlClient, session))
  })

/** Whether a job is completed with nothing recorded against it, and the log said nothing of a refusal. */
const writtenAsItWas = (job: Job, lines: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const written = yield* jobRow(prefix, job.id)
    assert.deepStrictEqual([written.state, written.attempt, written.errors], ["completed", 1, []])
    assert.isFalse(lines.some((line) => line.includes("refused")), lines.join("\n"))
  })

layer(testLayer(prefix), { excludeTestServices: true })("acker", (it) => {
  it.effect("a bad row does not hold back its batch, and ends as a minimal failure", () =>
    Effect.gen(function*() {
      const jobs = yield* claim(yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})]))
      const acker = yield* makeAcker([])
      // Offered together, so they go out in one statement; the middle one names no state PostgreSQL knows.
      yield* Effect.forEach(
        [ackOf(jobs[0]!, "completed"), ackOf(jobs[1]!, "bogus" as "completed"), ackOf(jobs[2]!, "completed")],
        acker.ack
      )
      yield* settled(acker)
      assert.strictEqual((yield* jobRow(prefix, jobs[0]!.id)).state, "completed")
      assert.strictEqual((yield* jobRow(prefix, jobs[2]!.id)).state, "completed")
      const bad = yield* jobRow(prefix, jobs[1]!.id)
      assert.strictEqual(bad.state, "retryable")
      assert.strictEqual(bad.errors.length, 1)
      assert.strictEqual(bad.errors[0]!.kind, "defect")
      assert.include(bad.errors[0]!.message, "could not be written")
      assert.include(bad.errors[0]!.message, "bogus")
    }).pipe(Effect.scoped))

  it.effect("a job another transaction holds locked holds back neither its batch nor later acks, and is written as it is once free", () =>
    Effect.gen(function*() {
      const jobs = yield* claim(yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})]))
      const locked = jobs[1]!
      // An application transaction that touched the job (a unique insert matching it, say) and stays open.
      const { release } = yield* holdRow(prefix, locked!.id)
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      yield* Effect.forEach([ackOf(jobs[0]!, "completed"), ackOf(locked, "completed"), ackOf(jobs[2]!, "completed")], acker.ack)
      const state = (job: Job) => Effect.map(jobRow(prefix, job.id), (row) => row.state)
      // Written after the 1 s lock timeout splits the batch; under 12 s, so not after the 15 s ack deadline either.
      yield* waitFor("the free jobs' outcomes", Effect.map(Effect.all([state(jobs[0]!), state(jobs[2]!)]), (states) =>
        states.every((s) => s === "completed")), "12 seconds")
      // A later outcome is not queued behind the locked one either.
      const [later] = yield* claim(yield* Oban.insertAll([Noop.job({})]))
      yield* acker.ack(ackOf(later!, "completed"))
      yield* waitFor("a later outcome", Effect.map(state(later!), (s) => s === "completed"), "12 seconds")
      assert.strictEqual(yield* state(locked), "executing")
      yield* release
      yield* settled(acker)
      const written = yield* jobRow(prefix, locked.id)
      assert.deepStrictEqual([written.state, written.errors.length], ["completed", 0])
      // The log says what held it up, in words (it was a stack dump of the driver's error).
      assert.isTrue(lines.some((line) => line.includes("job(s) waited for a row lock another transaction holds")), lines.join("\n"))
    }).pipe(Effect.scoped), 45_000)

  it.effect("a row refused while its job was locked is still written during shutdown, before the flush gives up", () =>
    Effect.gen(function*() {
      const [locked] = yield* claim(yield* Oban.insertAll([Noop.job({})]))
      const { release } = yield* holdRow(prefix, locked!.id)
      // As the executor has it: an acker, then a finalizer that flushes it at shutdown.
      const lines: Array<string> = []
      const scope = yield* Scope.make()
      const acker = yield* makeAcker(lines).pipe(Scope.provide(scope))
      const flushed = yield* Deferred.make<boolean>()
      yield* Scope.addFinalizer(
        scope,
        Effect.flatMap(Effect.timeoutOption(acker.flush, "10 seconds"), (done) => Deferred.succeed(flushed, done._tag === "Some"))
      )
      yield* acker.ack(ackOf(locked!, "completed"))
      // Refused twice (the batch, then the row alone), each after the 1 s lock timeout: retried in the background.
      yield* waitFor("the row retried in the background", Effect.sync(() => lines.some((line) => line.includes("one by one"))))
      yield* Effect.sleep("1500 millis")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.sleep("1 second")
      yield* release
      yield* Fiber.join(closing)
      assert.isTrue(yield* Deferred.await(flushed), "the flush ended with every outcome written")
      assert.strictEqual((yield* jobRow(prefix, locked!.id)).state, "completed")
    }).pipe(Effect.scoped), 45_000)

  it.effect("an ack whose session the server ends (a restart, pg_terminate_backend) is sent again as it is, however often", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [locked] = yield* claim(yield* Oban.insertAll([Noop.job({})]))
      // Held locked, so that each write of the outcome waits where the test can end its session.
      const { release } = yield* holdRow(prefix, locked!.id)
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      yield* acker.ack(ackOf(locked!, "completed"))
      // Each write's session ended as a restart ends it (SQLSTATE 57P01), more often than a refused row
      // is tried before it is replaced by a failure.
      let ended = 0
      while (ended <= Acker.refusalsBeforeFallback) {
        const [terminated] = yield* sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`} AND pid <> pg_backend_pid()`
        ended += terminated!.n
        yield* Effect.sleep("10 millis")
      }
      yield* release
      yield* settled(acker)
      // Before, each ended session counted as a refusal of the row: the job became a retryable failure
      // ("could not be written") and ran again.
      yield* writtenAsItWas(locked!, lines)
    }).pipe(Effect.scoped), 45_000)

  it.effect("an ack on a server that takes no writes (a standby after a failover) waits for one that does", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [job] = yield* claim(yield* Oban.insertAll([Noop.job({})]))
      // The acker's one connection is read-only, as a session on a standby is; ended below, it is replaced
      // by a writable one, as a pool reconnects to the new primary.
      const applicationName = `${prefix}_standby`
      const lines: Array<string> = []
      const acker = yield* ackerWithSession("default_transaction_read_only = on", applicationName, lines)
      yield* acker.ack(ackOf(job!, "completed"))
      // Logged at failures 1 to 4, then 8 (see failureStreak.ts): 5 lines are 8 refusals, past refusalsBeforeFallback.
      yield* waitFor("writes refused", Effect.sync(() => lines.length >= 5))
      assert.isAbove(8, Acker.refusalsBeforeFallback + 2)
      assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "executing")
      yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${applicationName}`
      yield* settled(acker)
      // Before, each refusal counted: the failure written instead was refused too, and the acker gave the
      // job up, left executing for a rescue to run again.
      yield* writtenAsItWas(job!, lines)
      // And it says so once the writes get through (it never did: an outage ended with no line about outcomes).
      assert.isTrue(lines.some((line) => /^Info: outcome writes get through again, after \d+ failed$/.test(line)), lines.join("\n"))
    }).pipe(Effect.scoped), 45_000)

  it.effect("an ack that fails to serialize (a database at repeatable read or serializable) is written as it is later", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [job] = yield* claim(yield* Oban.insertAll([Noop.job({})]))
      // The acker's one connection at repeatable read, as every session is where that is the database's default.
      const applicationName = `${prefix}_repeatable`
      const lines: Array<string> = []
      const acker = yield* ackerWithSession("default_transaction_isolation = 'repeatable read'", applicationName, lines)
      // Watched from a connection of its own: inside the transaction below, pg_stat_activity is a snapshot.
      const watcher = yield* ownConnection()
      const ackWaits = Effect.map(
        watcher<{ waits: boolean }>`
          SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = ${applicationName} AND wait_event_type = 'Lock')
            OR (SELECT state::text FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job!.id}) <> 'executing' AS waits`,
        (rows) => rows[0]!.waits
      )
      // Another transaction updates the job while each write of the outcome waits for it, so each write
      // fails to serialize (SQLSTATE 40001), more often than a refused row is tried before it is replaced.
      for (let round = 0; round <= Acker.refusalsBeforeFallback; round++) {
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET meta = meta WHERE id = ${job!.id}`
          if (round === 0) yield* acker.ack(ackOf(job!, "completed"))
          yield* waitFor("the ack waits for the row", ackWaits)
        }))
      }
      yield* settled(acker)
      // Before, each failure counted as a refusal: the job became a retryable failure and ran again.
      yield* writtenAsItWas(job!, lines)
    }).pipe(Effect.scoped), 45_000)

  it.effect("a batch too large for a server limit on its own (temp_file_limit, SQLSTATE 53400) is split, not sent again whole", () =>
    Effect.gen(function*() {
      const jobs = yield* claim(yield* Oban.insertAll(Array.from({ length: 8 }, () => Noop.job({}))))
      const acker = yield* ackerWithSession("temp_file_limit = '3MB'", `${prefix}_limited`, [])
      // Eight results of 900 kB: together past the limit, each alone within it.
      const result = "r".repeat(900 * 1024)
      yield* Effect.forEach(jobs, (job) => acker.ack(ackOf(job, "completed", { result })))
      // Treated as a server out of resources, the batch was sent again whole, forever, and every later
      // outcome waited behind it.
      yield* settled(acker)
      const states = yield* Effect.forEach(jobs, (job) => Effect.map(jobRow(prefix, job.id), (row) => row.state))
      assert.deepStrictEqual(states, jobs.map(() => "completed"))
    }).pipe(Effect.scoped), 45_000)

  it.effect("a row a constraint refuses ends as a minimal failure; refused again, as a bare one", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Real refusals from the server: one message it will not store, and jobs that may hold no errors at all.
      yield* sql.unsafe(`ALTER TABLE "${prefix}".oban_jobs
        ADD CONSTRAINT no_poison CHECK (NOT errors @> '[{"message": "poison"}]'),
        ADD CONSTRAINT no_errors CHECK (NOT meta @> '{"noErrors": true}' OR errors = '[]'::jsonb)`)
      const [poisoned, spotless] = yield* claim(
        yield* Oban.insertAll([Noop.job({}), Noop.job({}, { meta: { noErrors: true }, maxAttempts: 1 })])
      )
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      yield* acker.ack(failure(poisoned!, "poison"))
      yield* acker.ack(failure(spotless!, "fine words"))
      yield* settled(acker)

      const minimal = yield* jobRow(prefix, poisoned!.id)
      assert.strictEqual(minimal.state, "retryable")
      assert.strictEqual(minimal.attempt, 1)
      assert.strictEqual(minimal.errors.length, 1)
      assert.strictEqual(minimal.errors[0]!.kind, "defect")
      assert.include(minimal.errors[0]!.message, "no_poison")
      assert.isAbove(minimal.scheduled_at.getTime(), Date.now() + 50_000)

      // Out of attempts: discarded, with no entry, as the constraint demands.
      const bare = yield* jobRow(prefix, spotless!.id)
      assert.strictEqual(bare.state, "discarded")
      assert.deepStrictEqual(bare.errors, [])
      assert.isTrue(lines.some((line) => line.includes(`ack of job ${poisoned!.id} refused`)))
    }).pipe(Effect.scoped))

  it.effect("the outcome of a job cancelled while it ran matches no row and is logged at debug level, whatever it says", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      const sql = yield* SqlClient
      const [done, failed, cancelled] = yield* claim(yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})]))
      // Cancelled as a node of an earlier release does (rolling deploys): the row is finished at once.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now()
                 WHERE id IN ${sql.in([done!.id, failed!.id, cancelled!.id])}`
      // The attempt finished before the cancel's interrupt reached it, or the executor acked the cancel.
      yield* acker.ack(ackOf(done!, "completed"))
      yield* acker.ack(ackOf(failed!, "retryable", { delay_ms: 1000, error: { attempt: failed!.attempt, kind: "failure", message: "no" } }))
      yield* acker.ack(ackOf(cancelled!, "cancelled"))
      yield* settled(acker)
      for (const job of [done, failed, cancelled]) {
        assert.match(staleLine(lines, job!.id), /^Debug: .*matched no row: the job is cancelled; nothing was changed$/)
        assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "cancelled")
      }
    }).pipe(Effect.scoped))

  it.effect("the outcome of a job whose cancel was requested while it ran is written, and ends it cancelled, whatever it says", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      const [done, failed, cancelled] = yield* claim(yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})]))
      yield* answeredByLiveProducer(prefix, [done!.id, failed!.id, cancelled!.id])
      for (const job of [done, failed, cancelled]) {
        assert.strictEqual(Option.getOrThrow(yield* Oban.cancelJob(job!.id)).state, "executing")
      }
      yield* acker.ack(ackOf(done!, "completed"))
      yield* acker.ack(ackOf(failed!, "retryable", { delay_ms: 1000, error: { attempt: failed!.attempt, kind: "failure", message: "no" } }))
      yield* acker.ack(ackOf(cancelled!, "cancelled", { error: { attempt: cancelled!.attempt, kind: "cancelled", message: "cancelled" } }))
      yield* settled(acker)
      assert.isFalse(lines.some((line) => line.includes("matched no row")), lines.join("\n"))
      const rows = yield* Effect.forEach([done, failed, cancelled], (job) => jobRow(prefix, job!.id))
      assert.deepStrictEqual(rows.map((row) => [row.state, row.errors.map((entry) => entry.kind)]), [
        ["cancelled", ["cancelled"]],
        ["cancelled", ["failure", "cancelled"]],
        ["cancelled", ["cancelled"]]
      ])
      assert.match(rows[0]!.errors[0]!.message, /the attempt ended completed after the cancel was requested/)
    }).pipe(Effect.scoped))

  it.effect("an outcome lost to a rescue that ended a pending cancel, or to a cancel under another claim, still warns", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      const [rescued, reclaimed] = yield* claim(yield* Oban.insertAll([Noop.job({}), Noop.job({})]))
      // A workflow step's cancel waits for its attempt; the rescuer ended it, and the trigger made it cancelled.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now(),
                 errors = errors || '[{"attempt":1,"kind":"rescued","message":"node stopped heart-beating"}]'::jsonb
                 WHERE id = ${rescued!.id}`
      // Cancelled while running under another claim than this outcome's.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now(),
                 attempted_by[3] = 'another-claim' WHERE id = ${reclaimed!.id}`
      yield* acker.ack(ackOf(rescued!, "completed"))
      yield* acker.ack(ackOf(reclaimed!, "completed"))
      yield* settled(acker)
      for (const job of [rescued, reclaimed]) {
        assert.match(staleLine(lines, job!.id), /^Warn: .*matched no row: the job is cancelled/)
      }
      // The rescued one says why a rescue took it while it ran here, and what runs into that on every attempt.
      assert.match(staleLine(lines, rescued!.id), /a rescue took it while it ran here, as this node's heartbeats had stopped/)
      assert.include(staleLine(lines, rescued!.id), "run such workers with threads")
      assert.notInclude(staleLine(lines, reclaimed!.id), "a rescue took it")
    }).pipe(Effect.scoped))

  it.effect("an ack re-sent after the job was snoozed and claimed again changes nothing and is logged", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const lines: Array<string> = []
      const acker = yield* makeAcker(lines)
      const [first] = yield* claim([yield* Oban.insert(Noop.job({}))])
      // The first run snoozes: the attempt is given back, so the next run is attempt 1 again.
      const snooze = ackOf(first!, "scheduled", { delay_ms: 0, give_back: true })
      yield* acker.ack(snooze)
      yield* settled(acker)
      assert.strictEqual((yield* jobRow(prefix, first!.id)).state, "scheduled")
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'available' WHERE id = ${first!.id}`
      const [second] = yield* claim([first!])
      assert.strictEqual(second!.attempt, first!.attempt)

      // The first ack again, as after a COMMIT whose reply was lost.
      yield* acker.ack(snooze)
      yield* settled(acker)
      const row = yield* jobRow(prefix, first!.id)
      assert.strictEqual(row.state, "executing")
      assert.strictEqual(row.attempt, 1)
      assert.isTrue(
        lines.some((line) => line.includes(`ack of job ${first!.id}`) && line.includes("matched no row")),
        lines.join("\n")
      )

      assert.notStrictEqual(second!.attemptedBy?.[2], first!.attemptedBy?.[2])

      // The second run's own ack still lands.
      yield* acker.ack(ackOf(second!, "completed"))
      yield* settled(acker)
      assert.strictEqual((yield* jobRow(prefix, first!.id)).state, "completed")
    }).pipe(Effect.scoped))

  it.effect("one statement writes bare completions and every other outcome together, each matched by its own claim", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const write = (acks: ReadonlyArray<AckRow>, deleteCompleted: boolean) =>
        Effect.flatMap(now(sql), (time) => ackJobs(sql, prefix, time, node, acks, { deleteCompleted }))
      const outcomes = (jobs: ReadonlyArray<Job>): ReadonlyArray<AckRow> => [
        ackOf(jobs[0]!, "completed"),
        ackOf(jobs[1]!, "completed", { result: { total: 3 } }),
        failure(jobs[2]!, "boom"),
        ackOf(jobs[3]!, "scheduled", { delay_ms: 60_000, give_back: true }),
        // A completion under a claim the job no longer runs under: nothing changes.
        { ...ackOf(jobs[4]!, "completed"), claim: "some-other-claim" }
      ]
      const rowsOf = (jobs: ReadonlyArray<Job>) =>
        sql<{ id: number; state: string; attempt: number; completed: boolean; result: unknown; errors: number }>`
          SELECT id::int AS id, state, attempt, completed_at IS NOT NULL AS completed, result,
                 jsonb_array_length(errors) AS errors
          FROM ${sql(prefix)}.oban_jobs_all WHERE id IN ${sql.in(jobs.map((job) => job.id))} ORDER BY id`

      const kept = yield* claim(yield* Oban.insertAll([1, 2, 3, 4, 5].map(() => Noop.job({}))))
      const keptResult = yield* write(outcomes(kept), false)
      assert.deepStrictEqual([...keptResult.written].sort(), kept.slice(0, 4).map((job) => job.id).sort())
      assert.deepStrictEqual(keptResult.stale.map((miss) => [miss.id, miss.state]), [[kept[4]!.id, "executing"]])
      assert.deepStrictEqual((yield* rowsOf(kept)).map((row) => [row.state, row.attempt, row.completed, row.result, row.errors]), [
        ["completed", 1, true, null, 0],
        ["completed", 1, true, { total: 3 }, 0],
        ["retryable", 1, false, null, 1],
        ["scheduled", 0, false, null, 0],
        ["executing", 1, false, null, 0]
      ])

      const deleted = yield* claim(yield* Oban.insertAll([1, 2, 3, 4, 5].map(() => Noop.job({}))))
      const deletedResult = yield* write(outcomes(deleted), true)
      assert.strictEqual(deletedResult.written.length, 4)
      // A bare completion goes; one with a result stays with it, and so do the other outcomes as written.
      assert.deepStrictEqual((yield* rowsOf(deleted)).map((row) => [row.id, row.state]), [
        [deleted[1]!.id, "completed"],
        [deleted[2]!.id, "retryable"],
        [deleted[3]!.id, "scheduled"],
        [deleted[4]!.id, "executing"]
      ])
    }).pipe(Effect.scoped))

  it.effect("bare completions in any id order each match their own claim and write their own attempt", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const run = (deleteCompleted: boolean) =>
        Effect.gen(function*() {
          const jobs = yield* claim(yield* Oban.insertAll([1, 2, 3, 4, 5].map(() => Noop.job({}))))
          const ids = jobs.map((job) => job.id)
          // A claim that must be quoted in an array literal.
          const odd = `odd "claim" \\ {x,y}`
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempted_by[3] = ${odd} WHERE id = ${ids[1]!}`
          // Highest id first, a different attempt each; the fourth carries the third's claim and the fifth one it
          // never ran under: both change nothing.
          const acks = [
            ackOf(jobs[4]!, "completed", { attempt: 6, claim: "never-claimed" }),
            ackOf(jobs[3]!, "completed", { attempt: 5, claim: jobs[2]!.attemptedBy![2]! }),
            ackOf(jobs[2]!, "completed", { attempt: 4 }),
            ackOf(jobs[1]!, "completed", { attempt: 3, claim: odd }),
            ackOf(jobs[0]!, "completed", { attempt: 2 })
          ]
          const result = yield* Effect.flatMap(now(sql), (time) => ackJobs(sql, prefix, time, node, acks, { deleteCompleted }))
          assert.deepStrictEqual([...result.written].sort(), ids.slice(0, 3).sort())
          const rows = yield* sql<{ id: number; state: string; attempt: number }>`
            SELECT id::int AS id, state, attempt FROM ${sql(prefix)}.oban_jobs_all WHERE id IN ${sql.in(ids)} ORDER BY id`
          return rows.map((row) => [ids.indexOf(row.id), row.state, row.attempt])
        })
      assert.deepStrictEqual(yield* run(false), [
        [0, "completed", 2],
        [1, "completed", 3],
        [2, "completed", 4],
        [3, "executing", 1],
        [4, "executing", 1]
      ])
      assert.deepStrictEqual(yield* run(true), [[3, "executing", 1], [4, "executing", 1]])
    }).pipe(Effect.scoped))

  it.effect("a completion of a job claimed ahead writes the attempt it ran as", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const inserted = yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})])
      const ids = inserted.map((job) => job.id)
      const fetched = yield* Effect.flatMap(now(sql), (time) =>
        fetchJobs(sql, prefix, time, { queue: "acker", demand: 3, startNow: 1, node, producer: "p", claim: "ahead-claim" }))
      assert.strictEqual(fetched.ahead.size, 2)
      const result = yield* Effect.flatMap(now(sql), (time) =>
        ackJobs(sql, prefix, time, node, fetched.jobs.map((job) => ackOf(job, "completed"))))
      assert.strictEqual(result.written.length, 3)
      const rows = yield* sql<{ attempt: number; state: string }>`
        SELECT attempt, state FROM ${sql(prefix)}.oban_jobs_all WHERE id IN ${sql.in(ids)}`
      assert.deepStrictEqual(rows.map((row) => [row.state, row.attempt]), [["completed", 1], ["completed", 1], ["completed", 1]])
    }).pipe(Effect.scoped))

  it.effect("releasing a fetch's claim puts back only its jobs still executing, with the attempt given back", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})])
      const fetch = (claim: string) =>
        Effect.flatMap(now(sql), (time) =>
          fetchJobs(sql, prefix, time, { queue: "acker", demand: 2, startNow: 2, node, producer: "p", claim }).pipe(
            Effect.map((fetched) => fetched.jobs)
          ))
      const lost = yield* fetch("lost-claim")
      const kept = yield* fetch("kept-claim")
      assert.deepStrictEqual([lost.length, kept.length], [2, 1])
      const acker = yield* makeAcker([])
      // One job of the lost fetch finished anyway (it cannot have, but its row must be left alone).
      yield* acker.ack({ ...ackOf(lost[0]!, "completed"), claim: "lost-claim" })
      yield* settled(acker)
      assert.deepStrictEqual(yield* releaseClaims(sql, prefix, ["lost-claim"]), [lost[1]!.id])
      const released = yield* jobRow(prefix, lost[1]!.id)
      assert.deepStrictEqual([released.state, released.attempt], ["available", 0])
      assert.strictEqual((yield* jobRow(prefix, lost[0]!.id)).state, "completed")
      assert.strictEqual((yield* jobRow(prefix, kept[0]!.id)).state, "executing")
      assert.deepStrictEqual(yield* releaseClaims(sql, prefix, ["lost-claim"]), [])
    }).pipe(Effect.scoped))

  it.effect("releasing a fetch's claim gives an attempt back only for the jobs it started, not those claimed ahead", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE queue = 'acker'`
      const [first, second, third] = yield* Oban.insertAll([Noop.job({}), Noop.job({}), Noop.job({})])
      // The second had run twice before (a retry), and is due like the others.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempt = 2 WHERE id = ${second!.id}`
      const fetched = yield* Effect.flatMap(now(sql), (time) =>
        fetchJobs(sql, prefix, time, { queue: "acker", demand: 3, startNow: 1, node, producer: "p", claim: "lost-ahead" }))
      assert.deepStrictEqual(fetched.jobs.map((job) => [job.id, fetched.ahead.has(job.id)]), [
        [first!.id, false],
        [second!.id, true],
        [third!.id, true]
      ])
      const marks = yield* sql<{ readonly id: string; readonly attempted_by: ReadonlyArray<string> }>`
        SELECT id::text, attempted_by FROM ${sql(prefix)}.oban_jobs WHERE queue = 'acker' ORDER BY id`
      assert.deepStrictEqual(marks.map((row) => row.attempted_by), [
        [node, "p", "lost-ahead"],
        [node, "p", "lost-ahead", "ahead"],
        [node, "p", "lost-ahead", "ahead"]
      ])
      // The one job that used an attempt is cancelled before the release, as a node of an earlier release
      // cancels (its row finished at once): the release must still tell the jobs claimed ahead by their mark
      // (ranked by fetch order, the second took its place).
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${first!.id}`
      // Before the mark, every job gave one back: the third went to -1, which the table refuses, so nothing was released.
      assert.strictEqual((yield* releaseClaims(sql, prefix, ["lost-ahead"])).length, 2)
      const rows = yield* Effect.forEach([first!, second!, third!], (job) => jobRow(prefix, job.id))
      assert.deepStrictEqual(rows.map((row) => [row.state, row.attempt]), [["cancelled", 1], ["available", 2], [
        "available",
        0
      ]])
    }).pipe(Effect.scoped))
})
