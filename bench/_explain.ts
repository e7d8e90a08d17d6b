import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { startDatabase } from "../support/database.ts"
import { insertNoopJobs, pgLayer, withSchema } from "./common.ts"

const n = Number(process.argv[2] ?? 5000)
const prog = (url: string) => Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* insertNoopJobs(20000, 1000)
  yield* sql.unsafe(`UPDATE dbg.oban_jobs SET state='executing', attempt=1, attempted_by=ARRAY['n','p'] WHERE id <= ${n}`)
  const acks = Array.from({ length: n }, (_, i) => ({ id: i + 1, attempt: 1, state: "completed", delay_ms: null, give_back: false, error: null }))
  const variant = process.argv[3] ?? "plain"
  if (variant === "analyze") yield* sql.unsafe(`ANALYZE dbg.oban_jobs`)
  const mat = variant === "materialized" ? "MATERIALIZED" : ""
  const cond = variant === "pkfirst" ? "j.id = a.id AND j.state::text = 'executing'" : "j.id = a.id AND j.state = 'executing'"
  const rows = yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, COSTS OFF) 
    WITH clock AS (SELECT now() AS now),
    acks AS ${mat} (SELECT * FROM jsonb_to_recordset($1::jsonb) AS a(id bigint, attempt smallint, state text, delay_ms double precision, give_back boolean, error jsonb))
    UPDATE dbg.oban_jobs AS j SET state = a.state::dbg.oban_job_state, completed_at = clock.now
    FROM acks AS a, clock
    WHERE ${cond} AND j.attempt = a.attempt AND j.attempted_by[1] = 'n'
    RETURNING j.id`, [JSON.stringify(acks)])
  for (const r of rows) console.log(r["QUERY PLAN"])
}).pipe((b) => withSchema("dbg", b), Effect.provide(pgLayer(url, 3)))

const db = await startDatabase({ durable: true })
try { await Effect.runPromise(prog(db.url)) } finally { await db.stop() }
