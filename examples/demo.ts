/**
 * `npm start`: the live demo. On an embedded PostgreSQL server (or
 * DATABASE_URL) it migrates a schema, enqueues a few thousand jobs inside a
 * transaction, runs three queues on one node and shows a live status until
 * every job has reached its final state: success, retry then success, snooze,
 * timeout then success, cancellation by the worker and by `cancelJob`, and
 * scheduled jobs. Then it checks the outcome and, with `--once`, shuts the
 * node down gracefully and exits (0 when every job ended as expected);
 * otherwise the node keeps running until SIGTERM or Ctrl-C. (Ctrl-C in a
 * terminal also reaches the embedded PostgreSQL server, which then stops at
 * the same time as the node; the node's shutdown logs the lost connections.)
 *
 * The web dashboard runs alongside, on http://127.0.0.1:4000 (DASHBOARD_PORT
 * to change it; a free port with `--once`), behind a token printed at start
 * (EFFECT_OBAN_DASHBOARD_TOKEN to choose it).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Context, Effect, Exit, Layer, References, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Dashboard from "../src/Dashboard.ts"
import { Migrations, Oban, ObanConfig } from "../src/index.ts"
import { DatabaseLive } from "./database.ts"
import { batch, ExportReport, queues, workers } from "./demoWorkers.ts"
import { render, show, snapshot } from "./status.ts"

const once = process.argv.includes("--once")
const live = process.stdout.isTTY === true && !once
const prefix = "demo"

const checkOutcome = (expected: Record<string, Record<string, number>>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ worker: string; state: string; n: number }>`
      SELECT worker, state::text, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all GROUP BY worker, state`
    const actual: Record<string, Record<string, number>> = {}
    for (const row of rows) actual[row.worker] = { ...actual[row.worker], [row.state]: row.n }
    const problems = Object.entries(expected).flatMap(([worker, states]) =>
      JSON.stringify(actual[worker]) === JSON.stringify(states)
        ? []
        : [`${worker}: expected ${JSON.stringify(states)}, got ${JSON.stringify(actual[worker] ?? {})}`]
    )
    const [timeouts] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all
      WHERE worker = 'Transcode' AND errors @> '[{"kind": "timeout"}]'`
    if (timeouts!.n !== expected["Transcode"]!["completed"]) problems.push(`Transcode: ${timeouts!.n} jobs recorded a timeout`)
    return problems
  })

const program = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)
  yield* Migrations.run() // the prefix comes from ObanConfig.layer, provided below
  const { requests, expected } = batch()

  // Enqueue everything in one transaction: all of it appears at once, on commit.
  const started = Date.now()
  const jobs = yield* sql.withTransaction(Oban.insertAll(requests))
  yield* Console.log(`enqueued ${jobs.length} jobs in ${Date.now() - started} ms`)

  const scope = yield* Scope.make()
  const context = yield* Layer.buildWithScope(
    Oban.layer({ queues, workers, stageInterval: "200 millis", shutdownGracePeriod: "5 seconds" }),
    scope
  ).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))
  const oban = Context.get(context, Oban.Oban)

  // The dashboard, in the node's scope: it stops with the node.
  const token = process.env["EFFECT_OBAN_DASHBOARD_TOKEN"] ?? Dashboard.generateToken()
  const port = once ? 0 : Number(process.env["DASHBOARD_PORT"] ?? 4000)
  const { url } = yield* Scope.provide(Dashboard.serve({ token, port, pollInterval: "1 second" }), scope)
  const dashboard = `dashboard: ${url}/ (sign in with any user name and the password ${token})`
  yield* Console.log(dashboard)

  // A long job, cancelled from outside while it runs on the node.
  const report = yield* oban.insert(ExportReport.job({ reportId: 1 }))
  yield* Effect.forkDetach(Effect.gen(function*() {
    yield* Effect.sleep("1500 millis")
    yield* oban.cancelJob(report.id)
  }))

  let last = { at: Date.now(), completed: 0 }
  let rate = 0
  while (true) {
    yield* Effect.sleep(live ? "250 millis" : "1 second")
    const snap = yield* snapshot(sql, prefix)
    const now = Date.now()
    rate = ((snap.completed - last.completed) * 1000) / Math.max(1, now - last.at)
    last = { at: now, completed: snap.completed }
    yield* show(`${render(snap, rate, (now - started) / 1000)}\n\n${dashboard}`, live)
    if (snap.pending === 0) break
  }
  yield* Console.log(`drained in ${((Date.now() - started) / 1000).toFixed(1)} s`)

  const problems = yield* checkOutcome(expected)
  if (problems.length === 0) yield* Console.log("every job reached its expected final state")
  else yield* Console.error(`unexpected outcome:\n  ${problems.join("\n  ")}`)

  if (!once) {
    yield* Console.log(`the node keeps running; ${dashboard}`)
    yield* Console.log("press Ctrl-C to stop it gracefully")
    yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        Console.log("shutting down gracefully").pipe(
          Effect.andThen(Scope.close(scope, Exit.void)),
          Effect.andThen(Console.log("stopped"))
        )
      )
    )
  }
  yield* Console.log("shutting down gracefully")
  yield* Scope.close(scope, Exit.void)
  if (problems.length > 0) return yield* Effect.fail(new Error("the demo's jobs did not end as expected"))
}).pipe(Effect.provide(ObanConfig.layer({ prefix })))

program.pipe(Effect.provide(DatabaseLive({ maxConnections: 20 })), NodeRuntime.runMain)
