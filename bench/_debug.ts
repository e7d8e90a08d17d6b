import { Deferred, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { startDatabase } from "../support/database.ts"
import { clock, completedCount, insertNoopJobs, pgLayer, startNode, withSchema } from "./common.ts"
import { makeNoop } from "./workers.ts"

const limit = Number(process.argv[2] ?? 50)
const prog = (url: string) => Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* insertNoopJobs(20000, 1000)
  let total = 0
  const allRan = yield* Deferred.make<void>()
  const worker = makeNoop(() => Effect.suspend(() => { total++; return total === 20000 ? Effect.asVoid(Deferred.succeed(allRan, undefined)) : Effect.void }))
  const start = yield* clock
  const node = yield* startNode({ prefix: "dbg", queues: { default: limit }, workers: [worker] })
  let last = -1
  while (true) {
    const c = yield* completedCount("dbg")
    const t = ((yield* clock) - start).toFixed(0)
    const states = yield* sql<{state: string, n: number}>`SELECT state::text, count(*)::int AS n FROM dbg.oban_jobs GROUP BY 1`
    const act = yield* sql<{q: string, st: string, w: string | null}>`SELECT left(query, 60) AS q, state AS st, wait_event AS w FROM pg_stat_activity WHERE application_name='effect-oban-bench' AND pid <> pg_backend_pid()`
    console.log(t, "ran", total, "completed", c, JSON.stringify(states), JSON.stringify(act.filter(a => a.st !== 'idle')))
    if (c === 20000) break
    if (c === last && total === 20000) {}
    last = c
    yield* Effect.sleep("500 millis")
    if (Number(t) > 40000) break
  }
  yield* node.stop
}).pipe(Effect.scoped, (b) => withSchema("dbg", b), Effect.provide(pgLayer(url, 10)))

const db = await startDatabase({ durable: true })
try { await Effect.runPromise(prog(db.url)) } finally { await db.stop() }
