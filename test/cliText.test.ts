/**
 * Job text the CLI prints: anyone who can enqueue chooses queue and worker
 * names, args and error messages, and an ESC sequence among them reached the
 * operator's terminal as it was (a title change, hidden text). Tables and
 * `jobs show` write hidden characters as `\u{001B}`; `--json` keeps the data
 * exact, with those characters as JSON escapes.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { cliIn } from "./support/cli.ts"
import { insertJobs } from "./support/dashboard.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"

const prefix = uniquePrefix("cli_text")
const cli = cliIn(prefix)
const queue = "q\u001b[8mX"
const worker = "W\u001b]0;pwned\u0007\u202Eabc"
const message = "failed \u009b31m red \u2066isolated\u2069"

layer(testLayer(prefix), { excludeTestServices: true })("CLI output of job text", (it) => {
  it.effect("jobs list and jobs show write no control or direction character; --json keeps the exact text", () =>
    Effect.gen(function*() {
      const [id] = yield* insertJobs(prefix, [{
        queue,
        worker,
        state: "discarded",
        errors: [{ attempt: 1, at: new Date().toISOString(), kind: "failure", message }]
      }])
      const hidden = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/
      for (const args of [["jobs", "list", "--state", "discarded"], ["jobs", "show", String(id)]]) {
        const run = yield* cli(...args)
        assert.strictEqual(run.code, 0, run.stderr)
        assert.notMatch(run.stdout, hidden, args.join(" "))
        assert.include(run.stdout, "q\\u{001B}[8mX", args.join(" "))
      }
      const shown = yield* cli("jobs", "show", String(id))
      assert.include(shown.stdout, "W\\u{001B}]0;pwned\\u{0007}\\u{202E}abc")
      assert.include(shown.stdout, "failed \\u{009B}31m red \\u{2066}isolated\\u{2069}")
      const json = yield* cli("jobs", "show", String(id), "--json")
      assert.notMatch(json.stdout, hidden)
      const parsed = JSON.parse(json.stdout) as { queue: string; worker: string; errors: ReadonlyArray<{ message: string }> }
      assert.deepStrictEqual([parsed.queue, parsed.worker, parsed.errors[0]!.message], [queue, worker, message])
    }), 60_000)
})
