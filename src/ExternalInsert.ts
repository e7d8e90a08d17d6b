/**
 * Inserting jobs inside a transaction that effect-oban does not own: one
 * opened with node-postgres, Kysely, Drizzle, Prisma or any other driver.
 *
 * `prepare` / `prepareAll` check and encode job requests exactly as
 * `Oban.insert` / `Oban.insertAll` do (the same `InvalidJobError`, with the
 * same `field` and `index`) and return plain data, with no connection
 * needed:
 *
 * - `insert`: one SQL statement (`text` with `$1`-style placeholders, and
 *   `values`, all strings) to run on the caller's connection inside its
 *   transaction. It stamps the jobs with the transaction's `now()` and
 *   changes no setting of the session or transaction.
 * - `wake`: the notification that tells running nodes the jobs' queues have
 *   work, to send once the transaction has committed (on any connection,
 *   outside a transaction). Without it the jobs still run, at the nodes'
 *   next poll.
 * - `jobs(rows)`: the jobs the insert wrote (or, for unique requests,
 *   matched), in request order, from the rows it returned.
 *
 * See docs/external-transactions.md.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { type InvalidConfigError, type InvalidJobError, type InvalidPrefixError } from "./Errors.ts"
import { type Overrides, resolve } from "./Config.ts"
import { checkKeys } from "./internal/optionKeys.ts"
import type { Inserted } from "./Oban.ts"
import { requestArray } from "./internal/encodeRequest.ts"
import { prepareExternal, type ResultRow } from "./internal/prepareExternal.ts"
import type { JobRequest } from "./Worker.ts"

/**
 * One SQL statement: `text` with `$1`, `$2`, ... placeholders and their
 * `values`, as `client.query(text, values)` of node-postgres (and most
 * drivers) take them.
 *
 * @since 0.1.0
 */
export interface Statement {
  readonly text: string
  readonly values: ReadonlyArray<string>
}

/**
 * A row the insert statement returns: the job as JSON text, in the column
 * `oban_job`. Pass the rows as the driver returned them to `jobs`.
 *
 * @since 0.1.0
 */
export type Row = ResultRow

/**
 * A checked insert, ready to run on a connection effect-oban does not own.
 *
 * @since 0.1.0
 */
export interface Prepared {
  /** The insert, to run inside the caller's transaction. */
  readonly insert: Statement
  /**
   * The wake-up of the queues that receive due jobs, to send after the
   * transaction committed; `undefined` when no job is due now. Sending it
   * inside the transaction works too (PostgreSQL delivers it on commit) but
   * serialises concurrent committing transactions on a global lock.
   */
  readonly wake: Statement | undefined
  /**
   * The jobs of the insert's rows, in request order. Args are as stored (the
   * worker schema's encoded form). Throws a `TypeError` when the rows are
   * not all the insert statement returned.
   */
  readonly jobs: (rows: ReadonlyArray<Row>) => ReadonlyArray<Inserted>
}

/**
 * Options of `prepare`: the schema prefix and args limit, else those of
 * `ObanConfig.Settings` (see `ObanConfig.resolve`).
 *
 * @since 0.1.0
 */
export type Options = Overrides

/** The settings of `options`, refusing an option `prepare` does not know (`prefx` would insert into `public`). */
const settingsOf = (options: Options) => Effect.andThen(checkKeys("", options, ["prefix", "maxArgsBytes"]), resolve(options))

/**
 * Prepares the insert of one job: fails with `InvalidJobError` (no `index`)
 * where `Oban.insert` would. For code outside Effect,
 * `Effect.runSync(ExternalInsert.prepare(request))` returns the statements or
 * throws the error.
 *
 * @since 0.1.0
 */
export const prepare = (
  request: JobRequest,
  options: Options = {}
): Effect.Effect<Prepared, InvalidJobError | InvalidPrefixError | InvalidConfigError> =>
  Effect.flatMap(settingsOf(options), (settings) => prepareExternal([request], settings, false))

/**
 * Prepares the insert of any number of jobs in one statement, all or
 * nothing: fails with `InvalidJobError` naming the index of the first bad
 * request where `Oban.insertAll` would. Unique requests work as in
 * `Oban.insertAll`, with one limit: all unique requests of one call must
 * replace the same fields (else `InvalidJobError` on `unique`).
 *
 * @since 0.1.0
 */
export const prepareAll = (
  requests: Iterable<JobRequest>,
  options: Options = {}
): Effect.Effect<Prepared, InvalidJobError | InvalidPrefixError | InvalidConfigError> =>
  Effect.flatMap(
    requestArray("prepareAll", requests),
    (array) => Effect.flatMap(settingsOf(options), (settings) => prepareExternal(array, settings, true))
  )
