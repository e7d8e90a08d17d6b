/**
 * The effect-oban CLI as an OS process (bin/effect-oban.js) against real
 * PostgreSQL: every command, --json output parsed, exit codes, and clear
 * errors for bad input and for an unreachable or unmigrated database.
 */
import { assert, it as plain, layer } from "@effect/vitest"
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { ConnectionError, SqlError } from "effect/sql/SqlError"
import { classify } from "../src/cli/main.ts"
import { ExitCode } from "../src/cli/exitCodes.ts"
import * as Cron from "../src/Cron.ts"
import * as Oban from "../src/Oban.ts"
import * as Workflow from "../src/Workflow.ts"
import * as Worker from "../src/Worker.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { answeredByLiveProducer, holdRow, jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("cli")
const bin = fileURLToPath(new URL("../bin/effect-oban.js", import.meta.url))
const built = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI with `args` (and --prefix unless told otherwise); DATABASE_URL set unless `env` says otherwise. */
const cli = (args: ReadonlyArray<string>, options: { readonly env?: Record<string, string | undefined>; readonly script?: string } = {}) =>
  Effect.promise(() =>
    new Promise<Run>((resolve) => {
      const env: Record<string, string | undefined> = { ...process.env, DATABASE_URL: databaseUrl(), ...options.env }
      for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key]
      execFile(process.execPath, [options.script ?? bin, ...args], { env: env as NodeJS.ProcessEnv, timeout: 30_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resolve({ code, stdout, stderr })
      })
    })
  )

const withPrefix = (...args: ReadonlyArray<string>) => [...args, "--prefix", prefix]
const parsed = <A>(run: Run): A => {
  assert.strictEqual(run.code, 0, `exit 0 expected; stderr: ${run.stderr}`)
  return JSON.parse(run.stdout) as A
}

const Mail = Worker.make("Mail", { args: Schema.Struct({ to: Schema.String }), queue: "mailers", perform: () => Effect.never })

/** The node the queue commands reach. Its jobs never finish: it does not wait for them when its test ends. */
const cliNode = { node: "cli-node", queues: { mailers: 2, quiet: 1 }, shutdownGracePeriod: "100 millis", workers: [Mail] } as const

layer(testLayer(prefix, { migrate: false, maxConnections: 4 }), { excludeTestServices: true })("effect-oban CLI (OS processes)", (it) => {
  it.effect("clear errors for bad input, an unmigrated schema and an unreachable database", () =>
    Effect.gen(function*() {
      const [unmigrated, status0, sqlText, unreachable, badState, typo, noFilter, badPrefix, noUrl, badJson, badRange, noName, noNode, badFlag] = yield* Effect.all([
        cli(withPrefix("jobs", "list")),
        cli(withPrefix("migrate", "status", "--json")),
        cli(withPrefix("migrate", "sql"), { env: { DATABASE_URL: undefined } }),
        cli(["jobs", "list", "--database-url", "postgres://postgres@127.0.0.1:1/nothing"]),
        cli(withPrefix("jobs", "list", "--state", "stuck")),
        cli(withPrefix("jobs", "lisst")),
        cli(withPrefix("jobs", "cancel")),
        cli(["jobs", "list", "--prefix", "Not-A-Prefix"]),
        cli(withPrefix("nodes"), { env: { DATABASE_URL: undefined } }),
        cli(withPrefix("jobs", "list", "--args", "[1]", "--json")),
        cli(withPrefix("jobs", "list", "--inserted-after", "2030-01-01", "--inserted-before", "2020-01-01")),
        cli(withPrefix("queues", "pause", "")),
        cli(withPrefix("queues", "resume", "mailers", "--node", "")),
        cli(["--json", "queues", "pause", "mailers", "--bogus"])
      ], { concurrency: 3 })
      assert.strictEqual(unmigrated.code, 4)
      assert.include(unmigrated.stderr, `run \`effect-oban migrate up --prefix ${prefix}\``)
      // The command first, not the library's advice for code (Migrations.run() under a layer).
      assert.match(unmigrated.stderr, new RegExp(`^effect-oban: schema "${prefix}" has no effect-oban tables`))
      assert.notInclude(unmigrated.stderr, "Migrations.run()")
      // Printed on stdout, and exit 4 (not migrated) on stderr, for a deploy to gate on.
      assert.strictEqual((JSON.parse(status0.stdout) as { current: number }).current, 0)
      assert.deepStrictEqual([status0.code, JSON.parse(status0.stderr).error.tag], [4, "NotMigrated"])
      assert.include(status0.stderr, `is at version 0 of`)
      assert.strictEqual(sqlText.code, 0)
      assert.include(sqlText.stdout, `CREATE TABLE "${prefix}".oban_jobs`)
      assert.strictEqual(unreachable.code, 3)
      assert.include(unreachable.stderr, "cannot reach the database")
      // A job id is written in digits: "1e2" was read as 100 (and cancelled job 100); 0 is bad input, not "no such job".
      for (const id of ["1e2", "0", "-1", "0x10"]) {
        const bad = yield* cli(withPrefix("jobs", "cancel", id, "--json"))
        assert.strictEqual(bad.code, 2, `${id}: ${bad.stderr}`)
        assert.include(bad.stderr, "a job id: a whole number from 1 to 9007199254740991, in digits")
      }
      // A server that refuses while connecting (no such database): 3 too, tagged as the docs say.
      const noDatabase = new URL(databaseUrl())
      noDatabase.pathname = "/oban_no_such_database"
      const refused = yield* cli(["nodes", "--database-url", noDatabase.toString(), "--json"])
      assert.strictEqual(refused.code, 3, refused.stderr)
      assert.deepStrictEqual(
        [JSON.parse(refused.stderr.trim().split("\n").at(-1)!).error.tag, refused.stderr.includes("oban_no_such_database")],
        ["SqlError", true]
      )
      assert.strictEqual(badRange.code, 2)
      // Once: the message used to name the field itself too ("inserted: inserted: ...").
      assert.include(badRange.stderr, `effect-oban: inserted: "after" must be earlier than "before"`)
      // The field is not named twice either ("queue: queue name ...").
      assert.strictEqual(noName.code, 2)
      assert.strictEqual(noName.stderr, `effect-oban: queue name "" must not be empty\n`)
      // A node no name can fit is bad input too, not a node that happens not to run (exit 5).
      assert.strictEqual(noNode.code, 2)
      assert.strictEqual(noNode.stderr, `effect-oban: node name "" must not be empty\n`)
      // A parse error's JSON names the error itself, not the help it comes wrapped in ("ShowHelp").
      assert.strictEqual(badFlag.code, 2)
      assert.deepStrictEqual(JSON.parse(badFlag.stderr.trim().split("\n").at(-1)!), {
        error: { tag: "UnrecognizedOption", message: "Unrecognized flag: --bogus in command effect-oban queues pause", exitCode: 2 }
      })
      assert.strictEqual(badState.code, 2)
      assert.include(badState.stderr, "states")
      assert.strictEqual(typo.code, 2)
      assert.include(typo.stderr, "list")
      assert.strictEqual(noFilter.code, 2)
      assert.include(noFilter.stderr, "--all")
      assert.strictEqual(badPrefix.code, 2)
      assert.include(badPrefix.stderr, "prefix")
      assert.strictEqual(noUrl.code, 2)
      assert.include(noUrl.stderr, "DATABASE_URL")
      assert.strictEqual(badJson.code, 2)
      assert.strictEqual(JSON.parse(badJson.stderr).error.exitCode, 2)
      // One line, as the docs say: a script reads it with one read.
      assert.strictEqual(badJson.stderr.trimEnd().split("\n").length, 1)
    }), 120_000)

  // The tests of this file run in order and share the schema: from here on it is migrated. Each test
  // runs a dozen CLI processes at most, so a loaded two-core machine finishes it well inside its timeout.
  it.effect("migrate up, status, and a rollback that needs --yes", () =>
    Effect.gen(function*() {
      const up = parsed<{ versions: ReadonlyArray<number>; to: number }>(yield* cli(withPrefix("migrate", "up", "--json")))
      assert.isTrue(up.versions.length >= 8)
      const [statusRun, again] = yield* Effect.all([
        cli(withPrefix("migrate", "status", "--json")),
        cli(withPrefix("migrate", "up"))
      ], { concurrency: 2 })
      const status = parsed<{ current: number; latest: number }>(statusRun)
      assert.strictEqual(status.current, status.latest)
      assert.include(again.stdout, "nothing to do")

      // A rollback needs --yes; without it the command says what it would roll back and changes nothing.
      // None of these changes the schema, so they run side by side.
      const above = status.latest - 1
      const [unconfirmed, negative, beyond, beyondSql, narrowsNothing] = yield* Effect.all([
        cli(withPrefix("migrate", "down", "--to", "0")),
        cli(withPrefix("migrate", "down", "--to", "-1")),
        // A version past the latest is bad input too (2), not a schema without tables (4).
        cli(withPrefix("migrate", "up", "--to", "99", "--json")),
        cli(withPrefix("migrate", "sql", "--to", "99"), { env: { DATABASE_URL: undefined } }),
        // A filter flag that narrows nothing is no filter: --all is still asked for.
        cli(withPrefix("jobs", "delete", "--args", "{}"))
      ], { concurrency: 3 })
      assert.strictEqual(unconfirmed.code, 2)
      assert.include(unconfirmed.stderr, `this would roll back ${status.latest}, ${above},`)
      assert.include(unconfirmed.stderr, "removing every effect-oban table")
      assert.include(unconfirmed.stderr, "--yes")
      assert.strictEqual(negative.code, 2)
      assert.include(negative.stderr, "--to must be an integer from 0 to")
      assert.strictEqual(narrowsNothing.code, 2)
      assert.include(narrowsNothing.stderr, "pass --all to delete every job")
      assert.deepStrictEqual([beyond.code, JSON.parse(beyond.stderr).error.tag], [2, "InvalidConfigError"])
      assert.strictEqual(beyondSql.code, 2)
      assert.include(beyondSql.stderr, "to: target version must be an integer from 0 to")
      const after = parsed<{ current: number }>(yield* cli(withPrefix("migrate", "status", "--json")))
      assert.strictEqual(after.current, status.latest)
      const rolledBack = parsed<{ versions: ReadonlyArray<number> }>(
        yield* cli(withPrefix("migrate", "down", "--to", String(above), "--yes", "--json"))
      )
      assert.deepStrictEqual(rolledBack.versions, [status.latest])
      const reapplied = parsed<{ versions: ReadonlyArray<number> }>(yield* cli(withPrefix("migrate", "up", "--json")))
      assert.deepStrictEqual(reapplied.versions, [status.latest])
    }))

  it.effect("jobs list (filters, pages), show, cancel, retry and delete", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const jobs = yield* Oban.insertAll(Array.from({ length: 5 }, (_, n) =>
        Mail.job({ to: `u${n}` }, { tags: n < 3 ? ["vip"] : [], scheduleIn: "1 hour" })))
      const other = yield* Oban.insert(Mail.job({ to: "x" }, { queue: "other" }))
      type Page = { jobs: ReadonlyArray<{ id: number; queue: string; args: { to: string } }>; next: string | null }
      const first = parsed<Page>(yield* cli(withPrefix("jobs", "list", "--queue", "mailers", "--limit", "2", "--order", "asc", "--json")))
      assert.deepStrictEqual(first.jobs.map((job) => job.id), [jobs[0]!.id, jobs[1]!.id])
      assert.isString(first.next)
      const rest = parsed<Page>(yield* cli(withPrefix(
        "jobs", "list", "--queue", "mailers", "--limit", "10", "--order", "asc", "--cursor", first.next!, "--json"
      )))
      assert.deepStrictEqual(rest.jobs.map((job) => job.id), jobs.slice(2).map((job) => job.id))
      assert.isNull(rest.next)
      const [vip, byArgs, human, shown, missing] = yield* Effect.all([
        cli(withPrefix("jobs", "list", "--tag", "vip", "--json")),
        cli(withPrefix("jobs", "list", "--args", "{\"to\":\"x\"}", "--json")),
        cli(withPrefix("jobs", "list", "--state", "scheduled")),
        cli(withPrefix("jobs", "show", String(jobs[1]!.id), "--json")),
        cli(withPrefix("jobs", "show", "987654321"))
      ], { concurrency: 3 })
      assert.strictEqual(parsed<Page>(vip).jobs.length, 3)
      assert.deepStrictEqual(parsed<Page>(byArgs).jobs.map((job) => job.id), [other.id])
      assert.match(human.stdout, /^ID\s+STATE\s+QUEUE\s+WORKER/)
      assert.strictEqual(human.stdout.trim().split("\n").length, 1 + 5)
      assert.deepStrictEqual(parsed<{ id: number; args: unknown }>(shown).args, { to: "u1" })
      assert.strictEqual(missing.code, 5)
      assert.include(missing.stderr, "no job with id 987654321")

      const cancelled = parsed<{ changed: number }>(yield* cli(withPrefix("jobs", "cancel", "--queue", "mailers", "--tag", "vip", "--json")))
      assert.strictEqual(cancelled.changed, 3)
      const states = yield* sql<{ readonly state: string }>`
        SELECT state::text FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'mailers' ORDER BY id`
      assert.deepStrictEqual(states.map((row) => row.state), ["cancelled", "cancelled", "cancelled", "scheduled", "scheduled"])
      const retried = yield* cli(withPrefix("jobs", "retry", String(jobs[0]!.id)))
      assert.strictEqual(retried.code, 0)
      assert.include(retried.stdout, "retried 1 job")
      const deleted = parsed<{ changed: number }>(yield* cli(withPrefix("jobs", "delete", "--state", "cancelled", "--batch-size", "1", "--json")))
      assert.strictEqual(deleted.changed, 2)
      const left = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
      assert.strictEqual(left[0]!.n, 4)

      // Ids named on the command line: one the action leaves alone is said with its state, and an id no
      // job has fails the command with code 5 after the others were acted on (it printed "0 jobs", code 0).
      const [busy, idle] = yield* Oban.insertAll([Mail.job({ to: "busy" }, { queue: "named" }), Mail.job({ to: "idle" }, { queue: "named" })])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now() WHERE id = ${busy!.id}`
      const named = yield* cli(withPrefix("jobs", "delete", String(busy!.id), String(idle!.id), "987654321"))
      assert.strictEqual(named.code, 5, named.stderr)
      assert.include(named.stdout, "deleted 1 job")
      assert.include(named.stdout, `left job ${busy!.id} alone: it is executing`)
      assert.include(named.stderr, "no job with id 987654321")
      const remaining = yield* sql<{ readonly id: number }>`
        SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'named' ORDER BY id`
      assert.deepStrictEqual(remaining.map((row) => row.id), [busy!.id])
      const retriedJson = yield* cli(withPrefix("jobs", "retry", String(busy!.id), "--json"))
      assert.strictEqual(retriedJson.code, 0, retriedJson.stderr)
      const report = parsed<{ changed: number; left: unknown; missing: unknown }>(retriedJson)
      assert.deepStrictEqual([report.changed, report.left, report.missing], [0, [{ id: busy!.id, state: "executing" }], []])
      const cancelMissing = yield* cli(withPrefix("jobs", "cancel", "987654321", "--json"))
      assert.strictEqual(cancelMissing.code, 5)
      // A cancel of an executing job whose node answers for it is only requested: the output says the row stays
      // so until its node stopped it.
      yield* answeredByLiveProducer(prefix, [busy!.id])
      const cancelBusy = yield* cli(withPrefix("jobs", "cancel", String(busy!.id)))
      assert.strictEqual(cancelBusy.code, 0, cancelBusy.stderr)
      assert.include(cancelBusy.stdout, "cancelled 1 job (1 batch): 1 executing")
      assert.include(cancelBusy.stdout, "note: 1 of them is running: its row stays executing until stopped, then says cancelled")
      assert.include(cancelBusy.stdout, "if a node was killed, cancel again once it has been silent for its rescueAfter")
      assert.strictEqual((yield* jobRow(prefix, busy!.id)).state, "executing")
      // One no node answers for (none running): cancelled at once, and the output says its attempt may still run.
      const [stranded] = yield* Oban.insertAll([Mail.job({ to: "stranded" }, { queue: "named" })])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),
                 attempted_by = ARRAY['gone-node', ${crypto.randomUUID()}, 'claim'] WHERE id = ${stranded!.id}`
      const cancelStranded = yield* cli(withPrefix("jobs", "cancel", String(stranded!.id)))
      assert.strictEqual(cancelStranded.code, 0, cancelStranded.stderr)
      assert.include(cancelStranded.stdout, "cancelled 1 job (1 batch): 1 executing")
      assert.notInclude(cancelStranded.stdout, "is running")
      assert.include(cancelStranded.stdout, "note: 1 of them was executing under a node that no longer answers")
      const strandedRow = yield* jobRow(prefix, stranded!.id)
      assert.deepStrictEqual([strandedRow.state, strandedRow.errors.map((entry) => entry.kind)], ["cancelled", ["cancelled"]])
      assert.match(strandedRow.errors[0]!.message, /^cancelled while executing on node gone-node, which no longer answers for it/)
      yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE id = ${stranded!.id}`
      yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE id = ${busy!.id}`

      // What the changed jobs were; a retry without --state that re-runs completed jobs says so.
      const [done, failed] = yield* Oban.insertAll([Mail.job({ to: "done" }, { queue: "named" }), Mail.job({ to: "failed" }, { queue: "named" })])
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'completed', attempt = 1, completed_at = now() WHERE id = ${done!.id}`
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'discarded', attempt = 20, discarded_at = now() WHERE id = ${failed!.id}`
      const byWorker = yield* cli(withPrefix("jobs", "retry", "--queue", "named"))
      assert.strictEqual(byWorker.code, 0, byWorker.stderr)
      assert.include(byWorker.stdout, "retried 2 jobs (1 batch): ")
      assert.include(byWorker.stdout, "1 completed")
      assert.include(byWorker.stdout, "1 discarded")
      assert.include(byWorker.stdout, "note: 1 of them had completed and will run again (narrow a retry with --state)")
      yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE queue = 'named'`
      // A workflow step is retried through retryJob (which may suspend it again): its state is said too.
      const inserted = yield* Workflow.insert(Workflow.make("cli-step").add("only", Mail.job({ to: "step" }, { queue: "named" })))
      const step = inserted.jobs.only
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = ${step.id}`
      const stepRetry = yield* cli(withPrefix("jobs", "retry", String(step.id), "--json"))
      assert.strictEqual(stepRetry.code, 0, stepRetry.stderr)
      assert.deepStrictEqual(parsed<{ changed: number; from: unknown }>(stepRetry).from, { cancelled: 1 })
      yield* sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE queue = 'named'`
    }), 120_000)

  it.effect("keeps its compiled code in Node's compile cache (in TMPDIR), unless NODE_DISABLE_COMPILE_CACHE is set", () =>
    Effect.gen(function*() {
      const cached = mkdtempSync(join(tmpdir(), "oban-cli-cache-"))
      const disabled = mkdtempSync(join(tmpdir(), "oban-cli-nocache-"))
      try {
        const [first, off] = yield* Effect.all([
          cli(["--version"], { env: { TMPDIR: cached } }),
          cli(["--version"], { env: { TMPDIR: disabled, NODE_DISABLE_COMPILE_CACHE: "1" } })
        ], { concurrency: 2 })
        assert.deepStrictEqual([first.code, off.code], [0, 0])
        assert.strictEqual(first.stdout, off.stdout)
        // One directory per Node version, holding an entry per module compiled.
        const [versionDir] = readdirSync(join(cached, "node-compile-cache"))
        assert.isAbove(readdirSync(join(cached, "node-compile-cache", versionDir!)).length, 100)
        assert.isFalse(existsSync(join(disabled, "node-compile-cache")))
        // Read back by the next command, which says the same.
        const second = yield* cli(["--version"], { env: { TMPDIR: cached } })
        assert.deepStrictEqual([second.code, second.stdout], [0, first.stdout])
      } finally {
        rmSync(cached, { recursive: true, force: true })
        rmSync(disabled, { recursive: true, force: true })
      }
    }))

  it.effect("queues, nodes and cron against a running node", () =>
    Effect.gen(function*() {
      const { oban } = yield* startNode({
        ...cliNode,
        crontab: [Cron.entry("*/5 * * * *", Mail, { to: "cron" }, { name: "every-five", queue: "crons" })]
      })
      yield* oban.ready
      yield* waitFor("leadership", oban.isLeader)
      type Status = {
        queues: ReadonlyArray<{
          queue: string
          producers: ReadonlyArray<{ node: string; limit: number }>
          counts: Record<string, number>
          clusterLimits: unknown
        }>
      }
      // Cluster-wide limits stored for a queue (as a node with them in its config writes them).
      const sql = yield* SqlClient
      yield* sql`INSERT INTO ${sql(prefix)}.oban_queues (name, global_limit, "partition", rate_limit, rate_period_ms)
                 VALUES ('quiet', 2, '{"by":"args","key":"to"}', 10, 1000)
                 ON CONFLICT (name) DO UPDATE SET global_limit = 2, "partition" = '{"by":"args","key":"to"}',
                   rate_limit = 10, rate_period_ms = 1000`
      // A node that crashed a minute ago, not yet rescued: its heartbeats are late.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
                 VALUES (gen_random_uuid(), 'gone-node', 'gone-queue', 1, false, '{"heartbeatMillis":10000}',
                         now() - interval '5 minutes', now() - interval '1 minute')`
      const [status, nodes, cron, quietTable, nodesTable] = yield* Effect.all([
        cli(withPrefix("queues", "status", "--json")),
        cli(withPrefix("nodes", "--json")),
        cli(withPrefix("cron", "--json")),
        cli(withPrefix("queues", "status", "quiet")),
        cli(withPrefix("nodes"))
      ], { concurrency: 3 }).pipe(Effect.ensuring(Effect.orDie(Effect.andThen(
        sql`DELETE FROM ${sql(prefix)}.oban_queues WHERE name = 'quiet'`,
        sql`DELETE FROM ${sql(prefix)}.oban_producers WHERE node = 'gone-node'`
      ))))
      const mailers = parsed<Status>(status).queues.find((queue) => queue.queue === "mailers")!
      assert.deepStrictEqual(mailers.producers.map((p) => [p.node, p.limit]), [["cli-node", 2]])
      assert.strictEqual(mailers.counts["available"]! + mailers.counts["executing"]! + mailers.counts["scheduled"]!, 3)
      // A queue without jobs counts 0 in every state, as the table shows, not an empty object.
      const quiet = parsed<Status>(status).queues.find((queue) => queue.queue === "quiet")!
      assert.deepStrictEqual(quiet.counts, {
        available: 0, scheduled: 0, executing: 0, retryable: 0, completed: 0, discarded: 0, cancelled: 0, suspended: 0
      })
      // Its cluster-wide limits, in the JSON and in the table; a queue without them has none.
      assert.deepStrictEqual(quiet.clusterLimits, { global: 2, partition: { by: "args", key: "to" }, rate: { limit: 10, periodMillis: 1000 } })
      assert.strictEqual(mailers.clusterLimits, null)
      assert.match(quietTable.stdout, /quiet\s+1\s+1\s+global 2 per args\.to; rate 10 per 1s\s+0\s+no/)
      const view = parsed<{ leader: { node: string }; nodes: ReadonlyArray<{ node: string; producers: ReadonlyArray<{ late: boolean }> }> }>(nodes)
      assert.strictEqual(view.leader.node, "cli-node")
      assert.deepStrictEqual(view.nodes.find((node) => node.node === "cli-node")?.producers.map((p) => p.late), [false, false])
      assert.deepStrictEqual(view.nodes.find((node) => node.node === "gone-node")?.producers.map((p) => p.late), [true])
      assert.match(nodesTable.stdout, /gone-node\s+gone-queue\s+1\s+0\s+no\s+6\d s ago \(late\)/, nodesTable.stdout)
      assert.notMatch(nodesTable.stdout, /cli-node.*\(late\)/)
      const cronView = parsed<{ cronLeader: { node: string } | undefined; crons: ReadonlyArray<{ name: string; nextRun: string }> }>(cron)
      const entries = cronView.crons
      assert.deepStrictEqual(entries.map((entry) => entry.name), ["every-five"])
      assert.strictEqual(cronView.cronLeader?.node, "cli-node")
      assert.isTrue(Date.parse(entries[0]!.nextRun) - Date.now() <= 5 * 60_000 + 5_000)
    }))

  it.effect("queue commands reach a running node; a pause for every node is kept", () =>
    Effect.gen(function*() {
      const { oban } = yield* startNode(cliNode)
      yield* oban.ready
      const paused = yield* cli(withPrefix("queues", "pause", "quiet"))
      assert.strictEqual(paused.code, 0)
      yield* waitFor("quiet paused", Effect.map(oban.checkQueue("quiet"), (state) => state.paused))
      assert.strictEqual((yield* cli(withPrefix("queues", "scale", "mailers", "4", "--node", "cli-node"))).code, 0)
      yield* waitFor("mailers scaled", Effect.map(oban.checkQueue("mailers"), (state) => state.limit === 4))
      const [unknown, badLimit, human, ahead] = yield* Effect.all([
        cli(withPrefix("queues", "resume", "nope")),
        cli(withPrefix("queues", "scale", "mailers", "0")),
        cli(withPrefix("queues", "status")),
        cli(withPrefix("queues", "pause", "later"))
      ], { concurrency: 3 })
      assert.strictEqual(unknown.code, 5)
      assert.include(unknown.stderr, `no running node has queue "nope"`)
      assert.strictEqual(badLimit.code, 2)
      // A pause for every node of a queue no node runs yet is kept for the nodes that start it: not an error.
      assert.strictEqual(ahead.code, 0)
      assert.include(ahead.stdout, `paused queue later: no running node has queue "later"; nodes that start it later start it paused`)
      const sql = yield* SqlClient
      const [kept] = yield* sql<{ paused: boolean }>`
        SELECT paused_at IS NOT NULL AS paused FROM ${sql(prefix)}.oban_queues WHERE name = 'later'`
      assert.isTrue(kept?.paused)
      const keptStatus = yield* cli(withPrefix("queues", "status", "later"))
      assert.match(keptStatus.stdout, /later\s+0\s+0\s+-\s+0\s+kept/)
      // The resume clears the kept pause: it did something though no node runs the queue.
      const cleared = yield* cli(withPrefix("queues", "resume", "later"))
      assert.strictEqual(cleared.code, 0)
      assert.include(cleared.stdout, `resumed queue later: no running node has queue "later"; the pause kept for nodes that start later is cleared`)
      assert.strictEqual((yield* cli(withPrefix("queues", "resume", "later"))).code, 5, "nothing left to clear")
      // Resuming one node of a queue paused for every node says the pause still holds for new nodes.
      const oneNode = yield* cli(withPrefix("queues", "resume", "quiet", "--node", "cli-node", "--json"))
      assert.deepStrictEqual(parsed<{ producers: number; keptPause: boolean }>(oneNode), {
        queue: "quiet", node: "cli-node", producers: 1, deadProducers: 0, keptPause: true
      } as never)
      // A node judged dead (cut off past rescueAfter): no running node takes the command, but its row keeps it.
      yield* sql`INSERT INTO ${sql(prefix)}.oban_producers (id, node, queue, "limit", updated_at, dead_at)
                 VALUES (${crypto.randomUUID()}, 'cut-off', 'mailers', 2, now() - interval '2 minutes', now())`
      const away = yield* cli(withPrefix("queues", "scale", "mailers", "9", "--node", "cut-off"))
      assert.strictEqual(away.code, 0)
      assert.include(
        away.stdout,
        `scaled to 9: queue mailers: no running node named "cut-off" has queue "mailers"; the rows its last run left keep ` +
          "the command, for when it is back or restarts under its name within rescuer.forgetAfter"
      )
      const [stored] = yield* sql<{ limit: number }>`
        SELECT "limit" FROM ${sql(prefix)}.oban_producers WHERE node = 'cut-off'`
      assert.strictEqual(stored?.limit, 9)
      const everywhere = yield* cli(withPrefix("queues", "resume", "quiet"))
      assert.include(everywhere.stdout, "resumed queue quiet on 1 producer; the pause kept for nodes that start later is cleared")
      assert.match(human.stdout, /^QUEUE\s+NODES\s+LIMIT\s+CLUSTER LIMITS\s+RUNNING\s+PAUSED/)
      assert.match(human.stdout, /quiet\s+1\s+1\s+-\s+0\s+yes/)
    }))

  it.effect("a command whose session the server ends (a restart, pg_terminate_backend) exits 3, as a lost connection", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [job] = yield* Oban.insertAll([Mail.job({ to: "held@example.com" }, { queue: "held" })])
      // The job is held locked by a transaction of the test's, so that the cancel waits where its session can be ended.
      const { release } = yield* holdRow(prefix, job!.id)
      const cancel = yield* Effect.forkChild(cli(withPrefix("jobs", "cancel", String(job!.id), "--json")))
      const waitingCancel = sql`
        application_name = 'effect-oban-cli' AND wait_event_type = 'Lock' AND query LIKE ${`%${prefix}%`}`
      yield* waitFor("the cancel waits for the row", Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${waitingCancel}`,
        (rows) => rows[0]!.n === 1
      ), "30 seconds")
      yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${waitingCancel}`
      const run = yield* Fiber.join(cancel)
      yield* release
      // Before: exit 1, "database error", as if the command itself were wrong.
      assert.strictEqual(run.code, 3, run.stderr)
      const reported = JSON.parse(run.stderr.trim().split("\n").at(-1)!) as { error: { exitCode: number; message: string } }
      assert.include(reported.error.message, "lost the database: terminating connection due to administrator command")
      assert.strictEqual((yield* jobRow(prefix, job!.id)).state, "available")
    }), 120_000)

  it.effect("the built CLI (dist/) runs too", () =>
    Effect.gen(function*() {
      if (!existsSync(built)) {
        console.log("SKIPPED: dist/cli/main.js is missing (run npm run build; CI builds before testing)")
        return
      }
      const run = yield* cli(withPrefix("migrate", "status", "--json"), { script: built })
      assert.strictEqual(parsed<{ prefix: string }>(run).prefix, prefix)
    }))
})

plain("a command whose transaction the server ended for sitting idle exits 3 and says why", () => {
  // As `transaction` reports the server's 25P03 (test/transaction.test.ts makes a real one).
  const cause = Object.assign(new Error("terminating connection due to idle-in-transaction timeout"), { code: "25P03" })
  const error = new SqlError({
    reason: new ConnectionError({
      cause,
      message: "the server ended this transaction of effect-oban's after it sat idle past the 10 s ...",
      operation: "query"
    })
  })
  const reported = classify(error)
  assert.strictEqual(reported.code, ExitCode.unreachable)
  assert.match(reported.message, /^lost the database: the server ended this transaction of effect-oban's/)
})
