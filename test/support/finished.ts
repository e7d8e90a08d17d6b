/** Where a job's row is since migration 0016: in `oban_jobs`, in `oban_jobs_finished`, or gone. */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"

/** `hot` (oban_jobs), `finished` (oban_jobs_finished) or `none`; fails the test when the job is in both. */
export const whereIs = (prefix: string, id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ hot: number; finished: number }>`
      SELECT (SELECT count(*) FROM ${sql(prefix)}.oban_jobs WHERE id = ${id})::int AS hot,
             (SELECT count(*) FROM ${sql(prefix)}.oban_jobs_finished WHERE id = ${id})::int AS finished`
    assert.isFalse(row!.hot > 0 && row!.finished > 0, `job ${id} is in both tables`)
    return row!.hot > 0 ? "hot" : row!.finished > 0 ? "finished" : "none"
  })
