/**
 * Pieces of SQL that several statements share.
 */
import type { SqlClient } from "effect/sql/SqlClient"
import type { Fragment } from "effect/sql/Statement"
import { channel } from "../../Config.ts"
import { heardFromSql } from "../lateness.ts"
import { latestErrors } from "./errorEntries.ts"
import { table } from "./tables.ts"

/**
 * The body of a CTE that wakes, once each, the queues of the rows of
 * `source` (a CTE name with an optional condition, e.g. `released WHERE
 * state = 'available'`). Notifications go out when the statement commits.
 */
/** The payload of a wake-up of `queue` on the `insert` channel (what `wakeQueues` builds in SQL). */
export const wakePayload = (queue: string): string => JSON.stringify({ queue })

export const wakeQueues = (sql: SqlClient, prefix: string, source: string): Fragment =>
  sql`SELECT count(pg_notify(${channel(prefix, "insert")}, json_build_object('queue', queue)::text)) AS sent
      FROM (SELECT DISTINCT queue FROM ${sql.literal(source)}) AS back`

/**
 * The conflict target of an insert with a `unique_key`: the unique index of
 * migration 0007, by its exact predicate (a row holds its key while its
 * state is in its `unique_states`, or always when that is NULL).
 */
export const uniqueKeyConflict = (sql: SqlClient, prefix: string): Fragment =>
  sql.literal(uniqueKeyConflictText(prefix))

/** `uniqueKeyConflict` as SQL text (the prefix is a validated plain identifier). */
export const uniqueKeyConflictText = (prefix: string): string =>
  `(unique_key) WHERE unique_key IS NOT NULL AND (unique_states IS NULL OR "${prefix}".oban_state_in(state, unique_states))`

/**
 * Rows for a statement that changes the jobs they name: a JSON object keyed
 * by job id (`{"<id>": <row>, ...}`, for `::jsonb`) and the ids as a
 * `bigint[]` literal. The statement finds its rows through the primary key
 * (`j.id = ANY(ids)`) and each row looks up its own entry
 * (`input -> j.id::text`, a binary search inside the jsonb value), so there is
 * no join between the rows and the table for the planner to get wrong: a join
 * to a set-returning function, with statistics taken while nothing was
 * executing, can be planned as a nested loop that compares every row with
 * every job (500 outcomes then took 100 ms instead of 15). At most one row
 * per id: a later one replaces an earlier one. `value` writes a row's entry
 * as JSON text (by default the whole row).
 */
export const keyedById = <A extends { readonly id: number }>(
  rows: ReadonlyArray<A>,
  value: (row: A) => string = JSON.stringify
): { readonly json: string; readonly ids: string } => {
  // Written out by hand: an object with numeric keys is slow to build and stringify.
  let json = "{"
  let ids = "{"
  for (let index = 0; index < rows.length; index++) {
    const row = rows[index]!
    const separator = index === 0 ? "" : ","
    json += `${separator}"${row.id}":${value(row)}`
    ids += `${separator}${row.id}`
  }
  return { json: json + "}", ids: ids + "}" }
}

/**
 * Whether the rescues at the end of a job's (aliased `j`) errors, with no other
 * entry after them (no attempt ended since), include one of a claim that had
 * not counted its attempt (`claimedAhead`; entries written before that field
 * count as such).
 */
const uncountedRescueInARow = `(SELECT COALESCE(max(e.n) FILTER (WHERE e.entry ->> 'kind' = 'rescued'
                                    AND COALESCE(e.entry ->> 'claimedAhead', 'true') = 'true'), 0)
                                > COALESCE(max(e.n) FILTER (WHERE e.entry ->> 'kind' <> 'rescued'), 0)
                              FROM jsonb_array_elements(j.errors) WITH ORDINALITY AS e(entry, n))`

/**
 * The attempt a rescue leaves a job (aliased `j`) with. A job claimed ahead of
 * its start counts its attempt only when the attempt ends, so a rescue cannot
 * tell whether it ever started; the first such rescue gives it the benefit of
 * the doubt and counts nothing. A later one with no attempt ended in between
 * (the last entry is a rescue at the same attempt: a completion or a cancel
 * writes no entry, but moves the attempt on) counts one: a job that kills every node it runs on then runs at most
 * `maxAttempts + 1` times instead of forever. A rescue of a claim that counted
 * its attempt (a job started at once) adds nothing and uses no benefit of the
 * doubt: a job rescued so, then claimed ahead on a node that dies too, keeps
 * its attempt. Never past `max_attempts` (the table's check).
 */
const rescuedAttempt = `LEAST(j.max_attempts, j.attempt + CASE WHEN j.attempted_by[4] = 'ahead'
                                   AND j.errors -> -1 ->> 'kind' = 'rescued'
                                   AND j.errors -> -1 -> 'attempt' = to_jsonb(j.attempt)
                                   AND ${uncountedRescueInARow} THEN 1 ELSE 0 END)`

/**
 * The SET clause of a rescue: an `executing` job (as `j`) goes back to
 * `available`, keeping its scheduled time (so its place in the queue, ahead
 * of jobs inserted after it, as Oban's rescue does), or to `discarded` when
 * it has used its attempts, with a `rescued` errors entry that records its
 * attempt and whether the rescued claim had left it uncounted (see `rescuedAttempt`); `why` is SQL text for the entry's message.
 * Expects "now" as `clock.now`.
 */
export const rescueSet = (sql: SqlClient, prefix: string, why: Fragment): Fragment => {
  const spent = sql.literal(`${rescuedAttempt} >= j.max_attempts`)
  return sql`SET state = (CASE WHEN ${spent} THEN 'discarded' ELSE 'available' END)::${table(sql, prefix, "oban_job_state")},
        attempt = ${sql.literal(rescuedAttempt)},
        discarded_at = CASE WHEN ${spent} THEN clock.now ELSE j.discarded_at END,
        errors = ${sql.literal(latestErrors("j.errors", 1))} || jsonb_build_array(jsonb_build_object(
          'attempt', ${sql.literal(rescuedAttempt)}, 'at', clock.now, 'kind', 'rescued', 'message', ${why},
          'claimedAhead', COALESCE(j.attempted_by[4] = 'ahead', false)
        ))`
}

/**
 * What a retry sets besides the state (the job aliased `j`, `clock` in scope): due now, one more
 * attempt if it had used them all, no finish time, and no recorded result (a completed job run again
 * showed its last run's result while it waited and ran). `Oban.retryJob` and the bulk retry share it.
 */
export const retrySet = `scheduled_at = clock.now,
          max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
          completed_at = NULL, discarded_at = NULL, cancelled_at = NULL, cancel_requested_at = NULL, result = NULL`

/**
 * Whether a cancel of the job (aliased `j`, before the change, `clock` in scope) is only requested: it
 * is executing, and is a workflow step or its producer still answers for it (not marked dead, and heard
 * from within its node's `rescueAfter`, as a rescuer judges: see `lateness.ts`). Its code still runs on its node until the interrupt arrives and its
 * finalizers end, so its row stays `executing` with `cancel_requested_at` set until the attempt ends
 * (migration 0012 then makes it `cancelled`, whoever ends it: the node, the rescuer, the reconciler).
 * Until then a retry finds it executing and leaves it (a row cancelled at once was made available by a
 * retry and ran beside the attempt still stopping), and a workflow step's dependents wait for it. A
 * job outside workflows whose producer is gone or silent that long (no node running, say) is cancelled
 * at once: there is no node to wait for, and the cancel is how an operator clears it. (A node stalled
 * that long stops claiming, and its jobs are rescued anyway.)
 */
const cancelDeferred = (prefix: string): string =>
  `j.state = 'executing' AND (j.workflow_id IS NOT NULL OR EXISTS (
     SELECT 1 FROM "${prefix}".oban_producers AS p
     WHERE p.id::text = j.attempted_by[2] AND p.dead_at IS NULL AND ${heardFromSql("clock.now")}))`

/**
 * What a cancel sets (the job aliased `j`, `clock` in scope): `cancelled` now, or, for an executing
 * job whose node is there to stop it, a cancel request (kept from the first cancel when repeated).
 * An executing job cancelled at once gets an `errors` entry saying so (its attempt may still run on
 * a stalled node; without it, nothing in its history showed that attempt was cut short).
 * `Oban.cancelJob`, the bulk cancel and the workflow cancel share it. `prefix` is a validated one.
 */
export const cancelSet = (prefix: string): string => {
  const deferred = cancelDeferred(prefix)
  return `state = (CASE WHEN ${deferred} THEN j.state ELSE 'cancelled' END),
          cancelled_at = CASE WHEN ${deferred} THEN j.cancelled_at ELSE clock.now END,
          cancel_requested_at = CASE WHEN ${deferred} THEN COALESCE(j.cancel_requested_at, clock.now)
                                     ELSE j.cancel_requested_at END,
          errors = CASE WHEN j.state = 'executing' AND NOT (${deferred})
            THEN ${latestErrors("j.errors", 1)} || jsonb_build_array(jsonb_build_object(
              'attempt', j.attempt, 'at', clock.now, 'kind', 'cancelled',
              'message', 'cancelled while executing on node ' || COALESCE(j.attempted_by[1], '(unknown)')
                || ', which no longer answers for it (gone, or silent past its rescueAfter): the attempt may still run there'))
            ELSE j.errors END`
}
