/**
 * The PostgreSQL server goes away in the middle of a drain while the advanced
 * features are active: cluster-wide limits (global, partitioned, rate),
 * workflows and unique jobs. Two kinds of outage, each on a server of the
 * test's own (an embedded PostgreSQL this file controls):
 *
 * - a crash: the postmaster gets SIGQUIT, which is what `pg_ctl stop -m
 *   immediate` sends (no checkpoint, no flush of the WAL buffers), so the last
 *   outcomes, and claims of unlimited queues, which commit with
 *   `synchronous_commit = off`, can be forgotten; a limited queue's claims
 *   commit durably, so none of them is (docs/queues.md, "Durability of claims
 *   and outcomes");
 * - a clean restart: SIGINT (`pg_ctl stop -m fast`, the default), which
 *   forgets nothing.
 *
 * (test/support/crashableServer.ts says how the server is set up.)
 *
 * Every perform is counted in memory (the nodes run in this process and
 * outlive the server) and in a side table keyed by job id, written by the
 * worker in its own statement on the run's other server, which never goes
 * away, so the count does not depend on what the crashed server remembers.
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, type Duration, Effect, Exit, Layer, Redacted, Schema, type Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Oban from "../src/Oban.ts"
import type { Job } from "../src/Job.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { databaseUrl, quietLogs, report, uniquePrefix } from "./support/db.ts"
import { type CrashableServer, forgettableMillis, startCrashableServer } from "./support/crashableServer.ts"
import { type RunningNode, startNode, waitFor } from "./support/node.ts"

type Fault = "crash" | "restart"

// ---------------------------------------------------------------------------------------------
// Performs, counted in memory and in a side table on the run's own server

interface Perform {
  readonly id: number
  readonly queue: string
  /** The partition (args.account) or the workflow step ("<workflow>/<step>"). */
  readonly part: string
  readonly attempt: number
  readonly claim: string
  /** The claim's time (attempted_at, database clock), in ms. */
  readonly claimedAt: number
  readonly start: number
  end: number | undefined
  ok: boolean
}

const performs: Array<Perform> = []

class Side extends Context.Service<Side, {
  readonly record: (perform: Perform) => Effect.Effect<void>
}>()("test/serverCrash/Side") {}

/** Runs `work` as a counted perform of `job`. */
const counted = (job: Job<unknown>, part: string, work: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const side = yield* Side
    const perform: Perform = {
      id: job.id,
      queue: job.queue,
      part,
      attempt: job.attempt,
      claim: job.attemptedBy?.slice(2).join(":") ?? "?",
      claimedAt: job.attemptedAt?.getTime() ?? 0,
      start: Date.now(),
      end: undefined,
      ok: false
    }
    performs.push(perform)
    yield* Effect.onExit(Effect.andThen(side.record(perform), work), (exit) =>
      Effect.sync(() => {
        perform.end = Date.now()
        perform.ok = Exit.isSuccess(exit)
      }))
  })

const Limited = Worker.make("Limited", {
  args: Schema.Struct({ n: Schema.Int, account: Schema.String, millis: Schema.Int }),
  perform: (job) => counted(job, job.args.account, Effect.sleep(job.args.millis))
})

const Step = Worker.make("Step", {
  args: Schema.Struct({ workflow: Schema.String, step: Schema.String, millis: Schema.Int }),
  queue: "flow",
  perform: (job) => counted(job, `${job.args.workflow}/${job.args.step}`, Effect.sleep(job.args.millis))
})

const Unique = Worker.make("Unique", {
  args: Schema.Struct({ key: Schema.String }),
  queue: "uniq",
  unique: { keys: ["key"], period: "forever" },
  perform: (job) => counted(job, job.args.key, Effect.sleep(20))
})

/** The side table, in a schema of its own on the run's server, dropped at the end. */
const sideLayer = (sidePrefix: string) =>
  Layer.effect(
    Side,
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE SCHEMA "${sidePrefix}"`)
      yield* Effect.addFinalizer(() => Effect.ignore(sql.unsafe(`DROP SCHEMA IF EXISTS "${sidePrefix}" CASCADE`)))
      yield* sql`CREATE TABLE ${sql(sidePrefix)}.performs (
        job_id bigint NOT NULL, attempt int NOT NULL, claim text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`
      return Side.of({
        record: (perform) =>
          sql`INSERT INTO ${sql(sidePrefix)}.performs (job_id, attempt, claim)
              VALUES (${perform.id}, ${perform.attempt}, ${perform.claim})`.pipe(Effect.asVoid, Effect.orDie)
      })
    })
  ).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 20 })))

const sideCounts = (sidePrefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ id: number; n: number }>`
      SELECT job_id::int AS id, count(*)::int AS n FROM ${sql(sidePrefix)}.performs GROUP BY job_id`
    return new Map(rows.map((row) => [row.id, row.n]))
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl()), maxConnections: 1 })))

// ---------------------------------------------------------------------------------------------
// The run: a server, two nodes, the fault

interface FinalJob {
  readonly id: number
  readonly state: string
  readonly queue: string
  readonly attempt: number
  readonly kinds: ReadonlyArray<string>
  readonly completedAt: number | null
  readonly workflow: string | null
  readonly step: string | null
}

const finalJobs = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{
      id: number
      state: string
      queue: string
      attempt: number
      kinds: ReadonlyArray<string>
      completed_at: Date | null
      workflow_id: string | null
      step: string | null
    }>`
      SELECT id::int AS id, state::text AS state, queue, attempt,
             ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(errors) e) AS kinds,
             completed_at, workflow_id, meta #>> '{workflow,step}' AS step
      FROM ${sql(prefix)}.oban_jobs_all ORDER BY id`
    return rows.map((row): FinalJob => ({
      id: row.id,
      state: row.state,
      queue: row.queue,
      attempt: row.attempt,
      kinds: row.kinds,
      completedAt: row.completed_at === null ? null : row.completed_at.getTime(),
      workflow: row.workflow_id,
      step: row.step
    }))
  })

const countStates = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ state: string; n: number }>`
      SELECT state::text AS state, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY state`
    return Object.fromEntries(rows.map((row) => [row.state, row.n])) as Record<string, number>
  }).pipe(Effect.orElseSucceed((): Record<string, number> => ({})))

interface Run {
  readonly prefix: string
  readonly sidePrefix: string
  readonly server: CrashableServer
  /** Date.now() when the server was stopped, and when it accepted connections again. */
  readonly faultAt: number
  readonly backAt: number
  readonly nodes: ReadonlyArray<RunningNode>
}

const nodeOptions: Omit<Oban.LayerOptions<Worker.Any>, "workers"> = {
  pollInterval: "200 millis",
  heartbeatInterval: "500 millis",
  rescuer: { rescueAfter: "3 seconds", interval: "500 millis" },
  leader: { ttl: "3 seconds", renewInterval: "1 second" },
  pruner: false,
  shutdownGracePeriod: "2 seconds"
}

/**
 * Starts a server and two nodes on it, inserts with `insert`, waits until `ready` says the drain
 * is under way, stops the server (`fault`) for `downMillis` while `during` runs, and returns once
 * `done` holds (the test's `check` then runs with the nodes still up).
 */
const runThrough = <W extends Worker.Any, A>(options: {
  readonly fault: Fault
  readonly queues: Oban.LayerOptions<W>["queues"]
  readonly workers: ReadonlyArray<W>
  readonly insert: Effect.Effect<A, unknown, SqlClient | Scope.Scope>
  readonly ready: () => boolean
  readonly downMillis?: number
  readonly done: (prefix: string) => Effect.Effect<boolean, unknown, SqlClient>
  readonly check: (run: Run, inserted: A) => Effect.Effect<void, unknown, SqlClient | Scope.Scope>
}) =>
  Effect.gen(function*() {
    performs.length = 0
    const prefix = uniquePrefix("crash")
    const sidePrefix = `${prefix}_side`
    const server = yield* startCrashableServer
    const client = (maxConnections: number) =>
      PgClient.layer({ url: Redacted.make(server.url), maxConnections, connectTimeout: "2 seconds" })
    const test = Effect.gen(function*() {
      yield* Migrations.run({ prefix })
      const inserted = yield* options.insert
      const side = yield* Layer.build(sideLayer(sidePrefix))
      const nodes: Array<RunningNode> = []
      for (const name of ["a", "b"]) {
        // Each node has a pool of its own, as on two machines.
        const nodeContext = yield* Layer.build(client(10))
        nodes.push(
          yield* startNode({ ...nodeOptions, prefix, node: name, queues: options.queues, workers: options.workers }).pipe(
            Effect.provideContext(nodeContext),
            Effect.provideContext(side)
          )
        )
      }
      yield* waitFor("the drain to be under way", Effect.sync(options.ready), "30 seconds")
      const faultAt = Date.now()
      const bounce = options.fault === "crash" ? server.crash : server.restart
      yield* Effect.promise(() => bounce(options.downMillis ?? 1_500))
      const backAt = Date.now()
      yield* waitFor("every job done", options.done(prefix).pipe(Effect.orElseSucceed(() => false)), "40 seconds").pipe(
        Effect.catchDefect((defect) =>
          Effect.gen(function*() {
            const left = (yield* finalJobs(prefix)).filter((job) => job.state !== "completed")
            return yield* Effect.die(new Error(
              `${String(defect)}; ${left.length} job(s) not completed ${Math.round((Date.now() - faultAt) / 1000)} s after ` +
                `the ${options.fault}: ${left.slice(0, 20).map((job) => `${job.id} ${job.workflow ?? ""}${job.step === null ? "" : `/${job.step}`} ${job.state} attempt ${job.attempt} [${job.kinds.join(",")}]`).join("; ")}`
            ))
          })
        )
      )
      // Anything still to start (a second run of a forgotten claim) shows within a poll or two.
      yield* Effect.sleep("1 second")
      yield* options.check({ prefix, sidePrefix, server, faultAt, backAt, nodes }, inserted)
    })
    yield* test.pipe(
      Effect.provide(Config.layer({ prefix })),
      Effect.provide(client(4))
    )
  }).pipe(Effect.scoped, Effect.provide(quietLogs))

// ---------------------------------------------------------------------------------------------
// What the docs allow

/** Performs whose claim the database forgot: a later perform of the job ran under the same attempt number. */
const forgottenClaims = (all: ReadonlyArray<Perform>): ReadonlySet<Perform> => {
  const forgotten = new Set<Perform>()
  for (const perform of all) {
    if (all.some((other) =>
      other !== perform && other.id === perform.id && other.attempt === perform.attempt &&
      other.claim !== perform.claim && other.start > perform.start
    )) forgotten.add(perform)
  }
  return forgotten
}

/** The most performs that ran at once, per `group` (in-memory clock; an end at a start's instant does not overlap). */
const maxConcurrency = (all: ReadonlyArray<Perform>, group: (p: Perform) => string, until: number) => {
  const byGroup = new Map<string, Array<readonly [number, number]>>()
  for (const p of all) {
    const events = byGroup.get(group(p)) ?? []
    events.push([p.start, 1], [p.end ?? until, -1])
    byGroup.set(group(p), events)
  }
  let most = 0
  let where = ""
  for (const [key, events] of byGroup) {
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1])
    let now = 0
    for (const [, delta] of events) {
      now += delta
      if (now > most) {
        most = now
        where = key
      }
    }
  }
  return { most, where }
}

/**
 * Each job ran at most as the docs allow. After a clean restart nothing is forgotten, and an
 * outcome is retried until written, never dropped: each job runs once, plus once per failed
 * attempt (a claim whose reply was lost with its connection is released by the node's reconciler,
 * with a `rescued` errors entry, but it never ran, so it adds no run). After a crash, a run may
 * also be followed by another when its claim or its outcome could have been among the forgotten
 * commits: it was running, or ended, within `forgettableMillis` of the crash.
 */
const assertRunsAllowed = (run: Run, fault: Fault, jobs: ReadonlyArray<FinalJob>) =>
  Effect.gen(function*() {
    const side = yield* sideCounts(run.sidePrefix)
    const problems: Array<string> = []
    let extra = 0
    for (const job of jobs) {
      const mine = performs.filter((p) => p.id === job.id).sort((a, b) => a.start - b.start)
      if ((side.get(job.id) ?? 0) !== mine.length) {
        problems.push(`job ${job.id}: ${side.get(job.id) ?? 0} performs in the side table, ${mine.length} in memory`)
      }
      if (mine.length === 0) problems.push(`job ${job.id} (${job.state}) never ran`)
      const failed = job.kinds.filter((kind) => kind !== "rescued").length
      extra += Math.max(0, mine.length - 1)
      const describe = () =>
        `job ${job.id} ran ${mine.length} times after a ${fault} at T: attempts ${mine.map((p) => p.attempt).join(",")}, ` +
        `claims ${mine.map((p) => p.claim).join(",")}, runs [${
          mine.map((p) => `T${p.start - run.faultAt >= 0 ? "+" : ""}${p.start - run.faultAt}..${p.end === undefined ? "?" : p.end - run.faultAt}ms${p.ok ? "" : " (interrupted)"}`).join(", ")
        }], errors [${job.kinds.join(",")}], final state ${job.state} attempt ${job.attempt}`
      if (mine.length > 1) report(`  ${describe()}`)
      const unexplained = mine.slice(0, -1).filter((earlier) =>
        !(fault === "crash" && (earlier.end === undefined || earlier.end >= run.faultAt - forgettableMillis))
      )
      if (unexplained.length > failed) problems.push(describe())
    }
    assert.deepStrictEqual(problems, [])
    return extra
  })

const sign = (millis: number) => `${millis >= 0 ? "+" : ""}${millis}ms`


// ---------------------------------------------------------------------------------------------
// 1. Cluster-wide limits

const allCompleted = (total: number) => (prefix: string) =>
  Effect.map(countStates(prefix), (counts) => counts["completed"] === total)

const limitedDrain = (fault: Fault, options: {
  readonly queue: "global" | "partitioned" | "rate"
  readonly total: number
  readonly accounts: number
  readonly millis: number
  readonly config: Oban.QueueConfig
  readonly label?: string
  readonly downMillis?: number
  readonly check: (run: Run, all: ReadonlyArray<Perform>) => void
}) =>
  runThrough({
    fault,
    queues: { [options.queue]: options.config },
    workers: [Limited],
    insert: Oban.insertAll(Array.from({ length: options.total }, (_, n) =>
      Limited.job({ n, account: `acct-${n % options.accounts}`, millis: options.millis }, { queue: options.queue }))),
    ready: () => performs.filter((p) => p.end !== undefined).length >= options.total / 3,
    ...(options.downMillis === undefined ? {} : { downMillis: options.downMillis }),
    done: allCompleted(options.total),
    check: (run) =>
      Effect.gen(function*() {
        const jobs = yield* finalJobs(run.prefix)
        assert.deepStrictEqual(jobs.filter((job) => job.state !== "completed").map((j) => [j.id, j.state]), [])
        assert.strictEqual(jobs.length, options.total)
        const extra = yield* assertRunsAllowed(run, fault, jobs)
        const forgotten = forgottenClaims(performs)
        report(`${options.label ?? options.queue}/${fault}: ${performs.length} performs, ${extra} extra, ${forgotten.size} forgotten claims`)
        // A limited queue claims durably: a crash forgets none of its claims.
        assert.deepStrictEqual([...forgotten].map((p) => [p.id, p.attempt]), [], "a limited queue's claim was forgotten")
        options.check(run, performs)
      })
  })

const globalLimit = 4
const globalCheck = (_run: Run, all: ReadonlyArray<Perform>) => {
  const { most } = maxConcurrency(all, () => "all", Date.now())
  report(`  global: at most ${most} at once`)
  assert.isAtMost(most, globalLimit, "more jobs ran at once than the global limit")
}

const partitionedCheck = (_run: Run, all: ReadonlyArray<Perform>) => {
  const { most, where } = maxConcurrency(all, (p) => p.part, Date.now())
  report(`  partitioned: at most ${most} at once in a partition`)
  assert.isAtMost(most, 1, `more than 1 job of ${where} ran at once`)
}

const ratePeriodMillis = 1_000
const rateLimit = 15
const rateCheck = (_run: Run, all: ReadonlyArray<Perform>) => {
  const windows = new Map<number, number>()
  for (const p of all) {
    const window = Math.floor(p.claimedAt / ratePeriodMillis)
    windows.set(window, (windows.get(window) ?? 0) + 1)
  }
  const most = Math.max(...windows.values())
  report(`  rate: at most ${most} claims in a window`)
  assert.isAtMost(most, rateLimit, "a rate window had more claims than the limit")
}

const limitCases = [
  {
    queue: "global" as const,
    total: 240,
    accounts: 1,
    millis: 50,
    config: { limit: 10, global: globalLimit },
    check: globalCheck
  },
  {
    queue: "partitioned" as const,
    total: 240,
    accounts: 6,
    millis: 40,
    config: { limit: 10, global: 1, partition: { by: "args" as const, key: "account" } },
    check: partitionedCheck
  },
  // Jobs longer than the outage: attempts run on while the server comes back, so a claim after
  // it that miscounted what runs would start more than the limit.
  {
    queue: "global" as const,
    label: "global limit, jobs outlasting the outage",
    total: 28,
    accounts: 1,
    millis: 1_500,
    downMillis: 300,
    config: { limit: 10, global: globalLimit },
    check: globalCheck
  },
  {
    queue: "partitioned" as const,
    label: "partitioned limit, jobs outlasting the outage",
    total: 36,
    accounts: 6,
    millis: 1_200,
    downMillis: 300,
    config: { limit: 10, global: 1, partition: { by: "args" as const, key: "account" } },
    check: partitionedCheck
  },
  {
    queue: "rate" as const,
    total: 120,
    accounts: 1,
    millis: 10,
    config: { limit: 10, rate: { limit: rateLimit, period: `${ratePeriodMillis} millis` as Duration.Input } },
    check: rateCheck
  }
]

describe("the server goes away mid-drain of a limited queue", () => {
  for (const fault of ["crash", "restart"] as const) {
    // Jobs outlasting the outage: the crash only (a clean restart of that case adds nothing the
    // short jobs' restart does not check, and half a minute).
    for (const limitCase of limitCases.filter((c) => fault === "crash" || c.label === undefined)) {
      it.live(`${limitCase.label ?? `${limitCase.queue} limit`}, server ${fault === "crash" ? "crashes" : "restarts cleanly"}: every job completes, runs as allowed, the limit holds`, () =>
        limitedDrain(fault, limitCase), 90_000)
    }
  }
})

// ---------------------------------------------------------------------------------------------
// 2. Workflows

const workflowCount = 30
const stepMillis = 120

/** Diamonds (a -> b, c -> d) and chains (a -> b -> c), alternately. */
const shapes = (i: number): ReadonlyArray<readonly [string, ReadonlyArray<string>]> =>
  i % 2 === 0
    ? [["a", []], ["b", ["a"]], ["c", ["a"]], ["d", ["b", "c"]]]
    : [["a", []], ["b", ["a"]], ["c", ["b"]]]

const workflowTotal = Array.from({ length: workflowCount }, (_, i) => shapes(i).length).reduce((a, b) => a + b, 0)

const insertWorkflows = Effect.forEach(Array.from({ length: workflowCount }, (_, i) => i), (i) => {
  let flow = Workflow.make<string>(`wf-${i}`)
  for (const [step, deps] of shapes(i)) {
    flow = flow.add(step, Step.job({ workflow: `wf-${i}`, step, millis: stepMillis }), { deps: [...deps] })
  }
  return Oban.insertWorkflow(flow)
}, { discard: true })

const workflowDrain = (fault: Fault) =>
  runThrough({
    fault,
    queues: { flow: 4 },
    workers: [Step],
    insert: insertWorkflows,
    ready: () => performs.filter((p) => p.end !== undefined).length >= workflowTotal / 3,
    done: allCompleted(workflowTotal),
    check: (run) =>
      Effect.gen(function*() {
        const jobs = yield* finalJobs(run.prefix)
        assert.strictEqual(jobs.length, workflowTotal)
        assert.deepStrictEqual(jobs.filter((job) => job.state !== "completed").map((j) => [j.id, j.workflow, j.step, j.state]), [])
        const extra = yield* assertRunsAllowed(run, fault, jobs)
        // Order: every perform of a step started after a successful perform of each of its
        // dependencies had ended; and the run that counted (the last one) was claimed after each
        // dependency's row was completed in the database.
        const byStep = new Map(jobs.map((job) => [`${job.workflow}/${job.step}`, job]))
        const problems: Array<string> = []
        for (let i = 0; i < workflowCount; i++) {
          for (const [step, deps] of shapes(i)) {
            const key = `wf-${i}/${step}`
            const runs = performs.filter((p) => p.part === key).sort((a, b) => a.start - b.start)
            for (const dep of deps) {
              const depKey = `wf-${i}/${dep}`
              const depRuns = performs.filter((p) => p.part === depKey && p.ok && p.end !== undefined)
              for (const p of runs) {
                if (!depRuns.some((d) => d.end! <= p.start)) {
                  problems.push(`${key} (job ${p.id}) started ${p.start - run.faultAt} ms after the ${fault} before ${depKey} had run`)
                }
              }
              // The database's timestamps agree: the counting run was claimed (attempted_at) after the
              // dependency's row was completed (completed_at). A claim stamped with its transaction's
              // start (`now()`) could predate an outcome that committed before the claim's snapshot
              // (seen after a crash in about 1 run in 3); it is stamped as it runs.
              const last = runs.at(-1)
              const depRow = byStep.get(depKey)!
              if (last !== undefined && (depRow.completedAt === null || depRow.completedAt > last.claimedAt)) {
                const depEnd = Math.max(...depRuns.map((d) => d.end!))
                problems.push(
                  `${key} (job ${last.id}) was claimed at T${sign(last.claimedAt - run.faultAt)} (attempted_at, claim ${last.claim}), ` +
                    `before ${depKey} (job ${depRow.id}) completed at T${sign((depRow.completedAt ?? 0) - run.faultAt)} (completed_at); ` +
                    `in memory ${depKey} ended at T${sign(depEnd - run.faultAt)} and ${key} started at T${sign(last.start - run.faultAt)}`
                )
              }
            }
          }
        }
        assert.deepStrictEqual(problems, [])
        report(`workflows/${fault}: ${performs.length} performs, ${extra} extra`)
      })
  })

describe("the server goes away mid-drain of workflows", () => {
  it.live("the server crashes: every step completes, after its dependencies, none stranded", () => workflowDrain("crash"), 90_000)
  it.live("the server restarts cleanly: every step completes, after its dependencies, none stranded", () =>
    workflowDrain("restart"), 90_000)
})

// ---------------------------------------------------------------------------------------------
// 3. Unique jobs inserted during the outage and after

interface InsertTry {
  readonly i: number
  readonly key: string
  readonly start: number
  readonly millis: number
  readonly outcome:
    | { readonly _tag: "inserted"; readonly id: number; readonly conflict: boolean }
    | { readonly _tag: "failed"; readonly error: string }
    | { readonly _tag: "defect"; readonly cause: string }
    | { readonly _tag: "hung" }
}

const insertTimeoutMillis = 15_000
/** How long after the server is back an insert may still fail: the pool's reconnect, on a loaded machine. */
const reconnectMillis = 4_000

/** Inserts unique jobs, each key 3 times in a row, one every 40 ms, until `stop` says so. */
const insertLoop = (tries: Array<InsertTry>, stop: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; !stop(); i++) {
      const key = `k${Math.floor(i / 3)}`
      const start = Date.now()
      const exit = yield* Oban.insert(Unique.job({ key })).pipe(
        Effect.timeoutOption(insertTimeoutMillis),
        Effect.exit
      )
      const millis = Date.now() - start
      const outcome: InsertTry["outcome"] = Exit.isSuccess(exit)
        ? exit.value._tag === "Some"
          ? { _tag: "inserted", id: exit.value.value.id, conflict: exit.value.value.conflict }
          : { _tag: "hung" }
        : Cause.hasFails(exit.cause) && !Cause.hasDies(exit.cause)
        ? { _tag: "failed", error: String((Cause.squash(exit.cause) as { _tag?: string })._tag) }
        : { _tag: "defect", cause: Cause.pretty(exit.cause) }
      tries.push({ i, key, start, millis, outcome })
      yield* Effect.sleep("40 millis")
    }
  })

const uniqueRun = (fault: Fault) => {
  const tries: Array<InsertTry> = []
  let stopAt = Number.POSITIVE_INFINITY
  return runThrough({
    fault,
    queues: { uniq: 5 },
    workers: [Unique],
    // The inserts run before, through and after the outage, on the test's own pool.
    insert: Effect.forkScoped(insertLoop(tries, () => Date.now() > stopAt)),
    downMillis: 3_000,
    ready: () => performs.length >= 20,
    done: (prefix) =>
      Effect.gen(function*() {
        // Called first once the server is back: the inserts go on for 4 s more after the reconnect.
        if (stopAt === Number.POSITIVE_INFINITY) stopAt = Date.now() + reconnectMillis + 4_000
        const counts = yield* countStates(prefix)
        const total = Object.values(counts).reduce((a, b) => a + b, 0)
        return Date.now() > stopAt + 500 && counts["completed"] === total
      }),
    check: (run) =>
      Effect.gen(function*() {
        const jobs = yield* finalJobs(run.prefix)
        // The unique rule: at most one job per key.
        const sql = yield* SqlClient
        const dups = yield* sql<{ key: string; n: number }>`
          SELECT args->>'key' AS key, count(*)::int AS n FROM ${sql(run.prefix)}.oban_jobs_all
          GROUP BY 1 HAVING count(*) > 1`
        assert.deepStrictEqual(dups, [])
        // Every insert ended (no hang), with a job or a typed failure (no defect).
        const summary = (t: InsertTry) =>
          `#${t.i} ${t.key} at ${t.start - run.faultAt} ms: ${JSON.stringify(t.outcome)} in ${t.millis} ms`
        assert.deepStrictEqual(tries.filter((t) => t.outcome._tag === "hung" || t.outcome._tag === "defect").map(summary), [])
        const failed = tries.filter((t) => t.outcome._tag === "failed")
        assert.isAbove(failed.length, 0, "no insert failed during the outage")
        // Failures only while the server was away (or within the pool's reconnect after it).
        assert.deepStrictEqual(
          failed.filter((t) => t.start + t.millis < run.faultAt || t.start > run.backAt + reconnectMillis).map(summary),
          []
        )
        assert.deepStrictEqual(failed.filter((t) => t.outcome._tag === "failed" && t.outcome.error !== "SqlError").map(summary), [])
        // Inserts succeed again after the outage.
        const after = tries.filter((t) => t.start > run.backAt + reconnectMillis)
        assert.isAbove(after.length, 10)
        // Every key's successful inserts returned one job, which exists (inserts are durable,
        // crash or not), and only the first of them was not a conflict.
        const byId = new Map(jobs.map((job) => [job.id, job]))
        const byKey = new Map<string, Array<InsertTry>>()
        for (const t of tries) byKey.set(t.key, [...(byKey.get(t.key) ?? []), t])
        const problems: Array<string> = []
        for (const [key, keyTries] of byKey) {
          const ok = keyTries.flatMap((t) => t.outcome._tag === "inserted" ? [t.outcome] : [])
          const ids = new Set(ok.map((o) => o.id))
          if (ids.size > 1) problems.push(`${key}: inserts returned jobs ${[...ids].join(",")}`)
          for (const id of ids) if (!byId.has(id)) problems.push(`${key}: job ${id} was returned by an insert and is gone`)
          if (ok.filter((o) => !o.conflict).length > 1) problems.push(`${key}: inserted twice without a conflict`)
        }
        assert.deepStrictEqual(problems, [])
        assert.deepStrictEqual(jobs.filter((job) => job.state !== "completed").map((j) => [j.id, j.state]), [])
        const extra = yield* assertRunsAllowed(run, fault, jobs)
        report(
          `unique/${fault}: ${tries.length} inserts, ${failed.length} failed (max ${Math.max(...failed.map((t) => t.millis))} ms), ` +
            `${jobs.length} jobs, ${extra} extra performs`
        )
      })
  })
}

// Only the crash: a clean restart fails the same inserts the same way, and forgets nothing.
describe("unique jobs inserted while the server is away", () => {
  it.live("server crashes: inserts fail typed, then succeed; no duplicate", () => uniqueRun("crash"), 90_000)
})
