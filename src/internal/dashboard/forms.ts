/**
 * The dashboard's inputs, checked with Schema before anything runs: the job
 * list's query (the filter of `Jobs`, a sort, a page), and the fields of the
 * action forms. Browsers send empty fields for blank inputs: those count as
 * absent.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import * as SchemaIssue from "effect/SchemaIssue"
import { InvalidFilterError } from "../../Errors.ts"
import { JobState } from "../../Job.ts"
import type { Filter, ListOptions } from "../../Jobs.ts"
import { parseJson } from "../jsonParse.ts"
import { storableText } from "../jsonText.ts"

/**
 * A whole number written in decimal digits only: `Number()` also reads "0x1",
 * "1e1" and " 1", so a path or a field with those would name a job or a limit
 * the user did not type.
 */
const Digits = Schema.String.check(Schema.isPattern(/^[0-9]{1,15}$/)).pipe(
  Schema.decodeTo(Schema.Number, SchemaTransformation.numberFromString)
)
/** A queue, worker, tag or node name: up to 255, the longest a tag or a node's name can be (queues and workers stop at 128). */
const Name = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(255), storableText)
/** A JSON object typed into a filter, read by `parseJson` (see `jsonParse.ts`), not `JSON.parse`. */
const JsonObject = Schema.String.pipe(
  Schema.decodeTo(
    Schema.JsonObject,
    SchemaTransformation.transformEffect<typeof Schema.JsonObject.Encoded, string>({
      decode: (text, options) =>
        Effect.try({
          try: () => parseJson(text) as typeof Schema.JsonObject.Encoded,
          catch: () => new SchemaIssue.InvalidValue({ expected: "a valid JSON string" }, text, options)
        }),
      encode: (value) => Effect.succeed(JSON.stringify(value))
    })
  )
)

const ListQuery = Schema.Struct({
  queue: Schema.Array(Name).check(Schema.isMaxLength(50)),
  state: Schema.Array(JobState).check(Schema.isMaxLength(50)),
  worker: Schema.Array(Name).check(Schema.isMaxLength(50)),
  tag: Schema.Array(Name).check(Schema.isMaxLength(50)),
  tagsMatch: Schema.optional(Schema.Literals(["all", "any"])),
  args: Schema.optional(JsonObject),
  meta: Schema.optional(JsonObject),
  sort: Schema.optional(Schema.Literals(["id", "scheduledAt", "insertedAt"])),
  order: Schema.optional(Schema.Literals(["asc", "desc"])),
  limit: Schema.optional(Digits.check(Schema.isBetween({ minimum: 1, maximum: 200 }))),
  cursor: Schema.optional(Schema.String.check(Schema.isMaxLength(1000)))
})

export type ListQuery = typeof ListQuery.Type

const decodeListQuery = Schema.decodeUnknownEffect(ListQuery)

const filterFields = ["queue", "state", "worker", "tag"] as const
const singleFields = ["tagsMatch", "args", "meta", "sort", "order", "limit", "cursor"] as const

/** The query's fields as the schema expects them: lists for the filter names, the last value otherwise. */
const fields = (params: URLSearchParams): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const name of filterFields) out[name] = params.getAll(name).filter((value) => value !== "")
  for (const name of singleFields) {
    const value = params.get(name)
    if (value !== null && value !== "") out[name] = value
  }
  return out
}

/** The list query of a URL's search parameters (or a form's fields), checked. */
export const parseListQuery = (params: URLSearchParams): Effect.Effect<ListQuery, InvalidFilterError> =>
  decodeListQuery(fields(params)).pipe(
    Effect.mapError((error) => new InvalidFilterError({ field: "query", message: error.message }))
  )

/** The `Jobs` filter a list query describes. */
export const toFilter = (query: ListQuery): Filter => ({
  ...(query.queue.length > 0 ? { queues: query.queue } : {}),
  ...(query.state.length > 0 ? { states: query.state } : {}),
  ...(query.worker.length > 0 ? { workers: query.worker } : {}),
  ...(query.tag.length > 0 ? { tags: query.tag } : {}),
  ...(query.tagsMatch !== undefined ? { tagsMatch: query.tagsMatch } : {}),
  ...(query.args !== undefined ? { args: query.args } : {}),
  ...(query.meta !== undefined ? { meta: query.meta } : {})
})

/** The `Jobs.list` options of a list query. */
export const toListOptions = (query: ListQuery): ListOptions => ({
  filter: toFilter(query),
  sort: { by: query.sort ?? "id", order: query.order ?? "desc" },
  limit: query.limit ?? 50,
  cursor: query.cursor
})

/** The search parameters of a list query's filter and sort (no cursor), to link pages and actions. */
export const filterParams = (query: ListQuery): URLSearchParams => {
  const params = new URLSearchParams()
  for (const name of filterFields) for (const value of query[name]) params.append(name, value)
  if (query.tagsMatch !== undefined) params.set("tagsMatch", query.tagsMatch)
  if (query.args !== undefined) params.set("args", JSON.stringify(query.args))
  if (query.meta !== undefined) params.set("meta", JSON.stringify(query.meta))
  if (query.sort !== undefined) params.set("sort", query.sort)
  if (query.order !== undefined) params.set("order", query.order)
  if (query.limit !== undefined) params.set("limit", String(query.limit))
  return params
}

export const JobAction = Schema.Literals(["retry", "cancel", "delete"])
export type JobAction = typeof JobAction.Type

export const QueueAction = Schema.Literals(["pause", "resume", "scale"])
export type QueueAction = typeof QueueAction.Type

/** A job id from the path. */
const JobId = Digits.check(Schema.isGreaterThanOrEqualTo(1))

/** A job id from the path, or bad input (`id`) saying what an id is. */
export const decodeJobId = (raw: string): Effect.Effect<number, InvalidFilterError> =>
  Schema.decodeUnknownEffect(JobId)(raw).pipe(
    Effect.mapError(() =>
      new InvalidFilterError({
        field: "id",
        message: `a job id is a whole number from 1 to 999999999999999, in digits; got ${JSON.stringify(raw)}`
      })
    )
  )

export const QueueForm = Schema.Struct({
  limit: Schema.optional(Digits.check(Schema.isBetween({ minimum: 1, maximum: 10_000 }))),
  node: Schema.optional(Name)
})

export const decodeQueueForm = (params: URLSearchParams) =>
  Schema.decodeUnknownEffect(QueueForm)({
    ...(params.get("limit") ? { limit: params.get("limit") } : {}),
    ...(params.get("node") ? { node: params.get("node") } : {})
  }).pipe(Effect.mapError((error) => new InvalidFilterError({ field: "form", message: error.message })))

export const QueueName = Name
