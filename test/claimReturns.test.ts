/**
 * A producer's give-back, seen from the reconciler: jobs taken out of the
 * buffer stay pending (this node's) while the give-back's statement is on its
 * way, not only once it has failed or passed them over. Otherwise a
 * reconciler looking in between would take them back with the attempt their
 * claim counted.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Logger, References, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as ClaimReturns from "../src/internal/claimReturns.ts"
import { realSleep } from "../src/internal/statementTimeout.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { holdRow, jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("claim_returns")
const Noop = Worker.make("Noop", { args: Schema.Struct({}), perform: () => Effect.void })

/** A job of this test's table, executing under claim `claim` (as a producer's buffer holds it). */
const executing = (claim: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [inserted] = yield* Oban.insertAll([Noop.job({})])
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
               attempted_by = ARRAY['node', 'producer', ${claim}] WHERE id = ${inserted!.id}`
    return { job: { ...inserted!, attemptedBy: ["node", "producer", claim] }, ahead: false }
  })

const makeReturns = Effect.gen(function*() {
  return ClaimReturns.make({
    sql: yield* SqlClient,
    prefix,
    scope: yield* Effect.scope,
    context: yield* Effect.context<never>(),
    logs: {},
    fetchTimeout: Duration.seconds(15),
    fetchSettle: Duration.seconds(6)
  })
})

/**
 * Another transaction locks the table (not a row, which a give-back passes over), so a give-back's
 * statement waits; `unlock` ends it.
 */
const lockTable = Effect.gen(function*() {
  const sql = yield* SqlClient
  const locked = yield* Deferred.make<void>()
  const unlock = yield* Deferred.make<void>()
  const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
    yield* sql`LOCK TABLE ${sql(prefix)}.oban_jobs IN SHARE MODE`
    yield* Deferred.succeed(locked, undefined)
    yield* Deferred.await(unlock)
  })))
  yield* Deferred.await(locked)
  return Effect.andThen(Deferred.succeed(unlock, undefined), Fiber.join(holder))
})

/** How many statements on this test's table wait for a lock. */
const lockWaiters = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                                                  WHERE wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}
                                                    AND pid <> pg_backend_pid()`
  return rows[0]!.n
})

/** Starts a give-back of `unstarted` and waits until its statement waits for the table lock. */
const givingBack = (returns: ClaimReturns.ClaimReturns, unstarted: ClaimReturns.Unstarted) =>
  Effect.gen(function*() {
    let taken = false
    const fiber = yield* Effect.forkChild(returns.giveBack(() => {
      taken = true
      return [unstarted]
    }, "job"))
    yield* waitFor("the give-back took the job", Effect.sync(() => taken))
    yield* waitFor("the give-back's statement waiting for the lock", Effect.map(lockWaiters, (n) => n > 0))
    return fiber
  })

/** Until no give-back's statement waits for the table lock (an interrupted one was cancelled on the server). */
const noGiveBackWaiting = waitFor("the interrupted give-back's statement cancelled", Effect.map(lockWaiters, (n) => n === 0))

/** The job is still `executing` with the attempt its claim counted: nothing gave it back yet. */
const assertStillClaimed = (id: number) =>
  Effect.map(jobRow(prefix, id), (row) => assert.deepStrictEqual([row.state, row.attempt], ["executing", 1]))

/** The job is `available` again with its attempt given back. */
const assertGivenBack = (id: number) =>
  Effect.map(jobRow(prefix, id), (row) => assert.deepStrictEqual([row.state, row.attempt], ["available", 0]))

layer(testLayer(prefix), { excludeTestServices: true })("claim returns", (it) => {
  it.effect("jobs being given back are pending until the give-back lands, then not", () =>
    Effect.gen(function*() {
      const unstarted = yield* executing("claim-1")
      const returns = yield* makeReturns
      const unlock = yield* lockTable
      const giving = yield* givingBack(returns, unstarted)
      assert.deepStrictEqual(returns.pending().jobs, [unstarted.job.id])
      yield* unlock
      yield* Fiber.join(giving)
      assert.deepStrictEqual(returns.pending().jobs, [])
      yield* assertGivenBack(unstarted.job.id)
    }).pipe(Effect.scoped))

  it.effect("a give-back interrupted on its way keeps its jobs pending, and the shutdown gives them back", () =>
    Effect.gen(function*() {
      const unstarted = yield* executing("claim-2")
      const returns = yield* makeReturns
      const unlock = yield* lockTable
      const giving = yield* givingBack(returns, unstarted)
      yield* Fiber.interrupt(giving)
      assert.deepStrictEqual(returns.pending().jobs, [unstarted.job.id])
      // The interrupted statement cancelled on the server, not waiting to commit when the lock goes.
      yield* noGiveBackWaiting
      yield* unlock
      yield* assertStillClaimed(unstarted.job.id)
      yield* returns.atShutdown([])
      yield* assertGivenBack(unstarted.job.id)
    }).pipe(Effect.scoped))

  it.effect("at shutdown a job whose row another transaction holds for a moment is given back once it is free", () =>
    Effect.gen(function*() {
      const unstarted = yield* executing("claim-3")
      const returns = yield* makeReturns
      // A row lock held for 300 ms, as by a give-back the shutdown interrupted whose statement the
      // server is still cancelling.
      const { release } = yield* holdRow(prefix, unstarted.job.id)
      const holder = yield* Effect.forkChild(Effect.andThen(realSleep(300), release))
      yield* returns.atShutdown([unstarted])
      yield* Fiber.join(holder)
      yield* assertGivenBack(unstarted.job.id)
    }).pipe(Effect.scoped))

  it.effect("at shutdown the claim of a fetch whose statement outlived its deadline is released once that statement ended", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // A reply lost to a fault is a warning; a fetch that shutdown interrupted, an ordinary stop, is said at info.
      for (const interrupted of [false, true]) {
        const [job] = yield* Oban.insertAll([Noop.job({})])
        // The producer's scope: closed before the shutdown's release, as the producer's loops stop first
        // (the background release, a second later, must not be what releases the job here).
        const producerScope = yield* Scope.make()
        // It logs in the context it was made in (the producer's): a logger that keeps the lines, at every level.
        const lines: Array<string> = []
        const capture = Logger.make(({ logLevel, message }) => {
          lines.push(`${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
        })
        const returns = yield* makeReturns.pipe(
          Effect.provideService(Scope.Scope, producerScope),
          Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
          Effect.provideService(References.MinimumLogLevel, "All")
        )
        // The fetch failed at its deadline; its statement goes on and commits its claim 300 ms later.
        const statementEnded = yield* Deferred.make<void>()
        yield* returns.fetchFailed(`claim-late-${interrupted}`, Deferred.await(statementEnded), interrupted)
        yield* Scope.close(producerScope, Exit.void)
        const statement = yield* Effect.forkChild(Effect.gen(function*() {
          yield* realSleep(300)
          yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                     attempted_by = ARRAY['node', 'producer', ${`claim-late-${interrupted}`}] WHERE id = ${job!.id}`
          yield* Deferred.succeed(statementEnded, undefined)
        }))
        yield* returns.atShutdown([])
        yield* Fiber.join(statement)
        yield* assertGivenBack(job!.id)
        assert.deepStrictEqual(
          lines,
          [interrupted
            ? `Info: released 1 job(s) claimed by a fetch in flight as shutdown began: ${job!.id}`
            : `Warn: released 1 job(s) claimed by fetches whose reply was lost, at shutdown: ${job!.id}`]
        )
      }
    }).pipe(Effect.scoped))

  it.effect("at shutdown a job kept under an old claim and waiting again under a new one goes back under the new", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const stale = yield* executing("claim-old")
      const returns = yield* makeReturns
      // Kept under claim-old (its give-back interrupted), then claimed again under claim-new.
      const unlock = yield* lockTable
      yield* Fiber.interrupt(yield* givingBack(returns, stale))
      yield* noGiveBackWaiting
      yield* unlock
      yield* assertStillClaimed(stale.job.id)
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempted_by = ARRAY['node', 'producer', 'claim-new']
                 WHERE id = ${stale.job.id}`
      const waiting = { job: { ...stale.job, attemptedBy: ["node", "producer", "claim-new"] }, ahead: false }
      yield* returns.atShutdown([waiting])
      yield* assertGivenBack(stale.job.id)
    }).pipe(Effect.scoped))
})
