/**
 * Finding and managing jobs in bulk: a filtered, sorted list with an opaque
 * keyset cursor, counts per queue and state, and cancel, retry, delete and
 * reschedule of every job that matches a filter. For operators' tools (the
 * `effect-oban` CLI, dashboards) and scripts.
 *
 * Like `Oban.getJob`, these need only `SqlClient` (and the prefix of
 * `ObanConfig.Settings`): no node has to run. A running node offers the same
 * functions on its `Oban` service, where cancelling also stops the jobs it
 * runs itself at once.
 *
 * ```ts
 * const page = yield* Jobs.list({ filter: { queues: ["mailers"], states: ["retryable"] }, limit: 100 })
 * const { changed } = yield* Jobs.retry({ queues: ["mailers"], states: ["discarded"] })
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidFilterError, type MigrationError } from "./Errors.ts"
import { type Job, JobState } from "./Job.ts"
import { type BulkOptions, bulk } from "./internal/bulkAction.ts"
import type { BulkOutcome } from "./internal/bulk.ts"
import { countJobs, liveStates, noJobs, restStates } from "./internal/counts.ts"
import { decodeCursor, encodeCursor } from "./internal/cursor.ts"
import { Filter as FilterSchema, filterCondition, validateFilter } from "./internal/jobFilter.ts"
import { withPrefix } from "./internal/notMigrated.ts"
import { listJobs, type SortColumn } from "./internal/sql/jobQueries.ts"

/**
 * Which jobs: any mix of ids, queues, states, workers, tags (all of them, or
 * any with `tagsMatch: "any"`), args and meta containment (jsonb `@>`: the
 * job's object holds every key and value given, nested objects likewise; JSON
 * values only, so an `undefined` is refused rather than dropped) and
 * time ranges (`after` inclusive, `before` exclusive). Parts combine with AND;
 * `{}` matches every job (a bulk action needs `{ all: true }` for that). An empty list matches no job (`tags: []` with
 * `tagsMatch: "any"` too), except `tags: []` with the default "all", which
 * every job satisfies. Checked with this schema: bad input fails with
 * `InvalidFilterError` before any SQL runs.
 *
 * @since 0.1.0
 */
export const Filter = FilterSchema

/**
 * @since 0.1.0
 */
export type Filter = typeof FilterSchema.Type

/**
 * The order of a list: by id (the default, newest first), by `scheduledAt` or
 * by `insertedAt`, each with id as the tie-breaker.
 *
 * @since 0.1.0
 */
export const Sort = Schema.Struct({
  by: Schema.optional(Schema.Literals(["id", "scheduledAt", "insertedAt"])),
  order: Schema.optional(Schema.Literals(["asc", "desc"]))
})

/**
 * @since 0.1.0
 */
export type Sort = typeof Sort.Type

/**
 * @since 0.1.0
 */
export interface ListOptions {
  readonly filter?: Filter | undefined
  readonly sort?: Sort | undefined
  /** Jobs per page, 1 to 1000. Default 50. */
  readonly limit?: number | undefined
  /** The `next` of the previous page; the sort must be the same. */
  readonly cursor?: string | undefined
}

/**
 * One page of jobs. `next` is the cursor of the following page, absent on
 * the last one.
 *
 * @since 0.1.0
 */
export interface Page {
  readonly jobs: ReadonlyArray<Job>
  readonly next: string | undefined
}

const columns: Record<NonNullable<Sort["by"]>, SortColumn> = {
  id: "id",
  scheduledAt: "scheduled_at",
  insertedAt: "inserted_at"
}


const decodeSort = Schema.decodeUnknownEffect(Sort)

/**
 * A page of the jobs that match `filter`, in keyset order: following `next`
 * from page to page visits every job that matched when the walk began exactly
 * once, however many jobs are inserted meanwhile (new ones show up at the end
 * of an ascending walk). A job whose sort value changes meanwhile (a
 * `scheduledAt` moved by a retry) can move across the boundary. Sorting by id
 * walks the primary key at any table size; sorting by a timestamp reads the
 * matching jobs, so narrow the filter on large tables.
 *
 * @since 0.1.0
 */
export const list = (
  options: ListOptions = {}
): Effect.Effect<Page, InvalidFilterError | MigrationError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const filter = yield* validateFilter(options.filter ?? {})
    const sort = yield* decodeSort(options.sort ?? {}).pipe(
      Effect.mapError((error) => new InvalidFilterError({ field: "sort", message: error.message }))
    )
    const limit = options.limit ?? 50
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return yield* new InvalidFilterError({ field: "limit", message: `limit must be an integer from 1 to 1000, got ${limit}` })
    }
    const column = columns[sort.by ?? "id"]
    const descending = (sort.order ?? "desc") === "desc"
    const keyset = options.cursor === undefined ? undefined : yield* decodeCursor(options.cursor, column, descending)
    const rows = yield* withPrefix((sql, prefix) =>
      listJobs(sql, prefix, { condition: filterCondition(sql, filter), column, descending, keyset, limit: limit + 1 })
    )
    const jobs = rows.slice(0, limit)
    const last = rows.length > limit ? jobs.at(-1) : undefined
    return {
      jobs: jobs.map((row) => row.job),
      next: last === undefined ? undefined : encodeCursor(column, descending, { micros: last.micros, id: last.job.id })
    }
  })

/**
 * Jobs per queue and state. `estimated` lists the states whose numbers are
 * estimates (empty when every number is exact).
 *
 * @since 0.1.0
 */
export interface Counts {
  readonly queues: ReadonlyArray<{ readonly queue: string; readonly states: Readonly<Record<JobState, number>> }>
  readonly estimated: ReadonlyArray<JobState>
}

/**
 * @since 0.1.0
 */
export interface CountOptions {
  /** Count every state exactly, reading every finished job (slow on a large table). Default false. */
  readonly exact?: boolean | undefined
  /** Below this many rows (the planner's estimate) every state is counted exactly. Default 100,000. */
  readonly exactBelow?: number | undefined
}

/**
 * Jobs per queue and state, cheap at millions of rows. `available`,
 * `executing`, `scheduled` and `retryable` are always exact, counted through
 * their partial indexes (their cost follows the backlog, not the table).
 * `completed`, `discarded`, `cancelled` and `suspended` are exact on a table
 * under `exactBelow` rows, else estimated from the planner's statistics (see
 * docs/cli.md#counts), unless `exact: true`.
 *
 * @since 0.1.0
 */
export const counts = (options: CountOptions = {}): Effect.Effect<Counts, MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) =>
    Effect.map(
      countJobs(sql, prefix, { exact: options.exact === true, exactBelow: options.exactBelow ?? 100_000 }),
      (raw) => {
        const byQueue = new Map<string, Record<JobState, number>>()
        for (const row of raw.rows) {
          const states = byQueue.get(row.queue) ?? noJobs()
          states[row.state as JobState] += row.count
          byQueue.set(row.queue, states)
        }
        return {
          queues: Array.from(byQueue, ([queue, states]) => ({ queue, states }))
            .sort((a, b) => a.queue.localeCompare(b.queue)),
          estimated: raw.estimated ? restStates : []
        }
      }
    )
  )

/** The states `counts` always counts exactly. @since 0.1.0 */
export const exactStates: ReadonlyArray<JobState> = liveStates

/**
 * What a bulk action did: the jobs it changed (for a cancel, how many of
 * them are running jobs whose cancel is only requested), the jobs it left
 * alone because their unique key is held by another job (retry and
 * reschedule only), and the number of batches it took.
 *
 * @since 0.1.0
 */
export type BulkResult = BulkOutcome

export type { BulkOptions }

/**
 * Cancels every unfinished job that matches `filter`. Jobs executing on any
 * node are interrupted there (a signal per job, as `Oban.cancelJob` sends);
 * such a job counts as changed, and, while its node answers for it, in
 * `requested`: it ends `cancelled` once its node has stopped it (see
 * `Oban.cancelJob`).
 *
 * @since 0.1.0
 */
export const cancel = (filter: Filter, options?: BulkOptions) => bulk({ _tag: "cancel" }, filter, options)

/**
 * Makes every matching job that is neither executing, available nor
 * suspended available now, allowing one more attempt to jobs that used them
 * all (as `Oban.retryJob`). A workflow step whose dependencies have not all
 * completed goes back to `suspended` instead, to run after them. Jobs whose
 * unique key another job holds are skipped and reported in `skipped`, with
 * a reason naming that job.
 *
 * @since 0.1.0
 */
export const retry = (filter: Filter, options?: BulkOptions) => bulk({ _tag: "retry" }, filter, options)

/**
 * Deletes every matching job that is not executing.
 *
 * @since 0.1.0
 */
export const remove = (filter: Filter, options?: BulkOptions) => bulk({ _tag: "delete" }, filter, options)

/**
 * Moves every matching available, scheduled or retryable job to run at `at`
 * (scheduled when `at` is in the future, else available now).
 *
 * @since 0.1.0
 */
export const reschedule = (filter: Filter, at: Date, options?: BulkOptions) =>
  bulk({ _tag: "reschedule", at }, filter, options)
