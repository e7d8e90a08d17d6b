/**
 * The insert path behind `ExternalInsert`: the same checks and encoding as
 * `Oban.insert` (`encodeRequests`), then one statement as plain text for a
 * driver the caller owns, the wake-up to send after its commit, and the
 * mapping of the statement's rows back to jobs in request order.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { channel, type SettingsShape } from "../Config.ts"
import { InvalidJobError } from "../Errors.ts"
import type { JobErrorEntry, JobState } from "../Job.ts"
import type { Inserted } from "../Oban.ts"
import type { JobRequest } from "../Worker.ts"
import { type EncodedRequest, encodeRequests } from "./encodeRequest.ts"
import { jobFromRow } from "./jobRow.ts"
import { errorText } from "./jsonText.ts"
import { parseJson } from "./jsonParse.ts"
import { externalInsert, resultColumn, type SqlText, wakeStatement } from "./sql/externalInsert.ts"
import { inputRow, requestHash } from "./sql/upsertJobs.ts"
import { currentTraceparent } from "./telemetry.ts"
import { groupUnique, type Slot } from "./uniqueBatch.ts"

/** A row the insert statement returns, as any driver hands it back. */
export type ResultRow = { readonly [K in typeof resultColumn]: string }

const camelResultColumn = "obanJob"

/** A prepared external insert (see `ExternalInsert.Prepared`). */
export interface PreparedInsert {
  readonly insert: SqlText
  readonly wake: SqlText | undefined
  readonly jobs: (rows: ReadonlyArray<ResultRow>) => ReadonlyArray<Inserted>
}

const nothing: PreparedInsert = {
  insert: { text: `SELECT NULL::text AS ${resultColumn} WHERE false`, values: [] },
  wake: undefined,
  jobs: () => []
}

/**
 * Checks and encodes `requests` as `Oban.insert` does (`indexed` names the
 * position of a bad request, as `insertAll` does) and prepares them.
 */
export const prepareExternal = (
  requests: ReadonlyArray<JobRequest>,
  settings: SettingsShape,
  indexed: boolean
): Effect.Effect<PreparedInsert, InvalidJobError> =>
  Effect.gen(function*() {
    if (requests.length === 0) return nothing
    const traceparent = yield* currentTraceparent
    const indexOf = (position: number) => indexed ? position : undefined
    const encoded = yield* encodeRequests(requests, settings, traceparent, indexOf)
    const groups = groupUnique(encoded)
    if (groups.length > 1) return yield* mixedReplace(requests, firstOtherReplace(groups), indexOf)
    const slots = groups[0] ?? []
    const rows: Array<string> = []
    const due = new Set<string>()
    const millis = yield* Clock.currentTimeMillis
    const add = (request: EncodedRequest, position: number) => {
      rows.push(inputRow(request, position))
      if (isDue(request, millis)) due.add(request.queue)
    }
    for (let position = 0; position < encoded.length; position++) {
      const request = encoded[position]!
      if (request.unique === undefined) add(request, position)
    }
    for (const slot of slots) add(slot.request, slot.position)
    const insert = externalInsert(settings.prefix, `[${rows.join(",")}]`, {
      plain: rows.length > slots.length,
      unique: slots.length === 0 ? undefined : { replace: slots[0]!.request.unique!.replace }
    })
    return {
      insert,
      wake: due.size === 0 ? undefined : wakeStatement(channel(settings.prefix, "insert"), [...due]),
      jobs: (rows) => jobsOf(rows, plainPositions(encoded), slots)
    }
  })

/**
 * Whether a job may be due when inserted, by this process's clock: a wake-up
 * for one that turns out scheduled (or a conflict) costs a node one empty
 * fetch; a scheduled job's queue is woken by the stager when it is due.
 */
const isDue = (request: EncodedRequest, millis: number): boolean =>
  (request.scheduleIn === null || request.scheduleIn <= 0) &&
  (request.scheduledAt === null || request.scheduledAt.getTime() <= millis)

/** Where two unique keys of a call replace different fields: the first key's request, and the first that differs. */
interface OtherReplace {
  readonly first: number
  readonly firstReplace: ReadonlyArray<string>
  readonly position: number
  readonly replace: ReadonlyArray<string>
}

/**
 * The first request, in request order, whose key replaces other fields than
 * the key of the first unique request (a key replaces every field any of its
 * requests names).
 */
const firstOtherReplace = (groups: ReadonlyArray<ReadonlyArray<Slot>>): OtherReplace => {
  // One pass over the slots in request order: the first one's fields, then the first that differ.
  const slots = groups.flat().sort((a, b) => a.position - b.position)
  const first = slots[0]!
  const fields = first.request.unique!.replace.join(",")
  const other = slots.find((slot) => slot.request.unique!.replace.join(",") !== fields)!
  return {
    first: first.position,
    firstReplace: first.request.unique!.replace,
    position: other.position,
    replace: other.request.unique!.replace
  }
}

const replaced = (fields: ReadonlyArray<string>) => fields.length === 0 ? "replaces nothing" : `replaces ${fields.join(", ")}`

/**
 * Unique keys that replace different fields need one upsert per set of
 * fields, run in key order; one statement cannot promise that order, so such
 * a call is refused at the first request whose key replaces other fields
 * than the first unique request's key, naming both.
 */
const mixedReplace = (
  requests: ReadonlyArray<JobRequest>,
  other: OtherReplace,
  indexOf: (position: number) => number | undefined
): Effect.Effect<never, InvalidJobError> => {
  const index = indexOf(other.position)
  const firstIndex = indexOf(other.first)
  const message = `an external insert takes unique requests whose keys all replace the same fields (a key replaces ` +
    `every field any of its requests names): this one's key ${replaced(other.replace)}, ` +
    `${firstIndex === undefined ? "an earlier one's" : `request ${firstIndex}'s`} ${replaced(other.firstReplace)}; ` +
    "insert them in separate statements"
  return Effect.fail(
    new InvalidJobError({
      worker: requests[other.position]!.worker,
      field: "unique",
      ...(index === undefined ? { message } : { message: `request ${index}: ${message}`, index })
    })
  )
}

/** The positions of the requests without uniqueness, in order. */
const plainPositions = (encoded: ReadonlyArray<EncodedRequest>): ReadonlyArray<number> => {
  const positions: Array<number> = []
  for (let position = 0; position < encoded.length; position++) {
    if (encoded[position]!.unique === undefined) positions.push(position)
  }
  return positions
}

/** A job as the insert statement returns it: the row's columns as JSON, whether it conflicted, a unique one's position. */
interface JobJson {
  /** A unique job's key; plain jobs have none. */
  readonly unique_key?: string | null
  readonly conflict: boolean
  readonly id: number
  readonly state: JobState
  readonly queue: string
  readonly worker: string
  /** JSON text, as `jobColumns` returns it. */
  readonly args: string
  readonly meta: string | null
  readonly tags: ReadonlyArray<string> | null
  readonly errors: ReadonlyArray<JobErrorEntry> | null
  readonly attempt: number
  readonly max_attempts: number
  readonly priority: number
  readonly inserted_at: string
  readonly scheduled_at: string
  readonly attempted_at: string | null
  readonly completed_at: string | null
  readonly discarded_at: string | null
  readonly cancelled_at: string | null
  readonly attempted_by: ReadonlyArray<string> | null
  readonly cancel_requested_at: string | null
}

const dateOf = (text: string | null): Date | null => text === null ? null : new Date(text)

/** The job of a row as JSON: its times parsed, then read like any row. */
const jobOf = (json: JobJson): Inserted => ({
  ...jobFromRow({
    ...json,
    inserted_at: new Date(json.inserted_at),
    scheduled_at: new Date(json.scheduled_at),
    attempted_at: dateOf(json.attempted_at),
    completed_at: dateOf(json.completed_at),
    discarded_at: dateOf(json.discarded_at),
    cancelled_at: dateOf(json.cancelled_at),
    cancel_requested_at: dateOf(json.cancel_requested_at)
  }),
  conflict: json.conflict
})

/**
 * The jobs of the statement's `rows` in request order: unique ones by their
 * key's request hash, plain ones by id (drawn in request order) onto `plain`, the
 * positions of the plain requests. A later unique request with the key of
 * an earlier one gets the same job as a conflict. Throws when `rows` are
 * not the statement's (a job is missing).
 */
const jobsOf = (
  rows: ReadonlyArray<ResultRow>,
  plain: ReadonlyArray<number>,
  slots: ReadonlyArray<Slot>
): ReadonlyArray<Inserted> => {
  const count = plain.length + slots.reduce((sum, slot) => sum + 1 + slot.duplicates.length, 0)
  const jobs: Array<Inserted | undefined> = new Array(count)
  const slotOf = new Map(slots.map((slot) => [slot.request.unique!.hash, slot]))
  const plainJobs: Array<Inserted> = []
  for (const row of rows) {
    // Also as `obanJob`: a driver or plugin that renames result columns to camel case (Kysely's CamelCasePlugin).
    const text: unknown = row[resultColumn] ?? (row as { readonly [camelResultColumn]?: unknown })[camelResultColumn]
    if (typeof text !== "string") {
      throw new TypeError(`ExternalInsert: each row must have the text column ${resultColumn} of the insert statement`)
    }
    let job: Inserted
    let hash: string | undefined
    try {
      const json = parseJson(text) as JobJson
      hash = json.unique_key == null ? undefined : requestHash(json.unique_key)
      job = jobOf(json)
    } catch (error) {
      throw new TypeError(
        `ExternalInsert: a row's ${resultColumn} is not a job the insert statement returned (${errorText(error)}): ` +
          "pass the rows of the prepared insert, as they came"
      )
    }
    const slot = hash === undefined ? undefined : slotOf.get(hash)
    if (slot === undefined) plainJobs.push(job)
    else jobs[slot.position] = job
  }
  if (plainJobs.length === plain.length) {
    plainJobs.sort((a, b) => a.id - b.id)
    plainJobs.forEach((job, index) => {
      jobs[plain[index]!] = job
    })
  }
  for (const slot of slots) {
    const job = jobs[slot.position]
    if (job !== undefined) for (const duplicate of slot.duplicates) jobs[duplicate] = { ...job, conflict: true }
  }
  for (let position = 0; position < count; position++) {
    if (jobs[position] === undefined) {
      throw new TypeError(`ExternalInsert: no row for request ${position}; pass all rows the insert statement returned`)
    }
  }
  return jobs as Array<Inserted>
}
