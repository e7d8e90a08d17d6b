/**
 * The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core) against a running node and real PostgreSQL: counts and
 * job lists change live, a discarded job is retried through the page with
 * its confirmation and then runs, `<script>` args stay text (no dialog, no
 * CSP violation), and the docs' screenshots are taken on the way. Then the
 * job list's filter form lists exactly the matching jobs, its pages hold
 * every one once even when the rows reload live in between, and a cancel
 * through a job's page changes the row only after the confirmation.
 *
 * Skipped, with a line saying so, where /usr/bin/chromium is absent.
 * Screenshots go to test-artifacts/dashboard/, or to DASHBOARD_SCREENSHOTS
 * (`DASHBOARD_SCREENSHOTS=docs/images` refreshes the docs' images).
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { chromium } from "playwright-core"
import * as Cron from "../src/Cron.ts"
import * as Dashboard from "../src/Dashboard.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { insertJobs } from "./support/dashboard.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const executablePath = "/usr/bin/chromium"
const hasChromium = existsSync(executablePath)
if (!hasChromium) {
  console.log(`SKIPPED dashboard browser test: ${executablePath} is missing (apt-get install -y chromium)`)
}

const prefix = uniquePrefix("dashbrowser")
const token = "browser-token-0123456789abcdef"
const screenshots = process.env["DASHBOARD_SCREENSHOTS"] ?? join("test-artifacts", "dashboard")

const SendMail = Worker.make("SendMail", {
  args: Schema.Struct({ to: Schema.String }),
  queue: "mailers",
  perform: () => Effect.sleep("20 millis")
})
const Transcode = Worker.make("Transcode", {
  args: Schema.Struct({ file: Schema.String }),
  queue: "media",
  perform: (job) => job.args.file.endsWith(".bad") ? Effect.fail("unsupported codec") : Effect.sleep("40 millis")
})

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const countOf = (queue: string, state: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE queue = ${queue} AND state = ${state}::${sql(prefix)}.oban_job_state`
    return row!.n
  })

layer(testLayer(prefix), { excludeTestServices: true })("Dashboard in a browser", (it) => {
  it.effect.skipIf(!hasChromium)("live counts and rows, a retry through the page with confirmation, screenshots", () =>
    Effect.gen(function*() {
      mkdirSync(screenshots, { recursive: true })
      const [discarded] = yield* insertJobs(prefix, [{
        queue: "mailers",
        worker: "SendMail",
        state: "discarded",
        args: { to: "<script>alert('owned')</script>" },
        tags: ["welcome"],
        errors: [{ attempt: 1, at: new Date().toISOString(), kind: "failure", message: "SMTP 451: try again later", cause: "Error: SMTP 451\n    at send (mailer.ts:42)" }]
      }])
      // Five minutes of history for the throughput charts: a wave of completions, a few failures.
      const sql = yield* SqlClient
      const [history] = yield* sql<{ mailers: number; mediaDiscarded: number }>`
        WITH inserted AS (
          INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, state, attempt, completed_at, discarded_at)
          SELECT q, w, s::${sql(prefix)}.oban_job_state, 1,
                 CASE WHEN s = 'completed' THEN at END, CASE WHEN s = 'discarded' THEN at END
          FROM (
            SELECT CASE WHEN i % 3 = 0 THEN 'media' ELSE 'mailers' END AS q,
                   CASE WHEN i % 3 = 0 THEN 'Transcode' ELSE 'SendMail' END AS w,
                   CASE WHEN i % 37 = 0 THEN 'discarded' ELSE 'completed' END AS s,
                   now() - make_interval(secs => 300 - floor(sqrt(i / 600.0) * 290)) AS at
            FROM generate_series(0, 599) AS i
          ) AS history
          RETURNING queue, state
        )
        SELECT count(*) FILTER (WHERE queue = 'mailers' AND state = 'completed')::int AS mailers,
               count(*) FILTER (WHERE queue = 'media' AND state = 'discarded')::int AS "mediaDiscarded"
        FROM inserted`
      const { oban } = yield* startNode({
        node: "web-1",
        queues: { mailers: 5, media: { limit: 2, rate: { limit: 50, period: "1 second" } } },
        // The history reaches five minutes back, the pruner's default age, so the first prune (10 s in)
        // took its oldest rows and the counts below never came on a slow machine. Kept an hour, it stays;
        // the pruner runs every 3 s so that every run shows it does.
        pruner: { maxAge: "1 hour", interval: "3 seconds" },
        workers: [SendMail, Transcode],
        // In a queue no node runs: a start in the minute after 03:00 UTC has the look back insert that
        // slot's job, which in mailers would complete too and the mailers count below would never come.
        crontab: [
          Cron.entry("0 3 * * *", SendMail, { to: "digest@example.com" }, { name: "nightly-digest", queue: "digests" })
        ]
      })
      yield* oban.ready
      // Some history for the throughput charts.
      yield* Oban.insertAll([
        ...Array.from({ length: 60 }, (_, i) => SendMail.job({ to: `user${i}@example.com` })),
        ...Array.from({ length: 12 }, (_, i) => Transcode.job({ file: `clip${i}${i % 4 === 0 ? ".bad" : ".mp4"}` }, { maxAttempts: 1 }))
      ])
      const { url } = yield* Dashboard.serve({ token, port: 0, pollInterval: "300 millis" })

      const browser = yield* Effect.acquireRelease(
        promise(() => chromium.launch({ executablePath, args: ["--no-sandbox"] })),
        (browser) => Effect.promise(() => browser.close())
      )
      const context = yield* promise(() =>
        browser.newContext({ httpCredentials: { username: "admin", password: token }, viewport: { width: 1500, height: 820 } })
      )
      const page = yield* promise(() => context.newPage())
      const problems: Array<string> = []
      page.on("dialog", (dialog) => {
        problems.push(`dialog: ${dialog.message()}`)
        void dialog.dismiss()
      })
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console: ${message.text()}`)
      })
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`))

      // Queues: the count of scheduled mailers goes from 0 to 1 while the page is open.
      yield* promise(() => page.goto(`${url}/`))
      yield* promise(() =>
        page.locator("#live.on").waitFor({ timeout: 15_000 }).catch((error: unknown) => {
          throw new Error(`the page did not go live: ${problems.join("; ")}`, { cause: error })
        })
      )
      const scheduled = page.locator(`[data-queue="mailers"][data-state="scheduled"]`)
      assert.strictEqual(yield* promise(() => scheduled.textContent()), "0")
      const later = yield* Oban.insert(SendMail.job({ to: "later@example.com" }, { scheduleIn: "1 hour" }))
      yield* promise(() => scheduled.filter({ hasText: /^1$/ }).waitFor({ timeout: 15_000 }))
      yield* waitFor("the new jobs completed", Effect.promise(() =>
        page.locator(`[data-queue="mailers"][data-state="completed"]`).textContent().then((text) => Number(text) === history!.mailers + 60)))
      assert.include(yield* promise(() => page.locator(`tr[data-queue-row="media"] [data-field="cluster-limits"]`).textContent()), "50 per 1 s")
      yield* promise(() => page.screenshot({ path: join(screenshots, "dashboard-queues.png") }))

      // Jobs: a job inserted meanwhile appears in the open list without a reload.
      yield* promise(() => page.goto(`${url}/jobs?queue=mailers&state=scheduled`))
      yield* promise(() => page.locator(`tr[data-job-id="${later.id}"]`).waitFor({ timeout: 15_000 }))
      const another = yield* Oban.insert(SendMail.job({ to: "another@example.com" }, { scheduleIn: "2 hours" }))
      yield* promise(() => page.locator(`tr[data-job-id="${another.id}"]`).waitFor({ timeout: 15_000 }))
      yield* promise(() => page.goto(`${url}/jobs?queue=mailers`))
      yield* promise(() => page.screenshot({ path: join(screenshots, "dashboard-jobs.png") }))

      // The discarded job: its args are shown as text; retry asks first, then the job runs.
      yield* promise(() => page.goto(`${url}/jobs/${discarded}`))
      assert.include(yield* promise(() => page.locator("#job-args").textContent()), "<script>alert('owned')</script>")
      yield* promise(() => page.screenshot({ path: join(screenshots, "dashboard-job.png"), fullPage: true }))
      yield* promise(() => page.getByRole("button", { name: "Retry" }).click())
      yield* promise(() => page.locator("#confirm").waitFor())
      assert.include(yield* promise(() => page.locator(".question").textContent()), `Retry job ${discarded} (SendMail, discarded)?`)
      assert.strictEqual((yield* jobRow(prefix, discarded!)).state, "discarded", "nothing happens before the confirmation")
      yield* promise(() => page.locator("#confirm").click())
      assert.strictEqual(yield* promise(() => page.locator("#result").textContent()), `Job ${discarded} retried.`)
      yield* waitFor("the retried job completed", Effect.map(jobRow(prefix, discarded!), (row) => row.state === "completed"))

      // A bulk action asks first, with the number of matching jobs; cancelling changes nothing.
      yield* promise(() => page.goto(`${url}/jobs?queue=media&state=discarded`))
      // The three .bad files of the batch above fail once and are discarded.
      const discardedMedia = history!.mediaDiscarded + 3
      yield* waitFor("the media batch finished", Effect.map(countOf("media", "discarded"), (n) => n === discardedMedia))
      yield* promise(() => page.getByRole("button", { name: "Retry all" }).click())
      assert.strictEqual(yield* promise(() => page.locator("#matching").textContent()), `${discardedMedia} jobs`)
      yield* promise(() => page.screenshot({ path: join(screenshots, "dashboard-confirm.png"), clip: { x: 0, y: 0, width: 1500, height: 200 } }))
      yield* promise(() => page.getByRole("link", { name: "Cancel" }).click())
      yield* promise(() => page.waitForURL(/\/jobs\?/))
      assert.strictEqual(yield* countOf("media", "discarded"), discardedMedia)

      // Nodes and cron.
      yield* promise(() => page.goto(`${url}/cluster`))
      assert.strictEqual(yield* promise(() => page.locator("#leader").textContent({ timeout: 15_000 })), "web-1")
      assert.include(yield* promise(() => page.locator("table.crons").textContent()), "nightly-digest")
      yield* promise(() => page.screenshot({ path: join(screenshots, "dashboard-cluster.png") }))
      assert.deepStrictEqual(problems, [])
    }), 60_000)

  it.effect.skipIf(!hasChromium)("filtering through the form, paging while rows reload live, a cancel through the page with confirmation", () =>
    Effect.gen(function*() {
      // No node runs "reports" or "exports": the states stay as inserted. Render jobs are every
      // other one; scheduled_at comes in groups of ten equal times (ties broken by id), some a
      // microsecond apart.
      const sql = yield* SqlClient
      yield* sql`
        INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, state, args, scheduled_at, completed_at)
        SELECT CASE WHEN i < 130 THEN 'reports' ELSE 'exports' END,
               CASE WHEN i % 2 = 0 THEN 'Render' ELSE 'Archive' END,
               (CASE WHEN i % 10 = 0 THEN 'completed' ELSE 'scheduled' END)::${sql(prefix)}.oban_job_state,
               jsonb_build_object('n', i),
               date_trunc('minute', now()) + interval '1 hour' + (i / 10) * interval '1 minute' + (i % 3) * interval '1 microsecond',
               CASE WHEN i % 10 = 0 THEN now() END
        FROM generate_series(0, 139) AS i`
      const matching = sql<{ id: number }>`
        SELECT id::int AS id FROM ${sql(prefix)}.oban_jobs_all
        WHERE queue = 'reports' AND state = 'scheduled' AND worker = 'Render'
        ORDER BY scheduled_at ASC, id ASC`.pipe(Effect.map((rows) => rows.map((row) => row.id)))
      assert.strictEqual((yield* matching).length, 52, "more matching jobs than a page (50)")

      const { url } = yield* Dashboard.serve({ token, port: 0, pollInterval: "200 millis" })
      const browser = yield* Effect.acquireRelease(
        promise(() => chromium.launch({ executablePath, args: ["--no-sandbox"] })),
        (browser) => Effect.promise(() => browser.close())
      )
      const context = yield* promise(() => browser.newContext({ httpCredentials: { username: "admin", password: token } }))
      const page = yield* promise(() => context.newPage())
      const problems: Array<string> = []
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`))
      const shownIds = promise(() =>
        page.locator("#job-rows tr[data-job-id]").evaluateAll((rows) => rows.map((row) => Number(row.getAttribute("data-job-id"))))
      )

      // Filtering: the form's fields become the query; only matching jobs are listed, in the sort's order.
      yield* promise(() => page.goto(`${url}/jobs`))
      yield* promise(() => page.locator(`#live.on`).waitFor({ timeout: 15_000 }))
      yield* promise(() => page.getByLabel("Queue").fill("reports"))
      yield* promise(() => page.getByLabel("State").selectOption("scheduled"))
      yield* promise(() => page.getByLabel("Worker").fill("Render"))
      yield* promise(() => page.getByLabel("Sort").selectOption("scheduledAt"))
      yield* promise(() => page.getByLabel("Order").selectOption("asc"))
      yield* promise(() => page.getByRole("button", { name: "Filter" }).click())
      yield* promise(() => page.waitForURL(/queue=reports/))
      yield* promise(() => page.locator(`#live.on`).waitFor({ timeout: 15_000 }))
      const before = yield* matching
      assert.deepStrictEqual(yield* shownIds, before.slice(0, 50))

      // A matching job inserted meanwhile sorts into the first page (it ties with the first group
      // and has the highest id): the rows reload live, and the next page starts after the last row
      // shown, so following it skips and repeats nothing.
      const [{ id: added }] = yield* sql<{ id: number }>`
        INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, state, scheduled_at)
        SELECT 'reports', 'Render', 'scheduled', min(scheduled_at) FROM ${sql(prefix)}.oban_jobs_all WHERE queue = 'reports'
        RETURNING id::int AS id`.pipe(Effect.map((rows) => rows as unknown as [{ id: number }]))
      yield* promise(() => page.locator(`#job-rows tr[data-job-id="${added}"]`).waitFor({ timeout: 15_000 }))
      const all = yield* matching
      assert.strictEqual(all.length, 53)
      const first = yield* shownIds
      assert.deepStrictEqual(first, all.slice(0, 50))
      yield* promise(() => page.getByRole("link", { name: "next page" }).click())
      yield* promise(() => page.waitForURL(/cursor=/))
      const second = yield* shownIds
      assert.deepStrictEqual([...first, ...second], all, "the two pages hold every matching job once, in order")
      assert.strictEqual(yield* promise(() => page.locator("nav.pages .muted").textContent()), "last page")

      // Cancel through the job's page: nothing changes before the confirmation.
      const target = second[0]!
      yield* promise(() => page.locator(`#job-rows a[href$="/jobs/${target}"]`).click())
      yield* promise(() => page.getByRole("button", { name: "Cancel" }).click())
      yield* promise(() => page.locator("#confirm").waitFor())
      assert.strictEqual(yield* promise(() => page.locator(".question").textContent()), `Cancel job ${target} (Render, scheduled)?`)
      assert.strictEqual((yield* jobRow(prefix, target)).state, "scheduled", "nothing happens before the confirmation")
      yield* promise(() => page.locator("#confirm").click())
      assert.strictEqual(yield* promise(() => page.locator("#result").textContent()), `Job ${target} cancelled.`)
      const [cancelled] = yield* sql<{ state: string; cancelledAt: Date | null }>`
        SELECT state::text, cancelled_at AS "cancelledAt" FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${target}`
      assert.strictEqual(cancelled!.state, "cancelled")
      assert.isNotNull(cancelled!.cancelledAt)
      assert.strictEqual(yield* countOf("reports", "cancelled"), 1, "only that job")
      yield* promise(() => page.getByRole("link", { name: "Back" }).click())
      assert.strictEqual(yield* promise(() => page.locator(".state").first().textContent()), "cancelled")
      assert.strictEqual(yield* promise(() => page.getByRole("button", { name: "Cancel" }).count()), 0)
      assert.deepStrictEqual(problems, [])
    }), 60_000)
})
