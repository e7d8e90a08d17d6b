/**
 * The public face of effect-oban.
 *
 * `insert` and `insertAll` need only `SqlClient`: they run on the caller's
 * connection, so inside `sql.withTransaction` the job exists exactly when the
 * transaction commits, and a rollback leaves no job and sends no notification.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import type { InvalidJobError } from "./Errors.ts"
import type { Job } from "./Job.ts"
import { now } from "./ObanClock.ts"
import { encodeRequest } from "./internal/encodeRequest.ts"
import { insertJobs } from "./internal/sql/jobs.ts"
import type { JobRequest } from "./Worker.ts"

/**
 * Inserts one job. It is `available` (and wakes its queue) when due now,
 * else `scheduled`. Fails with `InvalidJobError`, writing nothing, when the
 * request is bad.
 *
 * @since 0.1.0
 */
export const insert = <A>(
  request: JobRequest<A>
): Effect.Effect<Job, InvalidJobError | SqlError, SqlClient> =>
  Effect.map(insertAll([request]), (jobs) => jobs[0]!)

/**
 * Inserts any number of jobs in one statement, with one notification per
 * queue that received due jobs. One bad request fails the whole call with an
 * `InvalidJobError` naming its index, and nothing is written. Returns the jobs
 * in the order of the requests.
 *
 * @since 0.1.0
 */
export const insertAll = (
  requests: Iterable<JobRequest>
): Effect.Effect<ReadonlyArray<Job>, InvalidJobError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const list = Array.from(requests)
    if (list.length === 0) return []
    const settings = yield* Settings
    const single = list.length === 1
    const rows: Array<string> = new Array(list.length)
    for (let index = 0; index < list.length; index++) {
      rows[index] = yield* encodeRequest(list[index]!, index, settings, single ? undefined : index)
    }
    const sql = yield* SqlClient
    return yield* insertJobs(sql, settings.prefix, yield* now(sql), `[${rows.join(",")}]`)
  })
