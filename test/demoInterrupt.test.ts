/**
 * `npm start` as a user runs it: the demo on its embedded PostgreSQL
 * server, left running, then Ctrl-C. A terminal's Ctrl-C signals the whole
 * process group, so the server gets SIGINT together with the node. The
 * demo must still shut down and exit, and leave no server directory behind
 * (it used to hang for good after printing "stopped").
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { pidEnded, postmasterPid } from "./support/processes.ts"

const root = fileURLToPath(new URL("..", import.meta.url))

describe("npm start", () => {
  it("exits after Ctrl-C, with the embedded server's directory removed", async () => {
    // The embedded server's directory goes here; the server runs as another user when we are root.
    const temp = mkdtempSync(join(tmpdir(), "effect-oban-demo-"))
    chmodSync(temp, 0o755)
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: temp, DASHBOARD_PORT: "0" }
    delete env["DATABASE_URL"]
    const child = spawn(process.execPath, ["examples/demo.ts"], { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => void (output += String(chunk)))
    child.stderr.on("data", (chunk) => void (output += String(chunk)))
    const exited = new Promise<number | string | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)))
    try {
      const deadline = Date.now() + 90_000
      while (!output.includes("press Ctrl-C to stop it gracefully") && child.exitCode === null && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.include(output, "press Ctrl-C to stop it gracefully", `the demo did not reach its running state:\n${output}`)
      // Ctrl-C reaches both; the server's fast shutdown ends before the node's graceful one gets to
      // stopping it. Made certain here: the server gets its SIGINT first and has exited when the group
      // gets one.
      const [directory] = readdirSync(temp).filter((name) => name.startsWith("effect-oban-pg-"))
      assert.isDefined(directory, "no embedded server directory")
      const server = postmasterPid(join(temp, directory!))
      process.kill(server, "SIGINT")
      assert.isTrue(await pidEnded(server, 10_000), "the embedded server did not end on SIGINT")
      process.kill(-child.pid!, "SIGINT")
      const code = await Promise.race([exited, new Promise<"hung">((resolve) => setTimeout(() => resolve("hung"), 30_000))])
      assert.notStrictEqual(code, "hung", `the demo did not exit within 30 s of Ctrl-C:\n${output.slice(-2_000)}`)
      assert.include(output, "stopped")
      assert.deepStrictEqual(readdirSync(temp).filter((name) => name.startsWith("effect-oban-pg-")), [])
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGKILL")
      rmSync(temp, { recursive: true, force: true })
    }
  }, 150_000)
})
