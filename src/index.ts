/**
 * effect-oban: a PostgreSQL-backed background job queue for Effect.
 *
 * @since 0.1.0
 */

/** Inserting jobs (and, later, running queues). */
export * as Oban from "./Oban.ts"

/** Finding jobs (filters, keyset pages, counts) and acting on every job that matches a filter. */
export * as Jobs from "./Jobs.ts"

/** Nodes, producers, the leader and the crontab as the database sees them; queue commands without a node. */
export * as Cluster from "./Cluster.ts"

// The web dashboard is a subpath of its own, `effect-oban/dashboard` (it serves HTTP with node:http).

/** Inserting jobs inside a transaction of another driver or ORM (node-postgres, Kysely, ...). */
export * as ExternalInsert from "./ExternalInsert.ts"

/** Defining workers and building job requests. */
export * as Worker from "./Worker.ts"

/** Workflows: jobs that wait for other jobs (docs/workflows.md). */
export * as Workflow from "./Workflow.ts"

/** Batches of jobs with callbacks (docs/workflows.md#batches). */
export * as Batch from "./Batch.ts"

/** Chains: jobs that run one after another per key (docs/workflows.md#chains). */
export * as Chain from "./Chain.ts"

/** The job row and its states. */
export * as Job from "./Job.ts"

/** Schema migrations. */
export * as Migrations from "./Migrations.ts"

/** The schema prefix and insert limits: `ObanConfig.layer({ prefix })`. */
export * as ObanConfig from "./Config.ts"

/**
 * The former name of `ObanConfig`, which collided with Effect's own `Config`.
 *
 * @deprecated Use `ObanConfig`.
 */
export * as Config from "./Config.ts"

/** Where "now" comes from: the database or Effect's Clock. */
export * as ObanClock from "./ObanClock.ts"

/** Job lifecycle events (`oban.events`). */
export * as Events from "./Events.ts"

/** Typed errors. */
export * from "./Errors.ts"

/** Periodic jobs from cron expressions. */
export * as Cron from "./Cron.ts"

/** How long failed jobs wait before their next attempt. */
export * as Backoff from "./Backoff.ts"

/** Maintenance services, each with `defaults`, `runOnce` and a loop the node runs. */
export * as Leader from "./Leader.ts"
export * as Pruner from "./Pruner.ts"
export * as Rescuer from "./Rescuer.ts"
export * as Stager from "./Stager.ts"
