/**
 * Review probe: bare completions travelling as arrays (width_bucket) match each row to its own claim and
 * attempt with ids past 2^31 and near 2^53, one id alone, claims shared by many ids, ids in random order,
 * and batches that mix bare completions with other outcomes.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import { now } from "../src/ObanClock.ts"
import { ackJobs, type AckRow } from "../src/internal/sql/acks.ts"
import { claimJobs } from "../src/internal/sql/claims.ts"
import * as Worker from "../src/Worker.ts"
import { ackOf } from "./support/acks.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("ack_edges")
const node = "edges-node"
const Noop = Worker.make("Noop", { args: Schema.Struct({}), queue: "edges", perform: () => Effect.void })

const bases = [1, 2 ** 31 - 3, 2 ** 31 + 5, 3_000_000_000, 2 ** 53 - 40]

layer(testLayer(prefix), { excludeTestServices: true })("ack edges", (it) => {
  for (const deleteCompleted of [false, true]) {
    for (const base of bases) {
      it.effect(`ids from ${base}, deleteCompleted ${deleteCompleted}`, () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient
          yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs`
          yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs_finished`
          const start = base + (deleteCompleted ? 20 : 0)
          yield* sql`SELECT setval(pg_get_serial_sequence(${`"${prefix}".oban_jobs`}, 'id'), ${start})`
          const inserted = yield* Oban.insertAll(Array.from({ length: 12 }, () => Noop.job({})))
          const ids = inserted.map((job) => job.id).sort((a, b) => a - b)
          assert.isAtLeast(ids[0]!, start)
          const claimed = yield* claimJobs(sql, prefix, yield* now(sql), ids, node)
          assert.strictEqual(claimed.length, 12)
          // Three claims, each shared by several ids, interleaved by id.
          const claims = ["c-a", "c-b", "c \"q\" {,}"]
          for (let i = 0; i < claimed.length; i++) {
            yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET attempted_by[3] = ${claims[i % 3]!} WHERE id = ${claimed[i]!.id}`
          }
          const byId = new Map(claimed.map((job) => [job.id, job]))
          const acks: Array<AckRow> = ids.map((id, i) => {
            const job = byId.get(id)!
            const claim = claims[i % 3]!
            if (i % 5 === 4) {
              return ackOf(job, "retryable", { claim, attempt: 2 + i, delay_ms: 1000, error: { attempt: 2 + i, kind: "failure", message: "x" } })
            }
            // One ack under the wrong (but existing) claim: must change nothing.
            if (i === 7) return ackOf(job, "completed", { claim: claims[(i + 1) % 3]!, attempt: 2 + i })
            return ackOf(job, "completed", { claim, attempt: 2 + i })
          })
          // Shuffle deterministically.
          const shuffled = acks.map((a, i) => [(i * 7) % 12, a] as const).sort((x, y) => x[0] - y[0]).map(([, a]) => a)
          const result = yield* Effect.flatMap(now(sql), (time) => ackJobs(sql, prefix, time, node, shuffled, { deleteCompleted }))
          assert.strictEqual(result.written.length, 11)
          const rows = yield* sql<{ id: string; state: string; attempt: number }>`
            SELECT id::text AS id, state::text AS state, attempt FROM ${sql(prefix)}.oban_jobs_all WHERE id = ANY(${`{${ids.join(",")}}`}::bigint[]) ORDER BY id`
          const got = new Map(rows.map((row) => [row.id, [row.state, row.attempt]]))
          ids.forEach((id, i) => {
            const expected = i === 7
              ? ["executing", 1]
              : i % 5 === 4
              ? ["retryable", 2 + i]
              : deleteCompleted
              ? undefined
              : ["completed", 2 + i]
            assert.deepStrictEqual(got.get(String(id)), expected, `id ${id} (${i})`)
          })
          // One bare completion alone.
          yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs`
        }).pipe(Effect.scoped))
    }
  }
})
