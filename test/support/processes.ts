/**
 * Spawns test/support/nodeProcess.ts as real OS processes and follows the
 * events they print. Every process still alive when the scope closes is killed.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, type Scope } from "effect"

const script = fileURLToPath(new URL("./nodeProcess.ts", import.meta.url))

export interface NodeProcess {
  readonly name: string
  readonly child: ChildProcess
  /** The last leadership this process reported. */
  readonly isLeader: () => boolean
  readonly alive: () => boolean
  readonly ready: Promise<void>
  readonly exited: Promise<number | null>
  readonly output: () => string
}

export const spawnNode = (
  name: string,
  env: Readonly<Record<string, string>>,
  /** Another node script, as a path from test/support (default nodeProcess.ts). */
  scriptName?: string,
  /**
   * Makes the process the leader of a process group of its own, as under a terminal or a
   * systemd unit, so that a signal can reach it and its children at once (`signalGroup`).
   */
  options: {
    readonly group?: boolean
    /** Node options of the process (before the script). */
    readonly execArgv?: ReadonlyArray<string>
  } = {}
): Effect.Effect<NodeProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const path = scriptName === undefined ? script : fileURLToPath(new URL(`./${scriptName}`, import.meta.url))
      const child = spawn(process.execPath, [...(options.execArgv ?? []), path], {
        env: { ...process.env, ...env, NODE_NAME: name },
        stdio: ["ignore", "pipe", "pipe"],
        detached: options.group === true
      })
      let leader = false
      let alive = true
      let buffer = ""
      let log = ""
      let markReady: () => void = () => {}
      const ready = new Promise<void>((resolve) => (markReady = resolve))
      child.stdout!.on("data", (chunk: Buffer) => {
        buffer += chunk.toString()
        let newline: number
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline)
          buffer = buffer.slice(newline + 1)
          log += line + "\n"
          try {
            const event = JSON.parse(line) as { event: string; value?: unknown }
            if (event.event === "leader") leader = event.value === true
            if (event.event === "ready") markReady()
          } catch {
            // not an event line
          }
        }
      })
      child.stderr!.on("data", (chunk: Buffer) => {
        log += chunk.toString()
      })
      const exited = new Promise<number | null>((resolve) =>
        child.on("exit", (code) => {
          alive = false
          leader = false
          resolve(code)
        })
      )
      return {
        name,
        child,
        isLeader: () => leader,
        alive: () => alive,
        ready,
        exited,
        output: () => log
      }
    }),
    (node) =>
      Effect.promise(async () => {
        if (node.alive()) node.child.kill("SIGKILL")
        await node.exited
        // What the process left behind in its group (child processes of its own).
        if (options.group === true) killGroup(node.child.pid, "SIGKILL")
      })
  )

/** Waits until the process has started its node. */
export const awaitReady = (node: NodeProcess, timeoutMillis = 20_000) =>
  Effect.promise(() => node.ready).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMillis,
      orElse: () => Effect.die(new Error(`node ${node.name} did not start:\n${node.output()}`))
    })
  )

/** Sends a signal and waits for the process to exit. */
export const stopNode = (node: NodeProcess, signal: "SIGTERM" | "SIGKILL") =>
  Effect.promise(async () => {
    node.child.kill(signal)
    return await node.exited
  })

const killGroup = (pid: number | undefined, signal: NodeJS.Signals): boolean => {
  try {
    return pid !== undefined && process.kill(-pid, signal)
  } catch {
    return false // no process left in the group
  }
}

/**
 * Sends a signal to the process's whole group (started with `group: true`), as Ctrl-C in a
 * terminal or systemd's stop does, and waits for the process to exit.
 */
export const signalGroup = (node: NodeProcess, signal: "SIGINT" | "SIGTERM") =>
  Effect.promise(async () => {
    killGroup(node.child.pid, signal)
    return await node.exited
  })

/** Whether a process with this pid exists (signal 0 tests for it without sending anything). */
export const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Waits until the process with this pid has ended; false when it still runs after `timeoutMillis`. */
export const pidEnded = async (pid: number, timeoutMillis: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMillis
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  return !pidAlive(pid)
}

/** The pid of the PostgreSQL server whose data directory this is (the first line of `postmaster.pid`). */
export const postmasterPid = (dataDirectory: string): number =>
  Number(readFileSync(join(dataDirectory, "postmaster.pid"), "utf8").split("\n")[0])
