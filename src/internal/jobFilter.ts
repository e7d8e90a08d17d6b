/**
 * The filter of job queries and bulk actions: its schema, its checks, and
 * the SQL condition it becomes. Every part is optional and the parts combine
 * with AND; an empty filter matches every job.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { SqlClient } from "effect/sql/SqlClient"
import type { Fragment } from "effect/sql/Statement"
import { InvalidFilterError } from "../Errors.ts"
import { JobState } from "../Job.ts"
import { textProblem, toJsonText } from "./jsonText.ts"

/** A time range; either bound may be left out. `after` is inclusive, `before` exclusive. */
export const TimeRange = Schema.Struct({
  after: Schema.optional(Schema.Date),
  before: Schema.optional(Schema.Date)
})

export type TimeRange = typeof TimeRange.Type

// JSON values only: an `undefined` (or a function) would vanish in JSON.stringify and leave a
// containment that holds for every job; a bigint would throw there.
const JsonObject = Schema.JsonObject

export const Filter = Schema.Struct({
  /** Only these job ids. */
  ids: Schema.optional(Schema.Array(Schema.Int)),
  queues: Schema.optional(Schema.Array(Schema.String)),
  states: Schema.optional(Schema.Array(JobState)),
  workers: Schema.optional(Schema.Array(Schema.String)),
  /** Jobs carrying these tags: all of them (default) or any of them, see `tagsMatch`. */
  tags: Schema.optional(Schema.Array(Schema.String)),
  tagsMatch: Schema.optional(Schema.Literals(["all", "any"])),
  /** Jobs whose args contain this JSON object (jsonb `@>`: nested objects match by their listed keys). */
  args: Schema.optional(JsonObject),
  /** Jobs whose meta contains this JSON object (jsonb `@>`). */
  meta: Schema.optional(JsonObject),
  inserted: Schema.optional(TimeRange),
  scheduled: Schema.optional(TimeRange),
  attempted: Schema.optional(TimeRange),
  completed: Schema.optional(TimeRange)
})

export type Filter = typeof Filter.Type

/** The most values one list of a filter may hold. */
export const maxFilterValues = 10_000

/** The most bytes of JSON a filter's `args` or `meta` may hold. */
export const maxFilterJsonBytes = 1_048_576

const decodeFilter = Schema.decodeUnknownEffect(Filter)

const problem = (field: string, message: string) => Effect.fail(new InvalidFilterError({ field, message }))

const rangeProblem = (range: TimeRange | undefined): string | undefined => {
  if (range === undefined) return undefined
  for (const bound of [range.after, range.before]) {
    if (bound !== undefined && Number.isNaN(bound.getTime())) return "not a valid date"
  }
  if (range.after !== undefined && range.before !== undefined && range.after.getTime() >= range.before.getTime()) {
    return `"after" must be earlier than "before"`
  }
  return undefined
}

const isEmptyObject = (value: object | undefined): boolean => value === undefined || Object.keys(value).length === 0

/**
 * Whether `filter` narrows nothing: no part set, or only parts that leave
 * (nearly) every job in (`meta: {}`, `tags: []` under the default "all", a
 * time range without bounds, and `args: {}`, which only jobs whose args are
 * no JSON object fail). A bulk action refuses such a filter unless asked for
 * every job.
 */
export const matchesEveryJob = (filter: Filter): boolean =>
  filter.ids === undefined && filter.queues === undefined && filter.states === undefined &&
  filter.workers === undefined &&
  (filter.tags === undefined || (filter.tags.length === 0 && filter.tagsMatch !== "any")) &&
  isEmptyObject(filter.args) && isEmptyObject(filter.meta) &&
  [filter.inserted, filter.scheduled, filter.attempted, filter.completed].every((range) =>
    range === undefined || (range.after === undefined && range.before === undefined)
  )

/**
 * Checks an untrusted filter: its shape (with the schema), then what the
 * schema cannot say (list sizes, empty names, text PostgreSQL refuses, JSON
 * nested too deep, valid and ordered dates).
 */
export const validateFilter = (input: unknown): Effect.Effect<Filter, InvalidFilterError> =>
  Effect.gen(function*() {
    const filter = yield* decodeFilter(input ?? {}).pipe(
      Effect.mapError((error) => new InvalidFilterError({ field: "filter", message: error.message }))
    )
    for (const field of ["ids", "queues", "states", "workers", "tags"] as const) {
      const values = filter[field]
      if (values === undefined) continue
      if (values.length > maxFilterValues) {
        return yield* problem(field, `at most ${maxFilterValues} values, got ${values.length}`)
      }
      if (values.some((value) => typeof value === "string" && value.length === 0)) {
        return yield* problem(field, "values must not be empty")
      }
      // PostgreSQL refuses such text outright: bad input, not a database failure.
      for (const value of values) {
        const text = typeof value === "string" ? textProblem(value) : undefined
        if (text !== undefined) return yield* problem(field, `a value ${text}`)
      }
    }
    for (const field of ["args", "meta"] as const) {
      // What an insert refuses in args or meta (NUL, lone surrogates, nesting past maxJsonDepth, which
      // would overflow the stack of JSON.stringify) a filter on them refuses too.
      const written = filter[field] === undefined ? undefined : toJsonText(filter[field], field, maxFilterJsonBytes)
      if (written?._tag === "JsonRefusal") return yield* problem(field, written.message)
    }
    if (filter.ids?.some((id) => id < 1 || !Number.isSafeInteger(id))) {
      return yield* problem("ids", "ids are positive integers")
    }
    for (const field of ["inserted", "scheduled", "attempted", "completed"] as const) {
      const message = rangeProblem(filter[field])
      if (message !== undefined) return yield* problem(field, message)
    }
    return filter
  })

/**
 * `values` as a SQL `text[]`, sent as one JSON parameter: any text (quotes, backslashes, line
 * breaks) reaches the comparison as it is, which a `text[]` literal would need escaping for.
 */
export const textArray = (sql: SqlClient, values: ReadonlyArray<string>): Fragment =>
  sql`ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`

const rangeCondition = (sql: SqlClient, column: string, range: TimeRange | undefined): Array<Fragment> => {
  if (range === undefined) return []
  const conditions: Array<Fragment> = []
  if (range.after !== undefined) conditions.push(sql`${sql.literal(`j.${column}`)} >= ${range.after}`)
  if (range.before !== undefined) conditions.push(sql`${sql.literal(`j.${column}`)} < ${range.before}`)
  return conditions
}

/**
 * The filter as a condition on `oban_jobs` aliased `j`. Lists travel as one
 * JSON parameter each, so a list of 10,000 values is one bind, not 10,000.
 */
export const filterCondition = (sql: SqlClient, filter: Filter): Fragment => {
  const conditions: Array<Fragment> = [sql`true`]
  if (filter.ids !== undefined) {
    conditions.push(sql`j.id = ANY(${`{${filter.ids.join(",")}}`}::bigint[])`)
  }
  if (filter.queues !== undefined) {
    conditions.push(sql`j.queue = ANY(${textArray(sql, filter.queues)})`)
  }
  if (filter.states !== undefined) {
    // Inlined: the states are checked literals, and as constants they let the planner use the
    // partial indexes of each state (the fetch index for available jobs, and so on).
    conditions.push(
      filter.states.length === 0 ? sql`false` : sql.literal(`j.state IN (${filter.states.map((state) => `'${state}'`).join(", ")})`)
    )
  }
  if (filter.workers !== undefined) {
    conditions.push(sql`j.worker = ANY(${textArray(sql, filter.workers)})`)
  }
  if (filter.tags !== undefined) {
    const tags = textArray(sql, filter.tags)
    // Any of no tags matches nothing (as an empty list of queues does); all of no tags, every job.
    conditions.push(filter.tagsMatch === "any" ? sql`j.tags && ${tags}` : sql`j.tags @> ${tags}`)
  }
  if (filter.args !== undefined) conditions.push(sql`j.args @> ${JSON.stringify(filter.args)}::jsonb`)
  if (filter.meta !== undefined) conditions.push(sql`j.meta @> ${JSON.stringify(filter.meta)}::jsonb`)
  conditions.push(
    ...rangeCondition(sql, "inserted_at", filter.inserted),
    ...rangeCondition(sql, "scheduled_at", filter.scheduled),
    ...rangeCondition(sql, "attempted_at", filter.attempted),
    ...rangeCondition(sql, "completed_at", filter.completed)
  )
  return sql.and(conditions)
}
