/**
 * The dashboard over HTTP against real PostgreSQL: refusals without the
 * token or with a read-only access function, CSRF refusals, job data
 * rendered as text, confirmed single and bulk actions changing rows, and
 * the shared poller (many live pages, one set of queries per interval).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { SqlClient } from "effect/sql/SqlClient"
import { CurrentTransformer } from "effect/sql/Statement"
import { createServer } from "node:http"
import * as Dashboard from "../src/Dashboard.ts"
import { report, testLayer, uniquePrefix } from "./support/db.ts"
import { Client, insertJobs, readSnapshots, statementCounter } from "./support/dashboard.ts"
import { answeredByLiveProducer, jobRow, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("dashboard")
const refreshesOf = (statements: number, perRefresh: number) => (statements / perRefresh).toFixed(2)
const token = "test-token-0123456789abcdef"
const bearer = { authorization: `Bearer ${token}` }

/** The dashboard mounted in an application's router under /ops/oban, next to the application's own route. */
const mounted = Effect.gen(function*() {
  const app = Layer.mergeAll(
    Dashboard.layer({
      path: "/ops/oban",
      access: (request) => {
        const role = request.headers["x-role"]
        return Effect.succeed(role === "admin" ? "full" : role === "viewer" ? "read-only" : "denied")
      }
    }),
    HttpRouter.add("GET", "/health", HttpServerResponse.text("ok"))
  )
  const server = HttpRouter.serve(app, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1", gracefulShutdownTimeout: "1 second" }))
  )
  const context = yield* Layer.buildWithScope(server, yield* Effect.scope)
  return HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address).replace(/\/$/, "")
})

layer(testLayer(prefix), { excludeTestServices: true })("Dashboard over HTTP", (it) => {
  it.effect("standalone: bound to 127.0.0.1, every page, event stream, asset and action refused without the token", () =>
    Effect.gen(function*() {
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
      const anonymous = new Client(url)
      for (const path of ["/", "/jobs", "/jobs/1", "/cluster", "/events", "/assets/dashboard.js", "/nope"]) {
        const reply = yield* anonymous.get(path)
        assert.strictEqual(reply.status, 401, path)
        assert.match(reply.headers.get("www-authenticate") ?? "", /^Basic /)
        assert.notInclude(reply.text, "<html")
      }
      assert.strictEqual((yield* anonymous.post("/bulk/delete", { queue: "x", confirmed: "yes" })).status, 401)
      const wrong = new Client(url, { authorization: `Basic ${Buffer.from("admin:not-the-token").toString("base64")}` })
      assert.strictEqual((yield* wrong.get("/")).status, 401)
      assert.strictEqual((yield* new Client(url, { authorization: "Bearer nope" }).get("/")).status, 401)
      const basic = new Client(url, { authorization: `Basic ${Buffer.from(`anyone:${token}`).toString("base64")}` })
      const page = yield* basic.get("/")
      assert.strictEqual(page.status, 200)
      // A job id that is no id is bad input (it was "no page at /jobs/abc", 404); a good one of no job is 404.
      for (const id of ["abc", "0", "1e3", "-4"]) {
        const bad = yield* basic.get(`/jobs/${id}`)
        assert.strictEqual(bad.status, 400, id)
        assert.include(bad.text, "a job id is a whole number from 1 to")
      }
      assert.strictEqual((yield* basic.get("/jobs/987654321")).status, 404)
      assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'; script-src 'self'/)
      assert.match(page.headers.get("set-cookie") ?? "", /HttpOnly; SameSite=Strict/)
      const script = yield* new Client(url, bearer).get("/assets/dashboard.js")
      assert.strictEqual(script.status, 200)
      // Browsers refuse a script or style sheet served as text/plain under nosniff.
      assert.strictEqual(script.headers.get("content-type"), "text/javascript; charset=utf-8")
      assert.strictEqual((yield* new Client(url, bearer).get("/assets/dashboard.css")).headers.get("content-type"), "text/css; charset=utf-8")
      const short = yield* Effect.flip(Dashboard.serve({ token: "short" }))
      assert.deepStrictEqual([short._tag, short.message], ["InvalidConfigError", "the dashboard token must have at least 16 characters other than whitespace"])
      // A duration that does not parse (as from untyped configuration) is refused before a port is bound.
      const badTimeout = yield* Effect.flip(Dashboard.serve({ token, port: 0, shutdownTimeout: "soon" as never }))
      assert.deepStrictEqual(
        [badTimeout._tag, badTimeout._tag === "InvalidConfigError" ? badTimeout.field : undefined],
        ["InvalidConfigError", "shutdownTimeout"]
      )
      // A port that is taken (by the server above): the error says where and why.
      const port = Number(new URL(url).port)
      const taken = yield* Effect.flip(Dashboard.serve({ token, port }))
      assert.strictEqual(taken._tag, "DashboardServeError")
      assert.strictEqual(taken._tag === "DashboardServeError" ? taken.address : "", `127.0.0.1:${port}`)
      assert.include(taken.message, `the dashboard could not listen on 127.0.0.1:${port}: listen EADDRINUSE`)
    }))

  it.effect("mounted under a path with the application's access function: read-only looks but cannot act", () =>
    Effect.gen(function*() {
      const [id] = yield* insertJobs(prefix, [{ queue: "mount", state: "discarded" }])
      const base = yield* mounted
      assert.strictEqual((yield* new Client(base).get("/health")).text, "ok")
      assert.strictEqual((yield* new Client(base).get("/ops/oban/")).status, 401)
      const viewer = new Client(base, { "x-role": "viewer" })
      const page = yield* viewer.get(`/ops/oban/jobs/${id}`)
      assert.strictEqual(page.status, 200)
      assert.include(page.text, "read-only")
      assert.notInclude(page.text, "<form method=\"post\"")
      assert.include(page.text, `href="/ops/oban/jobs?queue=mount"`)
      // Even with a valid session and token (taken as an admin), a viewer's POST is refused.
      const admin = new Client(base, { "x-role": "admin" })
      const csrf = yield* admin.csrf(`/ops/oban/jobs/${id}`)
      const refused = yield* viewer.post(`/ops/oban/jobs/${id}/retry`, { _csrf: csrf, confirmed: "yes" })
      assert.strictEqual(refused.status, 403)
      assert.strictEqual((yield* jobRow(prefix, id!)).state, "discarded")
      const done = yield* admin.post(`/ops/oban/jobs/${id}/retry`, { _csrf: csrf, confirmed: "yes" })
      assert.strictEqual(done.status, 200)
      assert.include(done.text, `Job ${id} retried.`)
      assert.strictEqual((yield* jobRow(prefix, id!)).state, "available")
    }))

  it.effect("actions need the session's CSRF token from this origin, and are confirmed before they run", () =>
    Effect.gen(function*() {
      const [id] = yield* insertJobs(prefix, [{ queue: "csrf", state: "scheduled" }])
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const client = new Client(url, bearer)
      const csrf = yield* client.csrf(`/jobs/${id}`)
      const path = `/jobs/${id}/cancel`
      assert.strictEqual((yield* client.post(path, { confirmed: "yes" })).status, 403)
      assert.strictEqual((yield* client.post(path, { _csrf: csrf.slice(0, -2) + "xx", confirmed: "yes" })).status, 403)
      assert.strictEqual((yield* new Client(url, bearer).post(path, { _csrf: csrf, confirmed: "yes" })).status, 403, "no session cookie")
      assert.strictEqual((yield* client.post(path, { _csrf: csrf, confirmed: "yes" }, { origin: "https://evil.example" })).status, 403)
      assert.strictEqual((yield* client.post(path, { _csrf: csrf, confirmed: "yes" }, { "sec-fetch-site": "cross-site" })).status, 403)
      assert.strictEqual((yield* jobRow(prefix, id!)).state, "scheduled")
      // Without `confirmed`: a confirmation page, nothing changes.
      const confirm = yield* client.post(path, { _csrf: csrf })
      assert.include(confirm.text, `Cancel job ${id} (Work, scheduled)?`)
      assert.include(confirm.text, `name="confirmed" value="yes"`)
      assert.strictEqual((yield* jobRow(prefix, id!)).state, "scheduled")
      const done = yield* client.post(path, { _csrf: csrf, confirmed: "yes" }, { origin: url })
      assert.include(done.text, `Job ${id} cancelled.`)
      assert.strictEqual((yield* jobRow(prefix, id!)).state, "cancelled")
      assert.strictEqual((yield* client.request(path, { method: "PUT" })).status, 405)

      // A pause for every node says, before it runs, that it holds for nodes that start later; then it does.
      const pause = yield* client.post("/queues/csrf/pause", { _csrf: csrf })
      assert.include(pause.text, "Pause queue csrf on every node, and on nodes that start later?")
      yield* client.post("/queues/csrf/pause", { _csrf: csrf, confirmed: "yes" }, { origin: url })
      const sql = yield* SqlClient
      const [kept] = yield* sql<{ paused: boolean }>`
        SELECT paused_at IS NOT NULL AS paused FROM ${sql(prefix)}.oban_queues WHERE name = 'csrf'`
      assert.isTrue(kept?.paused)
      // No node runs the queue: the page says the pause is kept, and offers to resume it.
      yield* waitFor("the kept pause on the queues page", Effect.map(client.get("/"), (page) =>
        /data-queue-row="csrf"[\s\S]*?data-field="paused">kept</.test(page.text) &&
        page.text.includes(`action="/queues/csrf/resume"`)))
    }))

  it.effect("job data is rendered as text: args, meta, tags and errors holding markup never become markup", () =>
    Effect.gen(function*() {
      const evil = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"
      const [id] = yield* insertJobs(prefix, [{
        queue: "x<script>q</script>",
        worker: "W<script>w</script>",
        state: "discarded",
        args: { html: evil, "<key>": 1 },
        meta: { note: evil },
        tags: ["<b>tag</b>"],
        errors: [{ attempt: 1, at: new Date().toISOString(), kind: "failure", message: evil, cause: evil }]
      }])
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const client = new Client(url, bearer)
      for (const path of [`/jobs/${id}`, `/jobs?queue=${encodeURIComponent("x<script>q</script>")}`, "/"]) {
        const page = yield* client.get(path)
        assert.strictEqual(page.status, 200, path)
        // The only script element is the dashboard's own file.
        assert.deepStrictEqual(page.text.match(/<script[^>]*>/g), [`<script src="/assets/dashboard.js" defer>`], path)
        assert.notInclude(page.text, "<img", path)
        assert.notInclude(page.text, "<b>tag", path)
        assert.include(page.text, "&lt;script&gt;", path)
      }
      const job = yield* client.get(`/jobs/${id}`)
      assert.include(job.text, "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;")
      assert.include(job.text, "&lt;b&gt;tag&lt;/b&gt;")
    }))

  it.effect("an args filter with an escaped key finds the jobs with that key, whatever JSON.parse saw before", () =>
    Effect.gen(function*() {
      // After this look-alike (key "a" plus a backslash), JSON.parse on Node.js 23 and later reads a key
      // "a" plus a newline as it (see src/internal/jsonParse.ts); kept alive until the page is read.
      const lookAlike: unknown = JSON.parse(String.raw`{"a":1,"a\\":"x"}`)
      const [newline, backslash] = yield* insertJobs(prefix, [
        { queue: "escaped-keys", args: { a: 1, "a\n": "x" } },
        { queue: "escaped-keys", args: { a: 1, "a\\": "x" } }
      ])
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const page = yield* new Client(url, bearer).get(`/jobs?args=${encodeURIComponent(JSON.stringify({ a: 1, "a\n": "x" }))}`)
      assert.strictEqual(page.status, 200)
      assert.include(page.text, `/jobs/${newline}"`)
      assert.notInclude(page.text, `/jobs/${backslash}"`)
      assert.isDefined(lookAlike)
    }))

  it.effect("a bulk action by filter: the confirmation counts the matching jobs, the action changes exactly them", () =>
    Effect.gen(function*() {
      yield* insertJobs(prefix, Array.from({ length: 30 }, (_, i) => ({ queue: "bulk", state: "discarded", args: { i } })))
      yield* insertJobs(prefix, Array.from({ length: 5 }, () => ({ queue: "bulk-other", state: "discarded" })))
      yield* insertJobs(prefix, [{ queue: "bulk", state: "completed" }])
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const client = new Client(url, bearer)
      const list = yield* client.get("/jobs?queue=bulk&state=discarded&limit=20")
      assert.strictEqual(list.text.match(/data-job-id=/g)?.length, 20)
      const next = /rel="next" href="([^"]+)"/.exec(list.text)![1]!.replaceAll("&amp;", "&")
      assert.strictEqual((yield* client.get(next)).text.match(/data-job-id=/g)?.length, 10)
      const csrf = yield* client.csrf("/jobs?queue=bulk&state=discarded")
      const fields = { _csrf: csrf, queue: "bulk", state: "discarded" }
      const confirm = yield* client.post("/bulk/retry", fields)
      assert.include(confirm.text, `<strong id="matching">30 jobs</strong>`)
      assert.deepStrictEqual(yield* countByStateOf("bulk"), { discarded: 30, completed: 1 }, "nothing changes before the confirmation")
      const done = yield* client.post("/bulk/retry", { ...fields, confirmed: "yes" }, { accept: "application/json" })
      assert.strictEqual(done.status, 200)
      assert.deepStrictEqual(JSON.parse(done.text), { message: "30 jobs retried.", changed: 30, skipped: 0 })
      const states = yield* countByStateOf("bulk")
      assert.deepStrictEqual(states, { available: 30, completed: 1 })
      assert.deepStrictEqual(yield* countByStateOf("bulk-other"), { discarded: 5 })
      // A bulk cancel says how many of the jobs it changed are running, and stay executing until stopped.
      const [running] = yield* insertJobs(prefix, [{ queue: "bulk-run", state: "executing" }, { queue: "bulk-run" }])
      yield* answeredByLiveProducer(prefix, [running!])
      const cancelled = yield* client.post("/bulk/cancel", { _csrf: csrf, queue: "bulk-run", confirmed: "yes" }, { accept: "application/json" })
      assert.deepStrictEqual(JSON.parse(cancelled.text), {
        message: "2 jobs cancelled. 1 of them is running: it stays executing until its node has stopped it.",
        changed: 2,
        skipped: 0
      })
      assert.deepStrictEqual(yield* countByStateOf("bulk-run"), { executing: 1, cancelled: 1 })
      // Bad input is refused before any SQL runs; a bulk action without a filter is refused.
      assert.strictEqual((yield* client.post("/bulk/delete", { _csrf: csrf, confirmed: "yes" })).status, 400)
      assert.strictEqual((yield* client.get("/jobs?state=bogus")).status, 400)
      assert.strictEqual((yield* client.get("/jobs?args=%7Bnot-json")).status, 400)
      // Text PostgreSQL cannot store, and JSON nested too deep to write, are bad input: 400, not 503 or 500.
      assert.strictEqual((yield* client.get("/jobs?worker=%00")).status, 400)
      assert.strictEqual((yield* client.get(`/jobs?args=${encodeURIComponent(JSON.stringify({ s: "\u0000" }))}`)).status, 400)
      assert.strictEqual((yield* client.post("/queues/a%00b/pause", { _csrf: csrf, confirmed: "yes" })).status, 400)
      // 1,500 levels: past the 1,000 JSON allows, and within the 64 KiB a form may hold.
      const deep = "{\"a\":".repeat(1_500) + "1" + "}".repeat(1_500)
      assert.strictEqual((yield* client.post("/bulk/retry", { _csrf: csrf, args: deep })).status, 400)
      assert.strictEqual((yield* client.post("/queues/bulk/scale", { _csrf: csrf, limit: "0", confirmed: "yes" })).status, 400)
      assert.strictEqual((yield* client.get("/jobs/999999999")).status, 404)
      // Doubled leading slashes are a path, not a host (they were a 500, "Invalid URL"): "//" is the
      // queues page, and "//evil.example/jobs" no page at all rather than /jobs.
      assert.strictEqual((yield* client.get("//")).status, 200)
      assert.strictEqual((yield* client.get("//evil.example/jobs")).status, 404)
      assert.strictEqual((yield* client.get("/jobs//")).status, 200)
      // Numbers are decimal digits: "0x1" named job 1, and "0x10" scaled a queue to 16.
      for (const id of ["0x1", "1e0", "%201"]) {
        assert.strictEqual((yield* client.post(`/jobs/${id}/cancel`, { _csrf: csrf, confirmed: "yes" })).status, 400, id)
      }
      assert.strictEqual((yield* client.post("/queues/bulk/scale", { _csrf: csrf, limit: "0x10", confirmed: "yes" })).status, 400)
      assert.strictEqual((yield* client.get("/jobs?limit=0x10")).status, 400)
    }))

  it.effect("throughput: per queue and second over five minutes, kept across refreshes that read only the last seconds", () =>
    Effect.gen(function*() {
      const ago = (seconds: number) => new Date(Date.now() - seconds * 1000)
      yield* insertJobs(prefix, [
        ...Array.from({ length: 7 }, () => ({ queue: "tp", state: "completed", finishedAt: ago(100) })),
        ...Array.from({ length: 3 }, () => ({ queue: "tp", state: "discarded", finishedAt: ago(40) })),
        { queue: "tp", state: "completed", finishedAt: ago(400) }, // outside the window
        // Queue names that are also names of every object's properties.
        ...Array.from({ length: 2 }, () => ({ queue: "constructor", state: "completed", finishedAt: ago(50) })),
        { queue: "__proto__", state: "completed", finishedAt: ago(50) },
        { queue: "constructor" },
        { queue: "__proto__" }
      ])
      const { url } = yield* Dashboard.serve({ token, port: 0, pollInterval: "200 millis" })
      const abort = new AbortController()
      const sums = (text: string, queue = "tp") =>
        text.split("event: snapshot\n").slice(1).map((event) => {
          const payload = JSON.parse(event.slice("data: ".length, event.indexOf("\n"))) as {
            readonly throughput: ReadonlyArray<readonly [string, { completed: Array<number>; failed: Array<number> }]>
          }
          const series = new Map(payload.throughput).get(queue)!
          const total = (values: ReadonlyArray<number>) => values.reduce((sum, value) => sum + value, 0)
          return [total(series.completed), total(series.failed)]
        })
      const first = yield* Effect.promise(() => readSnapshots(`${url}/events`, bearer, 2, abort.signal))
      assert.deepStrictEqual(sums(first.text), [[7, 3], [7, 3]])
      assert.deepStrictEqual(sums(first.text, "constructor"), [[2, 0], [2, 0]])
      assert.deepStrictEqual(sums(first.text, "__proto__"), [[1, 0], [1, 0]])
      const queuesPage = yield* Effect.promise(() => fetch(`${url}/`, { headers: bearer }).then((response) => response.text()))
      assert.include(queuesPage, `data-queue-row="constructor"`)
      assert.include(queuesPage, `data-queue-row="__proto__"`)
      assert.notInclude(queuesPage, "function Object")
      assert.notInclude(queuesPage, "[object Object]")
      // Later refreshes read the last seconds only: the older seconds stay, new ones add up.
      yield* insertJobs(prefix, Array.from({ length: 4 }, () => ({ queue: "tp", state: "completed", finishedAt: ago(2) })))
      yield* Effect.sleep("1200 millis")
      const later = yield* Effect.promise(() => readSnapshots(`${url}/events`, bearer, 1, abort.signal))
      assert.deepStrictEqual(sums(later.text), [[11, 3]])
      abort.abort()
    }))

  it.effect("the shared poller: ten live pages cause one set of queries per interval, none while nobody listens", () =>
    Effect.gen(function*() {
      const counter = statementCounter()
      const interval = 200
      const { url } = yield* Dashboard.serve({ token, port: 0, pollInterval: `${interval} millis` }).pipe(
        Effect.provideService(CurrentTransformer, counter.transformer)
      )
      yield* Effect.sleep("600 millis")
      assert.strictEqual(counter.count(), 0, "no page open: no query")
      yield* new Client(url, bearer).get("/")
      const perRefresh = counter.count()
      assert.isAbove(perRefresh, 0)
      yield* Effect.sleep(`${interval} millis`)
      const before = counter.count()
      const started = Date.now()
      const abort = new AbortController()
      const readers = Effect.promise(() =>
        Promise.all(Array.from({ length: 10 }, () => readSnapshots(`${url}/events`, bearer, 1000, abort.signal)))
      )
      const fiber = yield* Effect.forkChild(readers)
      yield* Effect.sleep("3 seconds")
      abort.abort()
      const results = yield* Fiber.join(fiber)
      // A refresh may still be running: let it finish (no listener is left to start another).
      yield* Effect.sleep(`${interval * 2} millis`)
      const elapsed = Date.now() - started
      const statements = counter.count() - before
      report(`dashboard poller: 10 live pages for ${elapsed} ms at ${interval} ms: ${refreshesOf(statements, perRefresh)} refreshes of ${perRefresh} statements`)
      const refreshes = statements / perRefresh
      assert.isTrue(Number.isInteger(refreshes), `${statements} statements are whole refreshes of ${perRefresh}`)
      assert.isAtMost(refreshes, Math.ceil(elapsed / interval) + 1)
      assert.isAtLeast(refreshes, 3)
      for (const result of results) {
        assert.strictEqual(result.contentType, "text/event-stream")
        assert.isAtLeast(result.seen, 3)
      }
    }))

  it.effect("an open event stream does not hold up the standalone server's shutdown", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // A graceful timeout of 10 s: the close must not wait for it, whatever the machine's load.
      const { url } = yield* Scope.provide(
        Dashboard.serve({ token, port: 0, pollInterval: "200 millis", shutdownTimeout: "10 seconds" }),
        scope
      )
      const abort = new AbortController()
      const reader = yield* Effect.forkChild(
        Effect.promise(() => readSnapshots(`${url}/events`, bearer, 1000, abort.signal))
      )
      yield* Effect.sleep("600 millis")
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      const took = Date.now() - started
      const result = yield* Fiber.join(reader).pipe(Effect.timeout("10 seconds"))
      abort.abort()
      assert.isAtLeast(result.seen, 1)
      // Had the stream held the server, the close would have taken the whole 10 s graceful timeout.
      assert.isBelow(took, 5_000, `closed in ${took} ms`)
    }))
})

const countByStateOf = (queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ state: string; n: number }>`
      SELECT state::text, count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all WHERE queue = ${queue} GROUP BY state`
    return Object.fromEntries(rows.map((row) => [row.state, row.n]))
  })

const latePrefix = uniquePrefix("dashboard_late")
layer(testLayer(latePrefix), { excludeTestServices: true })("Dashboard: nodes whose heartbeats are late", (it) => {
  it.effect("the cluster page tags a producer silent past twice its node's interval, and no other", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // One node beat just now; one (of a 10 s interval) a minute ago, as a node that crashed before its rescue.
      yield* sql`INSERT INTO ${sql(latePrefix)}.oban_producers (id, node, queue, "limit", paused, meta, started_at, updated_at)
                 VALUES (gen_random_uuid(), 'beating-node', 'q', 1, false, '{"heartbeatMillis":10000}', now(), now()),
                        (gen_random_uuid(), 'gone-node', 'q', 1, false, '{"heartbeatMillis":10000}', now() - interval '5 minutes',
                         now() - interval '1 minute')`
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const page = yield* new Client(url, bearer).get("/cluster")
      assert.strictEqual(page.status, 200)
      const rowOf = (node: string) => page.text.split("<tr>").find((row) => row.includes(`<td>${node}`)) ?? ""
      assert.include(rowOf("gone-node"), `<span class="tag late"`)
      assert.include(rowOf("beating-node"), "s ago")
      assert.notInclude(rowOf("beating-node"), "tag late")
    }))
})
