/**
 * Checks a job request and encodes it as one JSON row for `insertJobs`.
 * Everything here runs before any SQL, so a bad request writes nothing.
 */
import { DateTime, Duration, Effect, Option, Predicate } from "effect"
import type { SettingsShape } from "../Config.ts"
import { InvalidJobError, type JobField } from "../Errors.ts"
import type { JobRequest } from "../Worker.ts"
import { traceKey } from "./telemetry.ts"

const maxNameLength = 128
const maxTagLength = 255
const maxSmallint = 32767

const invalid = (request: JobRequest, field: JobField, message: string, index: number | undefined) =>
  new InvalidJobError(
    index === undefined
      ? { worker: request.worker, field, message }
      : { worker: request.worker, field, message: `request ${index}: ${message}`, index }
  )

/** JSON text that PostgreSQL's jsonb accepts: it refuses the NUL character. */
const toJsonText = (value: unknown): Option.Option<string> => {
  try {
    const text = JSON.stringify(value)
    return text === undefined || text.includes("\\u0000") ? Option.none() : Option.some(text)
  } catch {
    return Option.none()
  }
}

const checkName = (name: string): string | undefined =>
  name.length === 0
    ? "must not be empty"
    : name.includes("\u0000")
    ? "must not contain the NUL character"
    : name.length > maxNameLength
    ? `must be at most ${maxNameLength} characters, got ${name.length}`
    : undefined

const scheduleInMillis = (input: Duration.Input): string | number => {
  const duration = Duration.fromInput(input)
  if (Option.isNone(duration)) return `is not a duration: ${String(input)}`
  const millis = Duration.toMillis(duration.value)
  if (!Number.isFinite(millis)) return "must be finite"
  if (millis < 0) return `must not be negative, got ${millis} ms`
  return millis
}

const scheduledAtIso = (at: Date | DateTime.DateTime): string | Date => {
  const date = DateTime.isDateTime(at) ? DateTime.toDate(at) : at
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "is not a valid date"
  return date
}

/**
 * Validates `request` and returns its row as JSON text. `index` is the
 * position in an `insertAll` batch, named in the error.
 */
export const encodeRequest = (
  request: JobRequest,
  ord: number,
  settings: SettingsShape,
  index: number | undefined,
  traceparent?: string | undefined
): Effect.Effect<string, InvalidJobError> =>
  Effect.gen(function*() {
    const fail = (field: JobField, message: string) => Effect.fail(invalid(request, field, message, index))

    const workerProblem = checkName(request.worker)
    if (workerProblem !== undefined) return yield* fail("worker", `worker name ${workerProblem}`)
    const queueProblem = checkName(request.queue)
    if (queueProblem !== undefined) return yield* fail("queue", `queue name ${queueProblem}`)
    if (!Number.isInteger(request.priority) || request.priority < 0 || request.priority > 9) {
      return yield* fail("priority", `priority must be an integer from 0 to 9, got ${String(request.priority)}`)
    }
    if (!Number.isInteger(request.maxAttempts) || request.maxAttempts < 1 || request.maxAttempts > maxSmallint) {
      return yield* fail(
        "maxAttempts",
        `maxAttempts must be an integer from 1 to ${maxSmallint}, got ${String(request.maxAttempts)}`
      )
    }

    let scheduleIn: number | null = null
    let scheduledAt: string | null = null
    if (request.scheduleIn !== undefined && request.scheduledAt !== undefined) {
      return yield* fail("scheduleIn", "give scheduleIn or scheduledAt, not both")
    }
    if (request.scheduleIn !== undefined) {
      const millis = scheduleInMillis(request.scheduleIn)
      if (typeof millis === "string") return yield* fail("scheduleIn", `scheduleIn ${millis}`)
      scheduleIn = millis
    }
    if (request.scheduledAt !== undefined) {
      const date = scheduledAtIso(request.scheduledAt)
      if (typeof date === "string") return yield* fail("scheduledAt", `scheduledAt ${date}`)
      scheduledAt = date.toISOString()
    }

    if (!Array.isArray(request.tags) || !request.tags.every(Predicate.isString)) {
      return yield* fail("tags", "tags must be an array of strings")
    }
    const badTag = request.tags.find((tag) => tag.length === 0 || tag.length > maxTagLength || tag.includes("\u0000"))
    if (badTag !== undefined) {
      return yield* fail("tags", `each tag must be 1 to ${maxTagLength} characters without NUL, got ${JSON.stringify(badTag)}`)
    }

    if (!Predicate.isObject(request.meta) || Array.isArray(request.meta)) {
      return yield* fail("meta", "meta must be a JSON object")
    }
    const meta = toJsonText(
      traceparent === undefined || traceKey in request.meta ? request.meta : { ...request.meta, [traceKey]: traceparent }
    )
    if (Option.isNone(meta)) {
      return yield* fail("meta", "meta must be JSON-serializable and contain no NUL character")
    }

    const encoded = yield* request.encodeArgs.pipe(
      Effect.mapError((error) => invalid(request, "args", `args do not match the worker's schema: ${error.message}`, index))
    )
    const args = toJsonText(encoded)
    if (Option.isNone(args)) {
      return yield* fail("args", "args must be JSON-serializable and contain no NUL character")
    }
    const argsBytes = Buffer.byteLength(args.value, "utf8")
    if (argsBytes > settings.maxArgsBytes) {
      return yield* fail("args", `args are ${argsBytes} bytes of JSON, more than the limit of ${settings.maxArgsBytes}`)
    }

    return `{"ord":${ord},"queue":${JSON.stringify(request.queue)},"worker":${JSON.stringify(request.worker)},` +
      `"args":${args.value},"meta":${meta.value},"tags":${JSON.stringify(request.tags)},` +
      `"max_attempts":${request.maxAttempts},"priority":${request.priority},` +
      `"schedule_in_ms":${scheduleIn === null ? "null" : scheduleIn},` +
      `"scheduled_at":${scheduledAt === null ? "null" : JSON.stringify(scheduledAt)}}`
  })
