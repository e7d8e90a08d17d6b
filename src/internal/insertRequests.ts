/**
 * The insert path behind `Oban.insert` and `Oban.insertAll`: check and
 * encode the requests, write them, wake their queues after commit, publish
 * `inserted` events, run them inline under the testing kit, and return the
 * jobs typed by their workers.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { Settings } from "../Config.ts"
import { InvalidJobError, type MigrationError } from "../Errors.ts"
import type { Inserted } from "../Oban.ts"
import { now } from "../ObanClock.ts"
import type * as Worker from "../Worker.ts"
import { type EncodedRequest, encodeRequests } from "./encodeRequest.ts"
import { InlineRunner } from "./inline.ts"
import { insertEncoded } from "./insertEncoded.ts"
import { withInsertedEvents } from "./insertedEvents.ts"
import { orNotMigrated } from "./notMigrated.ts"
import { callerTraceparent, hasTracingBackend } from "./telemetry.ts"
import { wakeAfterCommit } from "./waker.ts"
import { transaction } from "./sql/transaction.ts"

const identity = (position: number): number => position
const noIndex = (): undefined => undefined

const spanOptions = (jobs: number): Tracer.SpanOptionsNoTrace => ({ kind: "producer", attributes: { "oban.jobs": jobs } })


/**
 * The insert runs in its `oban.insert` span, which is the parent of its
 * statements' spans. It is written as a chain of `flatMap`s, not a generator,
 * and the span is provided as the parent only (no stack frame of its own,
 * as `withSpan` adds): this is the path of every `Oban.insert`, where each
 * of those costs microseconds of the caller's CPU per job.
 *
 * Without a tracing backend (`hasTracingBackend`) it makes no span: its jobs
 * carry the traceparent of the span the insert ran in, if any.
 */
export const insertRequests = (
  list: ReadonlyArray<Worker.JobRequest>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError | MigrationError | SqlError, SqlClient> => {
  if (list.length === 0) return Effect.succeed([])
  return Effect.withFiber((fiber) =>
    hasTracingBackend(fiber)
      ? Effect.useSpan(
        "oban.insert",
        spanOptions(list.length),
        (span) => Effect.provideService(insertInFiber(list, indexed), Tracer.ParentSpan, span)
      )
      : insertWith(fiber.context as Context.Context<SqlClient>, list, indexed, callerTraceparent(fiber))
  )
}

/** `insertWith` in the current fiber's context, its jobs carrying its parent span's traceparent. */
const insertInFiber = (
  list: ReadonlyArray<Worker.JobRequest>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError | MigrationError | SqlError, SqlClient> =>
  Effect.withFiber((fiber) => insertWith(fiber.context as Context.Context<SqlClient>, list, indexed, callerTraceparent(fiber)))

/** Encodes and writes the requests, their jobs carrying `traceparent` when given. */
const insertWith = (
  context: Context.Context<SqlClient>,
  list: ReadonlyArray<Worker.JobRequest>,
  indexed: boolean,
  traceparent: string | undefined
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError | MigrationError | SqlError> => {
  const settings = Context.get(context, Settings)
  const sql = plain(Context.get(context, SqlClient))
  return Effect.flatMap(
    encodeRequests(list, settings, traceparent, indexed ? identity : noIndex),
    (encoded) => Effect.flatMap(now(sql), (time) => write(context, sql, settings.prefix, list, encoded, time, indexed))
  )
}

/** Writes the encoded requests, then wakes their queues, publishes their events and runs them inline when asked. */
const write = (
  context: Context.Context<never>,
  sql: SqlClient,
  prefix: string,
  list: ReadonlyArray<Worker.JobRequest>,
  encoded: ReadonlyArray<EncodedRequest>,
  time: Fragment,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError | MigrationError | SqlError> => {
  const written = insertEncoded(sql, prefix, time, encoded).pipe(orNotMigrated(prefix))
  const typed = hasUnique(encoded)
    ? Effect.flatMap(written, ({ jobs, wake }) =>
      Effect.map(withRequestArgs(list, encoded, jobs, indexed), (typed) => ({ jobs: typed, wake })))
    : written
  // A unique job's stored args may no longer decode; then nothing of the call may stay written.
  // One unique request that replaces nothing writes nothing on a conflict, so it needs no
  // transaction of its own (which would cost a second durable commit for its wake-up).
  const once = mayWriteBeforeDecoding(encoded) ? transaction(sql, typed) : typed
  // A unique insert locks the rows of the keys it meets, which a node's outcome write may hold while it
  // waits for one of ours: PostgreSQL breaks that cycle by failing one side with a deadlock, most often
  // the insert. Outside the caller's transaction the call wrote nothing then, and is sent again.
  const checked = hasUnique(encoded) && Option.isNone(Context.getOption(context, sql.transactionService))
    ? Effect.retry(once, { while: isDeadlock, times: deadlockRetries })
    : once
  return withInsertedEvents(sql, (publishInserted) =>
    Effect.flatMap(checked, ({ jobs, wake }) => {
      // A conflict inserted nothing: no event, and nothing for the inline runner.
      const fresh = hasConflict(jobs) ? jobs.filter((job) => !job.conflict) : jobs
      const inline = Context.get(context, InlineRunner)
      // Announced before the wake-up, which lets producers start the jobs.
      let after: Effect.Effect<void, SqlError> = publishInserted(fresh)
      if (wake.length > 0) after = Effect.andThen(after, wakeAfterCommit(sql, prefix, wake))
      if (inline === undefined) return Effect.as(after, jobs)
      // The jobs that ran are returned as they ended (state, attempt, errors), with their typed args.
      return Effect.map(Effect.andThen(after, inline(fresh)), (ran) =>
        ran.size === 0 ? jobs : jobs.map((job) => {
          const ended = ran.get(job.id)
          return ended === undefined ? job : { ...ended, args: job.args, conflict: job.conflict }
        }))
    }))
}

/** How many times a unique insert outside a transaction is sent again after a deadlock. */
const deadlockRetries = 3

const isDeadlock = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "SqlError" &&
  (error as { readonly reason?: { readonly _tag?: unknown } }).reason?._tag === "DeadlockError"

const hasUnique = (encoded: ReadonlyArray<EncodedRequest>): boolean => {
  for (const request of encoded) if (request.unique !== undefined) return true
  return false
}

/**
 * Whether the call needs a transaction of its own: a unique request among
 * others takes several statements, and a failure to decode a unique job's
 * stored args could come after the call wrote something. (`insertEncoded`
 * relies on this for calls with several unique or mixed requests.)
 */
const mayWriteBeforeDecoding = (encoded: ReadonlyArray<EncodedRequest>): boolean => {
  if (encoded.length === 1) return (encoded[0]!.unique?.replace.length ?? 0) > 0
  return hasUnique(encoded)
}

/**
 * The jobs with the args of their worker's type. An ordinary job has them
 * already (its request's own); a unique job's are the stored ones (an
 * existing job's, or replaced by a later request of the same call), decoded
 * with the request's worker schema. When those no longer decode (the schema
 * changed since), the call fails with `InvalidJobError` on `args`.
 */
const withRequestArgs = (
  list: ReadonlyArray<Worker.JobRequest>,
  encoded: ReadonlyArray<{ readonly unique: unknown }>,
  jobs: ReadonlyArray<Inserted>,
  indexed: boolean
): Effect.Effect<ReadonlyArray<Inserted>, InvalidJobError> => {
  const stored: Array<number> = []
  for (let position = 0; position < encoded.length; position++) {
    if (encoded[position]!.unique !== undefined) stored.push(position)
  }
  if (stored.length === 0) return Effect.succeed(jobs)
  const typed = [...jobs]
  return Effect.as(
    Effect.forEach(stored, (position) => {
      const request = list[position]!
      const job = typed[position]!
      return request.decodeArgs(job.args).pipe(
        Effect.map((args) => {
          typed[position] = { ...job, args }
        }),
        Effect.mapError((error) =>
          new InvalidJobError({
            worker: request.worker,
            field: "args",
            message: job.worker === request.worker
              ? `the stored args of job ${job.id}, which this request matches, no longer decode with the worker's schema: ${error.message}`
              // `unique.fields` without "worker" let jobs of two workers share a key.
              : `this request matches job ${job.id} of worker ${job.worker} (its unique fields leave out "worker"), ` +
                `whose args do not decode with this worker's schema: ${error.message}`,
            ...(indexed ? { index: position } : {})
          })
        )
      )
    }, { discard: true }),
    typed
  )
}

const hasConflict = (jobs: ReadonlyArray<Inserted>): boolean => {
  for (const job of jobs) if (job.conflict) return true
  return false
}

