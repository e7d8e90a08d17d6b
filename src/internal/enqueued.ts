/**
 * What is in the queue, for tests: `allEnqueued`, `assertEnqueued` and
 * `refuteEnqueued` of `effect-oban/testing`.
 */
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { MigrationError } from "../Errors.ts"
import { type Job, JobState } from "../Job.ts"
import type * as WorkerModule from "../Worker.ts"
import type { ArgsKey, UniqueOptions } from "./jobRequest.ts"
import { textArray } from "./jobFilter.ts"
import { toJsonText } from "./jsonText.ts"
import { jobColumns, jobFromRow, type JobRow } from "./jobRow.ts"
import { withPrefix } from "./notMigrated.ts"
import { table } from "./sql/tables.ts"
import { storedFields } from "./storedFields.ts"
import { ObanTestError } from "./testError.ts"

/**
 * Which jobs a query matches. Unset fields match anything; `state` defaults
 * to `available` and `scheduled`. `args` matches when the stored (JSON) args
 * contain it. With a worker definition as `worker`, the jobs come back with
 * their args decoded by its schema (typed); with its name, as stored.
 *
 * @since 0.1.0
 */
export interface EnqueuedFilter<W extends WorkerModule.Any | string = WorkerModule.Any | string> {
  readonly worker?: W | undefined
  /**
   * A JSON subset of the stored args, written as they are stored (a `Date`
   * is taken as its ISO string, as schemas store dates). With a worker definition as `worker`, only its args'
   * fields may be named (a misspelt field would match no job, and a refute
   * pass for the wrong reason). A value JSON cannot hold (`undefined`, a
   * bigint, a function) fails with `ObanTestError` rather than match more.
   */
  readonly args?: ArgsFilter<W> | undefined
  readonly queue?: string | undefined
  readonly state?: JobState | ReadonlyArray<JobState> | undefined
  readonly priority?: number | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  /** Scheduled at or after this instant. */
  readonly scheduledFrom?: Date | DateTime.DateTime | undefined
  /** Scheduled at or before this instant. */
  readonly scheduledTo?: Date | DateTime.DateTime | undefined
}

/**
 * What a filter's `args` may name: with a worker definition whose args are
 * an object, its fields as stored (a field renamed by `Schema.encodeKeys`
 * by its stored name; values of any JSON type), each member's for args that
 * are a union; otherwise any object.
 *
 * @since 0.1.0
 */
export type ArgsFilter<W> = [W] extends [{ readonly argsJson: Schema.Codec<infer A, Schema.Json> }]
  ? string extends StoredKey<W> ? FieldsFilter<A>
  : SameNames<StoredKey<W>, ArgsKey<A>> extends true ? FieldsFilter<A>
  : { readonly [K in StoredKey<W>]?: unknown }
  : Readonly<Record<string, unknown>>

/**
 * The names of a worker's args as stored, from the `K` a worker made by
 * `Worker.make` carries (in its `unique` option's type); any string for a
 * worker typed without it. For args that are a union, only the names every
 * member has.
 */
type StoredKey<W> = [W] extends [{ readonly unique: UniqueOptions<never, infer K> | undefined }] ? K : string

/** Whether two sets of names are the same: args stored under their own names. */
type SameNames<K1, K2> = [K1] extends [K2] ? [K2] extends [K1] ? true : false : false

/** A filter of args of type `A` by their own names: one per member of a union. */
type FieldsFilter<A> = A extends ReadonlyArray<unknown> ? Readonly<Record<string, unknown>>
  : A extends object ? { readonly [K in keyof A]?: unknown }
  : Readonly<Record<string, unknown>>

/**
 * The jobs a filter's `worker` finds: with a worker definition, typed by its
 * args schema (and decoded by it); otherwise with the args as stored.
 *
 * @since 0.1.0
 */
export type EnqueuedJob<W> = [W] extends [{ readonly argsJson: Schema.Codec<infer A, Schema.Json> }] ? Job<A> : Job

/**
 * A filter's args with each valid `Date` as its ISO text, as a worker's
 * schema stores dates (`JSON.stringify` wrote them so before the filter was
 * checked); anything else as it is, for `toJsonText` to judge.
 */
const datesAsText = (value: unknown): unknown => {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? value : value.toISOString()
  if (Array.isArray(value)) return value.map(datesAsText)
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, field]) => [key, datesAsText(field)]))
  }
  return value
}

/**
 * The first field a filter's args name that its worker's stored args cannot
 * have, with the fields they can: for a worker definition whose args are a
 * struct (the stored names, after any `encodeKeys`). A misspelt field, or
 * the decoded name of a renamed one, would match no job, and a refute pass
 * for the wrong reason.
 */
const fieldNotStored = (
  worker: unknown,
  args: Readonly<Record<string, unknown>>
): { readonly field: string; readonly stored: ReadonlyArray<string> } | undefined => {
  const codec = argsCodecOf(worker)
  const stored = codec === undefined ? undefined : storedFields(codec)
  if (stored === undefined) return undefined
  const field = Object.keys(args).find((name) => !stored.includes(name))
  return field === undefined ? undefined : { field, stored }
}

/**
 * A filter as the queries read it, its args any object: what a worker allows
 * is the types' concern, and `checkStoredFields` checks it again.
 */
const untyped = <W extends WorkerModule.Any | string>(filter: EnqueuedFilter<W>): EnqueuedFilter =>
  filter as unknown as EnqueuedFilter

/** Fails with `ObanTestError` when the filter's args name a field its worker's stored args cannot have (see `fieldNotStored`). */
const checkStoredFields = (filter: EnqueuedFilter): Effect.Effect<void, ObanTestError> => {
  const unknownField = filter.args === undefined ? undefined : fieldNotStored(filter.worker, filter.args)
  if (unknownField === undefined) return Effect.void
  const name = workerName(filter.worker)
  return Effect.fail(
    new ObanTestError({
      message: `the filter's args name ${JSON.stringify(unknownField.field)}, which ${name}'s args do not ` +
        `have as stored (their fields: ${unknownField.stored.join(", ")}); it would match no job (with the worker's ` +
        `name, { worker: ${JSON.stringify(name)} }, the args are untyped and written as stored)`
    })
  )
}

/** The most JSON a filter's `args` may be: what a job's args may be at most. */
const maxFilterBytes = 64 * 1024 * 1024

const toDate = (at: Date | DateTime.DateTime): Date => (DateTime.isDateTime(at) ? DateTime.toDate(at) : at)

/** The args codec of a filter's worker, when it is a worker definition. */
const argsCodecOf = (worker: unknown): Schema.Codec<unknown, Schema.Json> | undefined =>
  typeof worker === "object" && worker !== null && "argsJson" in worker && Schema.isSchema(worker.argsJson)
    ? worker.argsJson as Schema.Codec<unknown, Schema.Json>
    : undefined

/**
 * The jobs with their args decoded by `codec`; a job whose stored args it
 * refuses fails the query (a test that means to look at such a job passes
 * the worker's name, which returns the args as stored).
 */
const decodeArgs = (jobs: ReadonlyArray<Job>, name: string, codec: Schema.Codec<unknown, Schema.Json>) => {
  const decode = Schema.decodeUnknownEffect(codec)
  return Effect.forEach(jobs, (job) =>
    decode(job.args).pipe(
      Effect.map((args): Job => args === job.args ? job : { ...job, args }),
      Effect.mapError((error) =>
        new ObanTestError({
          message: `job ${job.id}'s args do not decode with ${name}'s args schema (${error.message}); ` +
            `to see jobs as stored, pass the worker's name: { worker: ${JSON.stringify(name)} }`
        })
      )
    ))
}

/** The name of a filter's worker, given as a definition or as its name. */
const workerName = (worker: WorkerModule.Any | string | undefined): string | undefined =>
  worker === undefined || typeof worker === "string" ? worker : worker.name

/**
 * Every job matching `filter`, oldest first.
 *
 * @since 0.1.0
 */
export const allEnqueued = <W extends WorkerModule.Any | string = string>(
  filter: EnqueuedFilter<W> = {}
): Effect.Effect<ReadonlyArray<EnqueuedJob<W>>, ObanTestError | MigrationError | SqlError, SqlClient> =>
  withPrefix((sql, prefix) => Effect.gen(function*() {
    const given: unknown = filter.state
    const states: ReadonlyArray<unknown> = given === undefined
      ? ["available", "scheduled"]
      : Array.isArray(given)
      ? given
      : [given]
    // Untyped callers: a state that no job can be in would match nothing, and read as "found none".
    const known = JobState.literals as ReadonlyArray<unknown>
    if (states.length === 0 || states.some((state) => !known.includes(state))) {
      return yield* new ObanTestError({
        message: `state must be one of ${JobState.literals.join(", ")} (or a non-empty list of them), got ${
          JSON.stringify(filter.state)
        }`
      })
    }
    const args = filter.args === undefined ? undefined : toJsonText(datesAsText(filter.args), "args", maxFilterBytes)
    if (args?._tag === "JsonRefusal") {
      return yield* new ObanTestError({
        message: `the filter's ${args.message}; write args as they are stored (JSON: dates as ISO strings)`
      })
    }
    const worker = workerName(filter.worker)
    yield* checkStoredFields(untyped(filter))
    const clauses = [
      sql`state::text IN ${sql.in(states)}`,
      ...(worker === undefined ? [] : [sql`worker = ${worker}`]),
      ...(filter.queue === undefined ? [] : [sql`queue = ${filter.queue}`]),
      ...(filter.priority === undefined ? [] : [sql`priority = ${filter.priority}`]),
      ...(args === undefined ? [] : [sql`args @> ${args.text}::jsonb`]),
      ...(filter.tags === undefined ? [] : [sql`tags @> ${textArray(sql, filter.tags)}`]),
      ...(filter.scheduledFrom === undefined ? [] : [sql`scheduled_at >= ${toDate(filter.scheduledFrom)}`]),
      ...(filter.scheduledTo === undefined ? [] : [sql`scheduled_at <= ${toDate(filter.scheduledTo)}`])
    ]
    const rows = yield* sql<JobRow>`
      SELECT ${sql.literal(jobColumns)} FROM ${table(sql, prefix, "oban_jobs_all")}
      WHERE ${sql.and(clauses)} ORDER BY id`
    const jobs = rows.map((row) => jobFromRow(row))
    const codec = argsCodecOf(filter.worker)
    // Decoded by the filter's worker's codec, the jobs have its args type; without one, `EnqueuedJob` is `Job`.
    const found: ReadonlyArray<Job> = codec === undefined || worker === undefined ? jobs : yield* decodeArgs(jobs, worker, codec)
    return found as unknown as ReadonlyArray<EnqueuedJob<W>>
  }))

const describe = <W extends WorkerModule.Any | string>(filter: EnqueuedFilter<W>): string =>
  JSON.stringify({
    ...untyped(filter),
    worker: workerName(filter.worker)
  })

/**
 * Succeeds with the first job matching `filter`; fails with `ObanTestError`
 * when there is none.
 *
 * @since 0.1.0
 */
export const assertEnqueued = <W extends WorkerModule.Any | string = string>(
  filter: EnqueuedFilter<W>
): Effect.Effect<EnqueuedJob<W>, ObanTestError | MigrationError | SqlError, SqlClient> =>
  Effect.flatMap(allEnqueued(filter), (jobs) =>
    jobs.length > 0 ? Effect.succeed(jobs[0]!) : Effect.flatMap(
      nearMisses(workerName(filter.worker)),
      (near) => Effect.fail(new ObanTestError({ message: `expected a job matching ${describe(filter)}, found none${near}` }))
    ))

/** How many of the newest jobs of the worker a failed `assertEnqueued` lists. */
const nearMissCount = 5

/**
 * What a failed `assertEnqueued` adds when the filter names a worker: the worker's newest jobs in any state,
 * with their args as stored, so a job in another state (or with args a field off) shows why it did not match.
 */
const nearMisses = (worker: string | undefined): Effect.Effect<string, MigrationError | SqlError, SqlClient> =>
  worker === undefined ? Effect.succeed("") : withPrefix((sql, prefix) =>
    Effect.map(
      sql<{ readonly id: number; readonly state: string; readonly args: string; readonly total: number }>`
        SELECT id::int AS id, state::text AS state, left(args::text, 200) AS args, count(*) OVER ()::int AS total
        FROM ${table(sql, prefix, "oban_jobs_all")} WHERE worker = ${worker} ORDER BY id DESC LIMIT ${nearMissCount}`,
      (rows) =>
        rows.length === 0
          ? `; no job of ${worker} exists in any state`
          : `; the newest ${rows.length === rows[0]!.total ? "" : `${rows.length} of `}${rows[0]!.total} job(s) of ${worker}: ` +
            rows.map((row) => `${row.id} ${row.state} ${row.args}`).join("; ")
    ))

/**
 * Fails with `ObanTestError` when a job matches `filter`.
 *
 * @since 0.1.0
 */
export const refuteEnqueued = <W extends WorkerModule.Any | string = string>(
  filter: EnqueuedFilter<W>
): Effect.Effect<void, ObanTestError | MigrationError | SqlError, SqlClient> => {
  // Counted as stored: a job whose args the worker's schema refuses is still a job that matches. The filter's
  // fields are checked against the worker's definition first, which the query by name no longer has.
  const plain = untyped(filter)
  return Effect.flatMap(Effect.andThen(checkStoredFields(plain), allEnqueued({ ...plain, worker: workerName(filter.worker) })), (jobs) =>
    jobs.length === 0 ? Effect.void : Effect.fail(
      new ObanTestError({
        message: `expected no job matching ${describe(filter)}, found ${jobs.length} (ids ${jobs.map((job) => job.id).join(", ")})`
      })
    ))
}
