/**
 * The typed errors of effect-oban's public API.
 *
 * Every error is a `Schema.TaggedError`, so it can be matched with
 * `Effect.catchTag`, persisted and shown. Database failures are left as the
 * `SqlError` of `effect/sql`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The schema prefix is not a plain, lowercase PostgreSQL identifier. Raised
 * before any SQL runs.
 *
 * @since 0.1.0
 */
export class InvalidPrefixError extends Schema.TaggedError<InvalidPrefixError>()("InvalidPrefixError", {
  prefix: Schema.String,
  message: Schema.String
}) {}

/**
 * The fields of a job request that are checked before an insert.
 *
 * @since 0.1.0
 */
export const JobField = Schema.Literals([
  "args",
  "queue",
  "worker",
  "priority",
  "maxAttempts",
  "scheduledAt",
  "scheduleIn",
  "tags",
  "meta",
  "unique",
  "timeout",
  "backoff",
  /** An option `worker.job(args, options)` does not know (misspelt, say), which it would otherwise ignore. */
  "options"
])

/**
 * @since 0.1.0
 */
export type JobField = typeof JobField.Type

/**
 * A job request was refused before it reached the database: nothing was written.
 * In `insertAll`, `index` names the first bad request of the batch.
 *
 * @since 0.1.0
 */
export class InvalidJobError extends Schema.TaggedError<InvalidJobError>()("InvalidJobError", {
  worker: Schema.String,
  field: JobField,
  message: Schema.String,
  index: Schema.optional(Schema.Int)
}) {}

/**
 * A migration could not be loaded, applied or rolled back, or the schema is
 * not migrated: a node refuses to start on it, and `Oban.insert` and the job
 * management functions fail with this error (naming the `prefix` and the fix)
 * when the prefix has no tables.
 *
 * @since 0.1.0
 */
export class MigrationError extends Schema.TaggedError<MigrationError>()("MigrationError", {
  message: Schema.String,
  /** The schema concerned, when the error is about one. */
  prefix: Schema.optional(Schema.String),
  version: Schema.optional(Schema.Int),
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * A configuration value is out of range or malformed.
 *
 * @since 0.1.0
 */
export class InvalidConfigError extends Schema.TaggedError<InvalidConfigError>()("InvalidConfigError", {
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * The queue does not run on this node.
 *
 * @since 0.1.0
 */
export class UnknownQueueError extends Schema.TaggedError<UnknownQueueError>()("UnknownQueueError", {
  queue: Schema.String,
  node: Schema.String
}) {
  override get message(): string {
    return `queue "${this.queue}" does not run on node ${this.node}`
  }
}

/**
 * A job could not be brought back (`Oban.retryJob` on a cancelled, discarded
 * or completed unique job) because a newer job holds its unique key: nothing
 * was changed. `holder` is that job's id.
 *
 * @since 0.1.0
 */
export class UniqueConflictError extends Schema.TaggedError<UniqueConflictError>()("UniqueConflictError", {
  jobId: Schema.Int,
  holder: Schema.Int,
  message: Schema.String
}) {}

/**
 * A job filter, sort, cursor or bulk-action option was refused before any
 * SQL ran. `field` names the part at fault (`queues`, `inserted`, `cursor`,
 * ...).
 *
 * @since 0.1.0
 */
export class InvalidFilterError extends Schema.TaggedError<InvalidFilterError>()("InvalidFilterError", {
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * A workflow that cannot be inserted as given: a repeated or unknown step
 * name, a dependency on a step that does not exist (or no longer does), a
 * unique job among its steps, or a step name already taken in that workflow.
 *
 * @since 0.1.0
 */
export class InvalidWorkflowError extends Schema.TaggedError<InvalidWorkflowError>()("InvalidWorkflowError", {
  workflowId: Schema.String,
  step: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * A recorded result that does not match its worker's result schema: when
 * the job's value is encoded after `perform` (the attempt fails with this
 * error, retried like any failure), when it is larger than
 * `Worker.maxResultBytes`, or when a dependent reads it
 * (`Workflow.results`) and the stored JSON no longer decodes. Also when a
 * dependent asks for a result that is not there (`reason: "missing"`).
 *
 * @since 0.1.0
 */
export class InvalidResultError extends Schema.TaggedError<InvalidResultError>()("InvalidResultError", {
  worker: Schema.String,
  jobId: Schema.Int,
  reason: Schema.Literals(["encode", "decode", "size", "missing"]),
  message: Schema.String
}) {}

/**
 * The dashboard's own HTTP server could not listen (`Dashboard.serve`): the
 * port is taken, or the host is no address of this machine. `message` says
 * the address and the system's reason (`EADDRINUSE`, `EADDRNOTAVAIL`).
 *
 * @since 0.1.0
 */
export class DashboardServeError extends Schema.TaggedError<DashboardServeError>()("DashboardServeError", {
  address: Schema.String,
  message: Schema.String
}) {}
