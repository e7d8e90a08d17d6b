/**
 * `effect-oban dashboard` as an operator runs it: a real process on a free
 * port, the URL and token printed, every request refused without the token,
 * `--read-only` refusing actions, a clean exit on SIGTERM, and clear exit
 * codes for bad input and an unmigrated schema.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { databaseUrl, testLayer, uniquePrefix } from "./support/db.ts"
import { Client } from "./support/dashboard.ts"

const prefix = uniquePrefix("dashcli")
const bin = fileURLToPath(new URL("../bin/effect-oban.js", import.meta.url))
const token = "cli-token-0123456789abcdef"

interface Running {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

const start = (args: ReadonlyArray<string>): Running => {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout!.on("data", (chunk: Buffer) => output += chunk.toString())
  child.stderr!.on("data", (chunk: Buffer) => output += chunk.toString())
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { child, output: () => output, exited }
}

const run = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(Effect.sync(() => start(args)), ({ child }) => Effect.sync(() => child.kill("SIGKILL")))

/** The URL the dashboard printed, once its whole banner is out (its lines are separate writes). */
const printedUrl = (running: Running) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      const match = /effect-oban dashboard: (http:\/\/[^/\s]+)\//.exec(running.output())
      if (match !== null && running.output().includes("press Ctrl-C to stop")) return match[1]!
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`no URL printed: ${running.output()}`)
  })

layer(testLayer(prefix), { excludeTestServices: true })("effect-oban dashboard", (it) => {
  it.effect("serves on 127.0.0.1 behind the token, read-only when asked, and exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const running = yield* run([
        "dashboard", "--database-url", databaseUrl(), "--prefix", prefix, "--port", "0", "--token", token, "--read-only"
      ])
      const url = yield* printedUrl(running)
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
      // A token given on the command line is not printed back (into logs); a generated one is.
      assert.notInclude(running.output(), token)
      assert.include(running.output(), "your token as password")
      assert.strictEqual((yield* new Client(url).get("/")).status, 401)
      const client = new Client(url, { authorization: `Bearer ${token}` })
      const page = yield* client.get("/")
      assert.strictEqual(page.status, 200)
      assert.include(page.text, "read-only")
      assert.strictEqual((yield* client.post("/bulk/cancel", { queue: "x", confirmed: "yes" })).status, 403)
      running.child.kill("SIGTERM")
      assert.strictEqual(yield* Effect.promise(() => running.exited), 0)

      const generated = yield* run(["dashboard", "--database-url", databaseUrl(), "--prefix", prefix, "--port", "0"])
      const generatedUrl = yield* printedUrl(generated)
      const printed = /token as password: (\S+)/.exec(generated.output())?.[1]
      assert.isDefined(printed, generated.output())
      const signedIn = yield* new Client(generatedUrl, { authorization: `Bearer ${printed!}` }).get("/")
      assert.strictEqual(signedIn.status, 200)

      // Its port, taken: exit 1, saying where and why (it printed "effect-oban: " and nothing more).
      const port = new URL(generatedUrl).port
      const busy = yield* run(["dashboard", "--database-url", databaseUrl(), "--prefix", prefix, "--port", port, "--json"])
      assert.strictEqual(yield* Effect.promise(() => busy.exited), 1)
      const error = JSON.parse(busy.output().trim().split("\n").at(-1)!) as { error: { tag: string; message: string } }
      assert.strictEqual(error.error.tag, "DashboardServeError")
      assert.include(error.error.message, `could not listen on 127.0.0.1:${port}: listen EADDRINUSE`)
    }), 30_000)

  it.effect("a short token is bad input (2); an unmigrated schema says so (4)", () =>
    Effect.gen(function*() {
      const short = yield* run(["dashboard", "--database-url", databaseUrl(), "--token", "short"])
      assert.strictEqual(yield* Effect.promise(() => short.exited), 2)
      assert.include(short.output(), "--token: at least 16 characters other than whitespace")
      const bare = yield* run(["dashboard", "--database-url", databaseUrl(), "--prefix", `${prefix}_none`, "--port", "0"])
      assert.strictEqual(yield* Effect.promise(() => bare.exited), 4)
      assert.include(bare.output(), "migrate up")
    }), 30_000)
})
