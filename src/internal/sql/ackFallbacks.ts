/**
 * The outcome statements around the acker's batch (see `acks.ts`): the
 * lookup of acks that matched no row, and the minimal failure written for an
 * outcome the database refuses.
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { AckRow, StaleAck } from "./acks.ts"
import { latestErrors } from "./errorEntries.ts"
import { textArrayLiteral } from "./arrayLiteral.ts"
import { table } from "./tables.ts"
import { clockWithSetting } from "./workflows.ts"

/**
 * The acks that changed nothing: what their jobs look like now (a completed
 * job may be in the finished table), for the logs. A job claimed ahead that
 * was cancelled while it ran with its row finished at once (a late
 * producer's, or by a node of an earlier build) has its attempt counted
 * here: its claim counted none, its outcome was to count it, and the outcome
 * found the row no longer executing.
 */
export const settleStaleAcks = (
  sql: SqlClient,
  prefix: string,
  node: string,
  missed: ReadonlyArray<AckRow>
): Effect.Effect<ReadonlyArray<StaleAck>, SqlError> =>
  sql<{
    readonly id: bigint | number
    readonly state: string | null
    readonly current_claim: string | null
    readonly rescued: boolean | null
  }>`
    WITH given AS MATERIALIZED (
      SELECT * FROM unnest(
        ${`{${missed.map((ack) => ack.id).join(",")}}`}::bigint[],
        ${textArrayLiteral(missed.map((ack) => ack.claim))}::text[],
        ${`{${missed.map((ack) => ack.attempt - (ack.give_back ? 1 : 0)).join(",")}}`}::smallint[]
      ) AS a(id, claim, attempt)
    ),
    uncounted AS MATERIALIZED (
      SELECT j.id, given.attempt FROM ${table(sql, prefix, "oban_jobs")} AS j JOIN given ON j.id = given.id
      WHERE j.state = 'cancelled' AND j.attempted_by[1] = ${node}
        AND j.attempted_by[3] = given.claim AND j.attempted_by[4] = 'ahead' AND j.attempt < given.attempt
      -- A row another transaction holds (a retryJob or deleteJob of it) is passed over: this statement
      -- never waits, and the outcomes behind it on this node with it.
      FOR UPDATE OF j SKIP LOCKED
    ),
    counted AS (
      UPDATE ${table(sql, prefix, "oban_jobs")} AS j SET attempt = LEAST(j.max_attempts, uncounted.attempt)
      FROM uncounted
      WHERE j.id = uncounted.id
      RETURNING j.id
    )
    SELECT a.id, j.state::text AS state, j.attempted_by[3] AS current_claim, j.errors -> -1 ->> 'kind' = 'rescued' AS rescued
    FROM given AS a
    LEFT JOIN ${table(sql, prefix, "oban_jobs_all")} AS j ON j.id = a.id
  `.pipe(Effect.map((rows) => {
    const now = new Map(rows.map((row) => [Number(row.id), row]))
    return missed.map((ack) => ({
      id: ack.id,
      claim: ack.claim,
      state: now.get(ack.id)?.state ?? null,
      currentClaim: now.get(ack.id)?.current_claim ?? null,
      rescued: now.get(ack.id)?.rescued === true
    }))
  }))

/**
 * The last resort for an outcome the database refuses: the attempt is
 * recorded as a failure (`retryable` after `delayMillis` while attempts
 * remain, else `discarded`) with an `errors` entry of kind `defect` holding
 * only `message`, or, when `withError` is false, with no entry at all. Same
 * matching as `ackJobs`. Returns whether the job changed.
 */
export const failAck = (
  sql: SqlClient,
  prefix: string,
  now: Fragment,
  node: string,
  ack: {
    readonly id: number
    readonly claim: string
    /** The attempt that ran (a job claimed ahead counts its attempt only from its start). */
    readonly attempt: number
    readonly delayMillis: number
    readonly message: string
    readonly withError: boolean
  }
): Effect.Effect<boolean, SqlError> =>
  sql`
    WITH clock AS (${clockWithSetting(sql, now)})
    UPDATE ${table(sql, prefix, "oban_jobs")} AS j
    SET state = CASE WHEN ${ack.attempt} >= j.max_attempts THEN 'discarded' ELSE 'retryable' END::${
    table(sql, prefix, "oban_job_state")
  },
        attempt = ${ack.attempt},
        scheduled_at = clock.now + ${ack.delayMillis} * interval '1 millisecond',
        discarded_at = CASE WHEN ${ack.attempt} >= j.max_attempts THEN clock.now ELSE j.discarded_at END,
        errors = CASE WHEN ${ack.withError} THEN ${sql.literal(latestErrors("j.errors", 1))} || jsonb_build_array(jsonb_build_object(
                   'attempt', ${ack.attempt}::int, 'at', clock.now, 'kind', 'defect', 'message', ${ack.message}::text))
                 ELSE j.errors END
    FROM clock
    WHERE j.id = ${ack.id} AND j.state = 'executing' AND j.attempted_by[3] = ${ack.claim} AND j.attempted_by[1] = ${node}
    RETURNING j.id
  `.pipe(Effect.map((rows) => rows.length > 0))

