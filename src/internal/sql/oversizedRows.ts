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
 * The bytes of a job row `j` as a fetch returns it (the driver asks for binary results), near enough:
 * its large columns as sent (args and meta as text, `errors` as `jsonb` with only the latest entries,
 * as a fetch reads them; `tags` as a binary array, 4 bytes and more per element), plus room for the
 * small ones and the message's framing.
 */
const fetchedRowBytes = `octet_length(j.args::text) + COALESCE(octet_length(j.meta::text), 0)
  + COALESCE(octet_length((${latestErrors("j.errors")})::text) + 1, 0) + COALESCE(octet_length(array_send(j.tags)), 0)
  + octet_length(j.worker) + octet_length(j.queue) + 1024`

/** The jobs discarded because a fetch could not read their rows, and where the next look goes on. */
export interface OversizedRows {
  readonly discarded: ReadonlyArray<{ readonly id: number; readonly bytes: number }>
  /** The highest id this look reached in id order; 0 when it reached the queue's end (the next starts over). */
  readonly scannedTo: number
}

/**
 * Discards the available jobs of `queue` whose row is larger than `maxMessageBytes` as a fetch reads
 * it, each with a `discarded` errors entry saying so, among: the first `window` in fetch order (where a
 * queue without limits fetches from), and the next `window` in id order after `after` (a queue with
 * limits fetches from its partitions in another order; repeated looks go through the whole queue).
 * Rows another transaction holds are passed over.
 */
export const discardOversized = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: { readonly queue: string; readonly window: number; readonly after: number; readonly maxMessageBytes: number }
): Effect.Effect<OversizedRows, SqlError> =>
  sql<{ readonly id: string | null; readonly bytes: string | null; readonly scanned_to: string | null; readonly scanned: number }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    first AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state = 'available' AND queue = ${options.queue}
      ORDER BY priority, scheduled_at, id
      LIMIT ${options.window}
    ),
    onward AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state = 'available' AND queue = ${options.queue} AND id > ${options.after}
      ORDER BY id
      LIMIT ${options.window}
    ),
    next AS (
      SELECT j.id FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE j.id IN (SELECT id FROM first UNION SELECT id FROM onward) AND j.state = 'available'
      FOR UPDATE SKIP LOCKED
    ),
    sized AS (
      SELECT j.id, ${sql.literal(fetchedRowBytes)} AS bytes
      FROM ${table(sql, prefix, "oban_jobs")} AS j JOIN next ON next.id = j.id
    ),
    discarded AS (
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
    RETURNING j.id, sized.bytes
    )
    SELECT d.id::text AS id, d.bytes::text AS bytes,
           (SELECT max(id) FROM onward)::text AS scanned_to, (SELECT count(*)::int FROM onward) AS scanned
    FROM (SELECT 1) AS one LEFT JOIN discarded AS d ON true
  `.pipe(Effect.map((rows) => ({
    discarded: rows.flatMap((row) => row.id === null ? [] : [{ id: Number(row.id), bytes: Number(row.bytes) }]),
    scannedTo: rows[0] === undefined || rows[0].scanned < options.window ? 0 : Number(rows[0].scanned_to)
  })))
