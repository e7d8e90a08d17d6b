/**
 * What the workflow test files share: the testing kit's layer over a fresh,
 * migrated schema; emptying the job and workflow tables; draining the default
 * queue with recursion; and the state of each step of a workflow.
 */
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { Migrations, type Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"
import { dropSchemaOnClose, pgLayer, quietLogs } from "./db.ts"

/** The testing kit (manual mode) with `workers`, on schema `prefix` migrated at start and dropped at the end. */
export const workflowTestLayer = <W extends Worker.Any>(prefix: string, workers: ReadonlyArray<W>) =>
  ObanTest.layer({ workers, prefix }).pipe(
    Layer.provideMerge(Layer.effectDiscard(Effect.gen(function*() {
      yield* dropSchemaOnClose(prefix)
      yield* Migrations.run({ prefix })
    })).pipe(Layer.provideMerge(pgLayer()))),
    Layer.provideMerge(quietLogs)
  )

export const onTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

/** Empties the jobs and the workflow tables of `prefix`. */
export const truncateWorkflows = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`TRUNCATE ${sql(prefix)}.oban_jobs, ${sql(prefix)}.oban_jobs_finished, ${sql(prefix)}.oban_workflow_deps, ${sql(prefix)}.oban_workflow_waits`
  })

export const drainDefault = ObanTest.drainQueue({ queue: "default", withRecursion: true, withScheduled: true })

/** State per step of a workflow. */
export const stepStates = (prefix: string, workflowId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ step: string; state: string }>`
      SELECT meta #>> '{workflow,step}' AS step, state::text AS state FROM ${sql(prefix)}.oban_jobs_all
      WHERE workflow_id = ${workflowId}`
    return Object.fromEntries(rows.map((row) => [row.step, row.state]))
  })
