/**
 * Workflows across OS processes (test/support/workflowProcess.ts) on one
 * database: a random 1,000-job DAG on four nodes with no order violation and
 * no job started twice, timed against 1,000 independent jobs; and a node
 * killed with SIGKILL in the middle of a workflow, which completes once the
 * rescuer has run.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema, type Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Batch from "../src/Batch.ts"
import * as Config from "../src/Config.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { databaseUrl, report, testLayer, uniquePrefix } from "./support/db.ts"
import { countByState, waitFor } from "./support/node.ts"
import { awaitReady, spawnNode, stopNode } from "./support/processes.ts"

// The same name and args as the worker in workflowProcess.ts; only used to build requests here.
const Traced = Worker.make("Traced", {
  args: Schema.Struct({ n: Schema.Int, hang: Schema.optional(Schema.String) }),
  perform: () => Effect.void
})

const startNodes = (prefix: string, names: ReadonlyArray<string>, extra: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const env = { DATABASE_URL: databaseUrl(), PREFIX: prefix, ...extra }
    const nodes = yield* Effect.forEach(names, (name) => spawnNode(name, env, "workflowProcess.ts"))
    yield* Effect.forEach(nodes, (node) => awaitReady(node, 60_000), { concurrency: "unbounded" })
    return nodes
  })

const inCluster = (name: string, body: (prefix: string) => Effect.Effect<void, unknown, SqlClient | Scope.Scope>) =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(name)
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE ${sql(prefix)}.runs (
        job_id bigint NOT NULL, node text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)`
      yield* body(prefix)
    }).pipe(Effect.provide(testLayer(prefix)), Effect.provide(Config.layer({ prefix })))
  }).pipe(Effect.scoped)

/** A small seeded generator, so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

/**
 * 1,000 steps: a root fanning out to 100, a fan-in of those 100, a fan-out
 * to 200, then layers of 200 where each step waits for 1 to 3 random steps
 * of the layer before (diamonds everywhere), and a final fan-in of 97.
 */
const randomDag = (id: string, seed: number) => {
  const next = random(seed)
  let flow = Workflow.make<string>(id)
  let n = 0
  const add = (deps: ReadonlyArray<string>) => {
    const name = `s${n}`
    flow = flow.add(name, Traced.job({ n: n++ }), { deps })
    return name
  }
  const root = add([])
  const spread = Array.from({ length: 100 }, () => add([root]))
  const join = add(spread)
  let layer = Array.from({ length: 200 }, () => add([join]))
  while (n < 999) {
    const width = Math.min(200, 999 - n)
    const previous = layer
    layer = Array.from({ length: width }, () => {
      const picks = new Set<string>()
      const count = 1 + Math.floor(next() * 3)
      while (picks.size < count) picks.add(previous[Math.floor(next() * previous.length)]!)
      return add([...picks])
    })
  }
  add(layer)
  return flow
}

/** Dependencies whose dependent started before the dependency completed, and jobs started more than once. */
const violations = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [early] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n
      FROM ${sql(prefix)}.oban_workflow_deps AS e
      JOIN ${sql(prefix)}.runs AS r ON r.job_id = e.job_id
      JOIN ${sql(prefix)}.oban_jobs_all AS d ON d.id = e.dep_id
      LEFT JOIN ${sql(prefix)}.runs AS dr ON dr.job_id = e.dep_id
      WHERE d.completed_at IS NULL OR r.started_at < d.completed_at OR dr.ended_at IS NULL OR r.started_at < dr.ended_at`
    const [twice] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (SELECT job_id FROM ${sql(prefix)}.runs GROUP BY job_id HAVING count(*) > 1) AS t`
    return { early: early!.n, twice: twice!.n }
  })

const allCompleted = (prefix: string, n: number) =>
  waitFor(`${n} jobs completed`, Effect.map(countByState(prefix), (c) => c["completed"] === n), "60 seconds")

describe("workflows on OS processes", () => {
  it.live("4 nodes run a random 1,000-job DAG in order, each job once; its time next to 1,000 independent jobs is reported", () =>
    inCluster("wf_dag", (prefix) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* startNodes(prefix, ["a", "b", "c", "d"], { JOB_MS: "5", LIMIT: "10" })
        // A round times 1,000 independent jobs and then the DAG. When the first round is over 2x, a
        // second one runs and the best of each is reported, so neither a cold start (connections,
        // prepared statements, JIT) nor a burst of load from elsewhere on the machine decides it.
        const independent: Array<number> = []
        const dags: Array<number> = []
        for (const round of [1, 2]) {
          if (round === 2 && Math.min(...dags) <= 2 * Math.max(Math.min(...independent), 250)) break
          const started = Date.now()
          yield* Oban.insertAll(Array.from({ length: 1000 }, (_, n) => Traced.job({ n })))
          yield* allCompleted(prefix, 1000)
          independent.push(Date.now() - started)
          const [plainAck] = yield* sql<{ ack: number }>`
            SELECT avg(extract(epoch FROM j.completed_at - r.ended_at) * 1000)::float8 AS ack
            FROM ${sql(prefix)}.runs AS r JOIN ${sql(prefix)}.oban_jobs_all AS j ON j.id = r.job_id`
          report(`independent round ${round}: mean perform end -> ack ${plainAck!.ack.toFixed(1)} ms`)
          yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.runs, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits`

          const dagStarted = Date.now()
          yield* Oban.insertWorkflow(randomDag(`dag-${round}`, 41 + round))
          const insertMillis = Date.now() - dagStarted
          yield* allCompleted(prefix, 1000)
          dags.push(Date.now() - dagStarted)
          const [edges] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_workflow_deps`
          const [nodes] = yield* sql<{ n: number }>`SELECT count(DISTINCT node)::int AS n FROM ${sql(prefix)}.runs`
          const [hops] = yield* sql<{ ack: number; release: number }>`
            WITH per_job AS (
              SELECT r.job_id, min(r.started_at) AS started_at, max(d.completed_at) AS deps_done
              FROM ${sql(prefix)}.runs AS r
              JOIN ${sql(prefix)}.oban_workflow_deps AS e ON e.job_id = r.job_id
              JOIN ${sql(prefix)}.oban_jobs_all AS d ON d.id = e.dep_id
              GROUP BY r.job_id
            )
            SELECT (SELECT avg(extract(epoch FROM j.completed_at - r.ended_at) * 1000)::float8
                    FROM ${sql(prefix)}.runs AS r JOIN ${sql(prefix)}.oban_jobs_all AS j ON j.id = r.job_id) AS ack,
                   (SELECT avg(extract(epoch FROM started_at - deps_done) * 1000)::float8 FROM per_job) AS release`
          report(`workflow DAG round ${round}: 1,000 jobs, ${edges!.n} edges on ${nodes!.n} nodes in ${dags[round - 1]} ms; ` +
            `1,000 independent jobs in ${independent[round - 1]} ms; mean perform end -> ack ${hops!.ack.toFixed(1)} ms, ` +
            `last dependency's ack -> dependent's start ${hops!.release.toFixed(1)} ms; insert ${insertMillis} ms`)
          assert.deepStrictEqual(yield* violations(prefix), { early: 0, twice: 0 })
          assert.isAbove(edges!.n, 1200)
          assert.strictEqual(nodes!.n, 4)
          yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.runs, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits`
        }
        const dagMillis = Math.min(...dags)
        const independentMillis = Math.min(...independent)
        // The target is 2x. Speed claims are measured (this report line, OBAN_TEST_REPORT=1), not
        // asserted on wall time: on the shared 2-core CI machine the ratio ranged from 0.8x to 4.6x
        // (issue #11 keeps it open). What is asserted above is the order and each job once.
        report(`workflow DAG vs independent (best of rounds): ${dagMillis} / ${independentMillis} ms = ` +
          `${(dagMillis / independentMillis).toFixed(2)}x (rounds: DAG ${dags} ms, independent ${independent} ms)`)

      })), 60_000)

  it.live("a batch of 500 on 4 nodes: each callback runs exactly once, after all its jobs", () =>
    inCluster("wf_batch", (prefix) =>
      Effect.gen(function*() {
        // Its last jobs finish on different nodes at about the same moment; each callback still starts
        // exactly once, after every job of the batch completed.
        const sql = yield* SqlClient
        yield* startNodes(prefix, ["a", "b", "c", "d"], { JOB_MS: "5", LIMIT: "10" })
        const batch = yield* Batch.insert(
          Batch.make("batch").add(...Array.from({ length: 500 }, (_, n) => Traced.job({ n })))
            .onCompleted(Traced.job({ n: -1 }))
            .onFailure(Traced.job({ n: -2 }))
            .onFinished(Traced.job({ n: -3 }))
        )
        yield* waitFor("the batch settled", Effect.map(countByState(prefix), (c) => c["completed"] === 502 && c["cancelled"] === 1), "60 seconds")
        assert.deepStrictEqual(yield* violations(prefix), { early: 0, twice: 0 })
        const callbackRuns = yield* sql<{ job_id: string; n: number }>`
          SELECT job_id::text, count(*)::int AS n FROM ${sql(prefix)}.runs
          WHERE job_id IN (${batch.callbacks.completed!.id}, ${batch.callbacks.failure!.id}, ${batch.callbacks.finished!.id})
          GROUP BY job_id ORDER BY job_id`
        assert.deepStrictEqual(
          callbackRuns.map((row) => [Number(row.job_id), row.n]),
          [[batch.callbacks.completed!.id, 1], [batch.callbacks.finished!.id, 1]]
        )
      })), 60_000)

  it.live("a node killed with SIGKILL in the middle of a workflow: it completes once the rescuer has run", () =>
    inCluster("wf_kill", (prefix) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const rescue = { HEARTBEAT_MS: "300", RESCUE_AFTER_MS: "2000", RESCUE_INTERVAL_MS: "500", LEASE_TTL_MS: "2000", LEASE_RENEW_MS: "500" }
        const [victim] = yield* startNodes(prefix, ["victim"], rescue)
        // "b" hangs on the victim only; it runs after "a" there, and everything after it waits for it.
        const flow = Workflow.make("killed")
          .add("a", Traced.job({ n: 0 }))
          .add("b", Traced.job({ n: 1, hang: "victim" }), { deps: ["a"] })
          .add("c", Traced.job({ n: 2 }), { deps: ["b"] })
          .add("d", Traced.job({ n: 3 }), { deps: ["b"] })
          .add("e", Traced.job({ n: 4 }), { deps: ["c", "d"] })
        const inserted = yield* Oban.insertWorkflow(flow)
        yield* waitFor("b running on the victim", Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.runs WHERE job_id = ${inserted.jobs.b.id}`,
          ([row]) => row!.n === 1
        ))
        yield* stopNode(victim!, "SIGKILL")
        const states = yield* countByState(prefix)
        assert.deepStrictEqual(states, { completed: 1, executing: 1, suspended: 3 })
        yield* startNodes(prefix, ["survivor"], rescue)
        yield* allCompleted(prefix, 5)
        const [b] = yield* sql<{ errors: ReadonlyArray<{ kind: string }> }>`
          SELECT errors FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${inserted.jobs.b.id}`
        assert.strictEqual(b!.errors[0]!.kind, "rescued")
        const runs = yield* sql<{ job_id: string; n: number }>`
          SELECT job_id::text, count(*)::int AS n FROM ${sql(prefix)}.runs GROUP BY job_id`
        // b ran twice (once on the victim, never finished), the rest once.
        assert.deepStrictEqual(
          Object.fromEntries(runs.map((row) => [row.job_id, row.n])),
          Object.fromEntries(Object.values(inserted.jobs).map((job) => [String(job.id), job.id === inserted.jobs.b.id ? 2 : 1]))
        )
      })), 60_000)

  it.live("a chain of 200 jobs inserted from 4 processes at once: strictly sequential per key, parallel across keys", () =>
    inCluster("wf_chain", (prefix) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* sql`CREATE TABLE ${sql(prefix)}.go (at timestamptz)`
        const keys = ["k1", "k2", "k3", "k4", "k5"]
        yield* startNodes(prefix, ["a", "b", "c", "d"], { JOB_MS: "5", LIMIT: "10", CHAIN_KEYS: keys.join(","), CHAIN_EACH: "10" })
        const started = Date.now()
        yield* sql`INSERT INTO ${sql(prefix)}.go VALUES (now())`
        yield* allCompleted(prefix, 200)
        report(`chains: 5 keys x 40 jobs, inserted from 4 processes, all ran in ${Date.now() - started} ms`)
        const rows = yield* sql<{ key: string; id: string; started: number; ended: number; completed: number; inserted_by: number }>`
          SELECT j.workflow_id AS key, j.id::text AS id,
                 extract(epoch FROM r.started_at) * 1000 AS started, extract(epoch FROM r.ended_at) * 1000 AS ended,
                 extract(epoch FROM j.completed_at) * 1000 AS completed, (j.meta #>> '{workflow,step}')::int AS inserted_by
          FROM ${sql(prefix)}.oban_jobs_all AS j JOIN ${sql(prefix)}.runs AS r ON r.job_id = j.id
          ORDER BY j.workflow_id, j.id`
        assert.strictEqual(rows.length, 200)
        assert.deepStrictEqual(yield* violations(prefix), { early: 0, twice: 0 })
        for (const key of keys) {
          const chain = rows.filter((row) => row.key === `chain:${key}`)
          assert.strictEqual(chain.length, 40)
          // Insertion (id) order is run order, each after the previous completed, steps numbered 1..40.
          chain.forEach((row, index) => {
            assert.strictEqual(Number(row.inserted_by), index + 1)
            if (index > 0) {
              const previous = chain[index - 1]!
              assert.isAtLeast(Number(row.started), Number(previous.ended), `${key}: job ${row.id} started before ${previous.id} ended`)
              assert.isAtLeast(Number(row.started), Number(previous.completed))
            }
          })
        }
        // Parallel across keys: some job of one chain ran while a job of another chain was running.
        const overlapping = rows.some((a) =>
          rows.some((b) => a.key !== b.key && Number(a.started) < Number(b.ended) && Number(b.started) < Number(a.ended))
        )
        assert.isTrue(overlapping)
        const [nodes] = yield* sql<{ n: number }>`SELECT count(DISTINCT node)::int AS n FROM ${sql(prefix)}.runs`
        assert.isAbove(nodes!.n, 1)
      })), 60_000)
})
