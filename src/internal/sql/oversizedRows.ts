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
  /**
   * Where the next look in id order starts: after the highest id this one reached; before an oversized
   * row it could not discard now (locked, or executing under the failed fetch's claim until its
   * release), so it is looked at again; 0 when it reached the queue's end (the next starts over).
   */
  readonly scannedTo: number
  /** Whether an oversized row was left for a later look (locked, or executing). */
  readonly heldBack: boolean
}

/**
 * Discards the available jobs of `queue` whose row is larger than `maxMessageBytes` as a fetch reads
 * it, each with a `discarded` errors entry saying so, among: the first `window` in fetch order (where a
 * queue without limits fetches from), and the next `onward` in id order after `after` (a queue with
 * limits fetches from its partitions in another order; repeated looks go through the whole queue).
 * Rows are sized without a lock; only the oversized ones are locked, and those another transaction
 * holds are passed over.
 */
export const discardOversized = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  options: {
    readonly queue: string
    readonly window: number
    readonly onward: number
    readonly after: number
    readonly maxMessageBytes: number
  }
): Effect.Effect<OversizedRows, SqlError> =>
  sql<{
    readonly id: string | null
    readonly bytes: string | null
    readonly onward_max: string | null
    readonly scanned: number
    readonly held_back: string | null
  }>`
    WITH clock AS (${clockWithSetting(sql, now)}),
    first AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state = 'available' AND queue = ${options.queue}
      ORDER BY priority, scheduled_at, id
      LIMIT ${options.window}
    ),
    onward AS (
      SELECT id FROM ${table(sql, prefix, "oban_jobs")}
      WHERE state IN ('available', 'executing') AND queue = ${options.queue} AND id > ${options.after}
      ORDER BY id
      LIMIT ${options.onward}
    ),
    sized AS (
      SELECT j.id, ${sql.literal(fetchedRowBytes)} AS bytes
      FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE j.id IN (SELECT id FROM first UNION SELECT id FROM onward)
    ),
    oversized AS (SELECT id, bytes FROM sized WHERE bytes > ${options.maxMessageBytes}),
    locked AS (
      SELECT j.id FROM ${table(sql, prefix, "oban_jobs")} AS j
      WHERE j.id IN (SELECT id FROM oversized) AND j.state = 'available'
      FOR UPDATE SKIP LOCKED
    ),
    discarded AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j
      SET state = 'discarded', discarded_at = clock.now,
        errors = ${sql.literal(latestErrors("j.errors", 1))} || jsonb_build_array(jsonb_build_object(
          'attempt', j.attempt, 'at', clock.now, 'kind', 'discarded',
          'message', 'not run: its row is ' || round(oversized.bytes / 1048576.0, 1)::text
            || ' MiB as a fetch reads it, more than the driver reads in one message ('
            || round(${options.maxMessageBytes} / 1048576.0, 1)::text
            || ' MiB, the client''s maxMessageSize): every fetch of its queue failed on it'))
      FROM oversized, clock
      WHERE j.id = oversized.id AND j.id IN (SELECT id FROM locked)
      RETURNING j.id, oversized.bytes
    ),
    look AS (
      SELECT (SELECT max(id) FROM onward) AS onward_max, (SELECT count(*)::int FROM onward) AS scanned,
             (SELECT min(o.id) FROM oversized AS o
              WHERE o.id IN (SELECT id FROM onward) AND o.id NOT IN (SELECT id FROM discarded)) AS held_back
    )
    SELECT d.id::text AS id, d.bytes::text AS bytes, look.onward_max::text AS onward_max, look.scanned,
           look.held_back::text AS held_back
    FROM look LEFT JOIN discarded AS d ON true
  `.pipe(Effect.map((rows) => {
    const look = rows[0]
    const heldBack = look?.held_back !== null && look?.held_back !== undefined
    return {
      discarded: rows.flatMap((row) => row.id === null ? [] : [{ id: Number(row.id), bytes: Number(row.bytes) }]),
      scannedTo: look === undefined ? 0 : heldBack ? Number(look.held_back) - 1
        : look.scanned < options.onward ? 0 : Number(look.onward_max),
      heldBack
    }
  }))
