/**
 * Running nodes inside a test: each `startNode` builds its own `Oban.layer`
 * in a scope the test can close (to shut the node down mid-job), and
 * `waitFor` polls the database until a condition holds.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Logger, References, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../../src/Oban.ts"
import { testLogLevel } from "./db.ts"
import type * as Worker from "../../src/Worker.ts"


export interface RunningNode {
  readonly oban: Oban.ObanShape
  /** Shuts the node down (gracefully) and waits for it. */
  readonly stop: Effect.Effect<void>
}

export const startNode = <W extends Worker.Any>(
  options: Oban.LayerOptions<W>
): Effect.Effect<RunningNode, unknown, PgClient.PgClient | SqlClient | Scope.Scope | Worker.Requirements<W>> =>
  Effect.gen(function*() {
    const outer = yield* Scope.Scope
    const scope = yield* Scope.fork(outer)
    const context = yield* Layer.buildWithScope(Layer.fresh(Oban.layer(options)), scope).pipe(
      Effect.provideService(References.MinimumLogLevel, testLogLevel)
    )
    const oban = Context.get(context, Oban.Oban)
    return { oban, stop: Scope.close(scope, Exit.void) }
  })

/** A line a node wrote: its text, and the annotations it carried. */
export interface LogLine {
  readonly text: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/**
 * Starts a node whose layer alone is given a logger that keeps every line (so every line it sees is
 * one the node wrote), at every level; `stop` closes it, as does the caller's scope.
 */
export const startLogged = <W extends Worker.Any>(options: Oban.LayerOptions<W>) =>
  Effect.gen(function*() {
    const lines: Array<LogLine> = []
    const capture = Logger.make(({ fiber, message }) => {
      lines.push({
        text: Array.isArray(message) ? message.join(" ") : String(message),
        annotations: fiber.getRef(References.CurrentLogAnnotations)
      })
    })
    const scope = yield* Scope.fork(yield* Scope.Scope)
    const context = yield* Layer.buildWithScope(Layer.fresh(Oban.layer(options)), scope).pipe(
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      Effect.provideService(References.MinimumLogLevel, "All")
    )
    return { oban: Context.get(context, Oban.Oban), lines, stop: Scope.close(scope, Exit.void) }
  })

/**
 * Holds the row of job `id` locked (`FOR UPDATE`) in a transaction of its own (an application
 * transaction that touched the job), until `release`, which returns once that transaction has ended.
 */
export const holdRow = (prefix: string, id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const holding = yield* Deferred.make<void>()
    const released = yield* Deferred.make<void>()
    const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT id FROM ${sql(prefix)}.oban_jobs WHERE id = ${id} FOR UPDATE`
      yield* Deferred.succeed(holding, undefined)
      yield* Deferred.await(released)
    })))
    yield* Deferred.await(holding)
    return { release: Effect.andThen(Deferred.succeed(released, undefined), Fiber.join(holder)) }
  })

/** Polls `check` every 25 ms until it returns true; dies after `timeout`. */
export const waitFor = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.Input = "20 seconds"
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for: ${what}`))
      yield* Effect.sleep("25 millis")
    }
  })

export interface JobRowView {
  readonly id: number
  readonly state: string
  readonly attempt: number
  readonly errors: ReadonlyArray<{ readonly kind: string; readonly message: string; readonly attempt: number; readonly at: string; readonly cause?: string }>
  readonly scheduled_at: Date
  readonly attempted_at: Date | null
  readonly cancel_requested_at: Date | null
}

export const jobRow = (prefix: string, id: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<JobRowView>`
      SELECT id::int AS id, state, attempt, errors, scheduled_at, attempted_at, cancel_requested_at
      FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${id}`
    return row!
  })

/**
 * A producer row of `node` that beat just now, for jobs claimed by hand (`claimJobs`, an `UPDATE`): a
 * cancel of a job it answers for is only requested, as for a job running on a live node.
 */
export const liveProducer = (prefix: string, node = "live-node") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const id = crypto.randomUUID()
    yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit")
               VALUES (${id}, ${node}, ${`hand-${id}`}, 1)`
    return id
  })

/**
 * A producer row of `node` last heard from `silence` ago (an interval, e.g. `2 minutes`), with `meta`
 * (what a node reports: `heartbeatMillis`, `rescueAfterMillis`).
 */
export const silentProducer = (prefix: string, node: string, silence: string, meta: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const id = yield* liveProducer(prefix, node)
    yield* sql`UPDATE ${sql(prefix)}.oban_producers SET updated_at = now() - ${silence}::interval, meta = ${JSON.stringify(meta)}::jsonb
               WHERE id = ${id}`
    return id
  })

/** Makes a live producer (see `liveProducer`) the one the executing jobs `ids` were claimed by. */
export const answeredByLiveProducer = (prefix: string, ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const producer = yield* liveProducer(prefix)
    yield* sql`UPDATE ${sql(prefix)}.oban_jobs
               SET attempted_by = ARRAY[COALESCE(attempted_by[1], 'live-node'), ${producer}, COALESCE(attempted_by[3], 'claim-' || id)]
               WHERE id IN ${sql.in(ids)}`
    return producer
  })

export const countByState = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ state: string; n: number }>`
      SELECT state::text, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY state`
    return Object.fromEntries(rows.map((row) => [row.state, row.n])) as Record<string, number>
  })

/** Waits until `count` producer rows exist in `prefix` (a node's producers have registered). */
export const producersRegistered = (prefix: string, count = 1) =>
  waitFor("the producer registered", Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_producers`
    return rows[0]!.n === count
  }))

/** Holds the CPU for `millis` without yielding, as CPU-bound work does. */
export const busyFor = (millis: number): void => {
  const until = performance.now() + millis
  while (performance.now() < until) {
    // busy
  }
}
