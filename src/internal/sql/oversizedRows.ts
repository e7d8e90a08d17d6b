/**
 * Jobs whose row no fetch can read: the driver reads a reply's row as one
 * message of at most `maxMessageSize` (16 MiB unless the client sets it), and
 * a fetch that claims a larger row fails whole, so its queue ran nothing
 * again. The library's own limits keep rows far below that (`maxArgsBytes`,
 * the `errors` bound); such a row was written by plain SQL. After a fetch
 * failed for that reason, its producer discards them, saying why.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { latestErrors } from "./errorEntries.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"

/**
 * The bytes of a job row `j` as a fetch returns it, near enough: its large columns as text (the latest
 * `errors` only, as a fetch reads them), plus room for the small ones and the message's framing.
 */
const fetchedRowBytes = `octet_length(j.args::text) + COALESCE(octet_length(j.meta::text), 0)
  + COALESCE(octet_length((${latestErrors("j.errors")})::text), 0) + COALESCE(octet_length(j.tags::text), 0)
  + octet_length(j.worker) + octet_length(j.queue) + 1024`

/** A job discarded because a fetch could not read its row. */
export interface OversizedRow {
  readonly id: number
  readonly bytes: number
}

/**
 * Discards the jobs among the first `window` available ones of `queue`, in fetch order, whose row is
 * larger than `maxMessageBytes` as a fetch reads it, each with a `discarded` errors entry saying so.
 * Rows another transaction holds are passed over. Returns the jobs discarded.
 */
export const discardOversized = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: { readonly queue: string; readonly window: number; readonly maxMessageBytes: number }
): Effect.Effect<ReadonlyArray<OversizedRow>, SqlError> =>
  sql<{ readonly id: string; readonly bytes: string }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    next AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state = 'available' AND queue = ${options.queue}
      ORDER BY priority, scheduled_at, id
      LIMIT ${options.window}
      FOR UPDATE SKIP LOCKED
    ),
    sized AS (
      SELECT j.id, ${sql.literal(fetchedRowBytes)} AS bytes
      FROM ${table(sql, prefix, "oban_jobs")} AS j JOIN next ON next.id = j.id
    )
    UPDATE ${table(sql, prefix, "oban_jobs")} AS j
    SET state = 'discarded', discarded_at = clock.now,
        errors = ${sql.literal(latestErrors("j.errors", 1))} || jsonb_build_array(jsonb_build_object(
          'attempt', j.attempt, 'at', clock.now, 'kind', 'discarded',
          'message', 'not run: its row is ' || round(sized.bytes / 1048576.0, 1)::text
            || ' MiB as a fetch reads it, more than the driver reads in one message ('
            || round(${options.maxMessageBytes} / 1048576.0, 1)::text
            || ' MiB, the client''s maxMessageSize): every fetch of its queue failed on it'))
    FROM sized, clock
    WHERE j.id = sized.id AND sized.bytes > ${options.maxMessageBytes}
    RETURNING j.id::text AS id, sized.bytes::text AS bytes
  `.pipe(Effect.map((rows) => rows.map((row) => ({ id: Number(row.id), bytes: Number(row.bytes) }))))
