/**
 * One node in its own OS process (test/support/nodeProcess.ts) that records each run of a job in
 * `<prefix>.runs`, and the jobs' rows with their runs counted, for the tests that stop it.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { databaseUrl } from "./db.ts"
import { awaitReady, spawnNode } from "./processes.ts"

export interface Row {
  readonly id: number
  readonly state: string
  readonly attempt: number
  readonly kinds: ReadonlyArray<string>
  readonly runs: number
}

export const rows = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql<Row>`
      SELECT j.id::int AS id, j.state::text AS state, j.attempt,
             ARRAY(SELECT e->>'kind' FROM jsonb_array_elements(j.errors) e) AS kinds,
             (SELECT count(*)::int FROM ${sql(prefix)}.runs r WHERE r.job_id = j.id) AS runs
      FROM ${sql(prefix)}.oban_jobs_all j ORDER BY j.id`
  })

/** Starts one node (queue `default`, limit 10 unless `env` says otherwise) that records its runs, once it is ready. */
export const startDeployNode = (prefix: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE ${sql(prefix)}.runs (job_id bigint NOT NULL, node text NOT NULL, at timestamptz DEFAULT clock_timestamp())`
    const node = yield* spawnNode("deploy", {
      DATABASE_URL: databaseUrl(),
      PREFIX: prefix,
      QUEUES: JSON.stringify({ default: 10 }),
      ...env
    })
    yield* awaitReady(node)
    return node
  })

