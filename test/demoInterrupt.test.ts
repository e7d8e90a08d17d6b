/**
 * `npm start` as a user runs it: the demo on its embedded PostgreSQL
 * server, left running, then Ctrl-C. A terminal's Ctrl-C signals the whole
 * process group, so the server gets SIGINT together with the node. The
 * demo must still shut down and exit, and leave no server directory behind
 * (it used to hang for good after printing "stopped").
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pidEnded, postmasterPid, signalGroup, spawnNode } from "./support/processes.ts"

const serverDirectories = (temp: string) => readdirSync(temp).filter((name) => name.startsWith("effect-oban-pg-"))

describe("npm start", () => {
  it.live("exits after Ctrl-C, with the embedded server's directory removed", () =>
    Effect.gen(function*() {
      // The embedded server's directory goes here; the server runs as another user when we are root.
      const temp = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const directory = mkdtempSync(join(tmpdir(), "effect-oban-demo-"))
          chmodSync(directory, 0o755)
          return directory
        }),
        (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
      )
      // An empty DATABASE_URL counts as unset: the demo starts its embedded server, as on a fresh machine.
      const demo = yield* spawnNode("demo", { TMPDIR: temp, DASHBOARD_PORT: "0", DATABASE_URL: "" }, "../../examples/demo.ts", {
        group: true
      })
      const running = yield* Effect.promise(async () => {
        const deadline = Date.now() + 90_000
        while (!demo.output().includes("press Ctrl-C to stop it gracefully") && demo.alive() && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        return demo.output().includes("press Ctrl-C to stop it gracefully")
      })
      assert.isTrue(running, `the demo did not reach its running state:\n${demo.output()}`)
      // Ctrl-C reaches both; the server's fast shutdown ends before the node's graceful one gets to
      // stopping it. Made certain here: the server gets its SIGINT first and has exited when the group
      // gets one.
      const [directory] = serverDirectories(temp)
      assert.isDefined(directory, "no embedded server directory")
      const server = postmasterPid(join(temp, directory!))
      process.kill(server, "SIGINT")
      assert.isTrue(yield* Effect.promise(() => pidEnded(server, 10_000)), "the embedded server did not end on SIGINT")
      const exited = yield* signalGroup(demo, "SIGINT").pipe(Effect.timeoutOption("30 seconds"))
      assert.isTrue(exited._tag === "Some", `the demo did not exit within 30 s of Ctrl-C:\n${demo.output().slice(-2_000)}`)
      assert.include(demo.output(), "stopped")
      assert.deepStrictEqual(serverDirectories(temp), [])
    }).pipe(Effect.scoped), 150_000)
})
