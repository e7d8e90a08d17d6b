/**
 * A job's recorded result read back by id outside a workflow: `Oban.getResult`
 * typed with the worker's schema (none until the job completed with one, typed
 * errors for a worker that records none, another worker's job, or a stored
 * value that no longer decodes), and shown raw by `jobs show` and the
 * dashboard's job page.
 */
import { assert, layer } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Dashboard from "../src/Dashboard.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { Client } from "./support/dashboard.ts"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { jobRow, startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("recorded_result")
const bin = fileURLToPath(new URL("../bin/effect-oban.js", import.meta.url))

const Resize = Worker.make("ResultResize", {
  args: Schema.Struct({ width: Schema.Int }),
  // Stored as its encoding (a string), read back decoded (a number).
  result: Schema.Struct({ bytes: Schema.NumberFromString }),
  queue: "results",
  perform: (job) => Effect.succeed({ bytes: job.args.width * 10 })
})
const Plain = Worker.make("ResultPlain", { args: Schema.Struct({}), queue: "results", perform: () => Effect.void })
const Other = Worker.make("ResultOther", {
  args: Schema.Struct({}),
  result: Schema.Int,
  queue: "results",
  perform: () => Effect.succeed(7)
})

const showJson = (id: number) =>
  Effect.promise(() =>
    new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, "jobs", "show", String(id), "--json", "--prefix", prefix], {
        env: { ...process.env, DATABASE_URL: databaseUrl() },
        timeout: 30_000
      }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }))
    })
  )

layer(testLayer(prefix), { excludeTestServices: true })("recorded results by job id", (it) => {
  it.effect("getResult reads a completed job's result typed, none before, errors that say why, and jobs show and the dashboard show it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [resized, plain, other] = yield* Oban.insertAll([Resize.job({ width: 3 }), Plain.job({}), Other.job({})])
      // Not run yet: nothing recorded.
      assert.isTrue(Option.isNone(yield* Oban.getResult(resized!.id, Resize)))
      yield* startNode({ prefix, queues: { results: 3 }, workers: [Resize, Plain, Other] })
      yield* waitFor("all completed", Effect.map(
        Effect.forEach([resized!.id, plain!.id, other!.id], (id) => jobRow(prefix, id)),
        (rows) => rows.every((row) => row.state === "completed")
      ))

      // Decoded by the worker's schema, from the finished jobs' table where it moved.
      assert.deepStrictEqual(Option.getOrThrow(yield* Oban.getResult(resized!.id, Resize)), { bytes: 30 })
      assert.strictEqual(Option.getOrThrow(yield* Oban.getResult(other!.id, Other)), 7)
      // No such job: none.
      assert.isTrue(Option.isNone(yield* Oban.getResult(987654321, Resize)))

      // A worker that records nothing, and another worker's job: refused, saying why.
      const none = yield* Effect.flip(Oban.getResult(plain!.id, Plain as never as typeof Other))
      assert.deepStrictEqual([none._tag, none._tag === "InvalidResultError" && none.reason], ["InvalidResultError", "missing"])
      assert.include(none.message, "records no result")
      const wrong = yield* Effect.flip(Oban.getResult(other!.id, Resize))
      assert.strictEqual(wrong.message, `job ${other!.id} is run by ResultOther, not ResultResize`)
      // A stored value the schema no longer decodes (the worker changed since): a decode error, not a wrong value.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs_finished SET result = '{"bytes": "many"}' WHERE id = ${other!.id}`
      const stale = yield* Effect.flip(Oban.getResult(other!.id, Other))
      assert.deepStrictEqual([stale._tag, stale._tag === "InvalidResultError" && stale.reason], ["InvalidResultError", "decode"])

      // The CLI shows what is stored, raw; a job without one shows null.
      const shown = yield* showJson(resized!.id)
      assert.strictEqual(shown.code, 0, shown.stderr)
      assert.deepStrictEqual((JSON.parse(shown.stdout) as { result: unknown }).result, { bytes: "30" })
      const shownPlain = yield* showJson(plain!.id)
      assert.strictEqual((JSON.parse(shownPlain.stdout) as { result: unknown }).result, null)

      // The dashboard's job page too, escaped as text; no section for a job without one.
      const { url } = yield* Dashboard.serve({ token: "recorded-result-token-0123456789", port: 0 })
      const client = new Client(url, { authorization: "Bearer recorded-result-token-0123456789" })
      const page = yield* client.get(`/jobs/${resized!.id}`)
      assert.strictEqual(page.status, 200)
      assert.match(page.text, /<h2>Result<\/h2>\s*<pre class="json" id="job-result">[^<]*&quot;bytes&quot;: &quot;30&quot;/)
      assert.notInclude((yield* client.get(`/jobs/${plain!.id}`)).text, "<h2>Result</h2>")

      // Run again by hand (in a queue no node runs, so it waits): its last run's result is gone with its completion.
      yield* sql`UPDATE ${sql(prefix)}.oban_jobs_finished SET queue = 'parked' WHERE id = ${resized!.id}`
      const retried = Option.getOrThrow(yield* Oban.retryJob(resized!.id))
      assert.strictEqual(retried.state, "available")
      assert.isTrue(Option.isNone(yield* Oban.getResult(resized!.id, Resize)))
      const [stored] = yield* sql<{ result: unknown }>`SELECT result FROM ${sql(prefix)}.oban_jobs WHERE id = ${resized!.id}`
      assert.isNull(stored!.result)
    }).pipe(Effect.scoped), 60_000)
})
