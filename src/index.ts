/**
 * effect-oban: a PostgreSQL-backed background job queue for Effect.
 *
 * @since 0.1.0
 */

/** Inserting jobs (and, later, running queues). */
export * as Oban from "./Oban.ts"

/** Defining workers and building job requests. */
export * as Worker from "./Worker.ts"

/** The job row and its states. */
export * as Job from "./Job.ts"

/** Schema migrations. */
export * as Migrations from "./Migrations.ts"

/** The schema prefix and insert limits. */
export * as Config from "./Config.ts"

/** Where "now" comes from: the database or Effect's Clock. */
export * as ObanClock from "./ObanClock.ts"

/** Typed errors. */
export * from "./Errors.ts"
