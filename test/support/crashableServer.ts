/**
 * An embedded PostgreSQL server that a test can crash (SIGQUIT to the
 * postmaster, what `pg_ctl stop -m immediate` sends: no checkpoint, no flush
 * of the WAL buffers) or restart cleanly (SIGINT, `pg_ctl stop -m fast`), on
 * the same data and port. `fsync` is off (a crash of the server process, not
 * of the machine, loses only what was never written to the OS), but
 * `synchronous_commit` keeps its default, so inserts are durable as in
 * production; `wal_writer_delay` is 1 s instead of 200 ms, which widens the
 * window of forgettable asynchronous commits (claims and outcomes) so that
 * crashes forget some.
 */
import type * as Scope from "effect/Scope"
import * as Effect from "effect/Effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, loadEmbeddedPostgres, serverSettings } from "../../src/internal/embeddedPostgres.ts"

export const walWriterDelayMillis = 1_000
/**
 * How long before a crash a claim or an outcome may have committed and still be forgotten: the WAL
 * writer flushes asynchronous commits within 3 x wal_writer_delay in the worst case (PostgreSQL's
 * docs), plus a second for the time between a claim and the perform's start, or between the
 * perform's end and its outcome's statement.
 */
export const forgettableMillis = 3 * walWriterDelayMillis + 1_000

export interface CrashableServer {
  readonly url: string
  /** SIGQUIT to the postmaster (`pg_ctl stop -m immediate`), then a start after `downMillis`. */
  readonly crash: (downMillis: number) => Promise<void>
  /** SIGINT to the postmaster (`pg_ctl stop -m fast`), then a start after `downMillis`. */
  readonly restart: (downMillis: number) => Promise<void>
}

interface ChildProcess {
  readonly pid?: number | undefined
  readonly exitCode: number | null
  readonly signalCode: string | null
  kill: (signal: string) => boolean
  once: (event: "exit", f: () => void) => void
}

export const startCrashableServer: Effect.Effect<CrashableServer, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(async () => {
    const port = await freePort()
    const databaseDir = await mkdtemp(join(tmpdir(), "effect-oban-crash-"))
    const EmbeddedPostgres = await loadEmbeddedPostgres()
    const server = new EmbeddedPostgres({
      ...serverSettings({
        databaseDir,
        port,
        // Never delete the data on a stop: the test stops and starts the same cluster.
        persistent: true,
        maxConnections: 100,
        flags: ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", `wal_writer_delay=${walWriterDelayMillis}ms`]
      }),
      onLog: () => {},
      onError: () => {}
    })
    await server.initialise()
    await server.start()
    const inner = server as unknown as { process?: ChildProcess | undefined }
    const killOnExit = () => inner.process?.kill("SIGKILL")
    process.once("exit", killOnExit)
    const stopWith = async (signal: string) => {
      const child = inner.process
      if (child === undefined) return
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve())
          child.kill(signal)
        })
      }
      inner.process = undefined
    }
    const bounce = (signal: string) => async (downMillis: number) => {
      await stopWith(signal)
      await new Promise((resolve) => setTimeout(resolve, downMillis))
      await server.start()
    }
    return {
      url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
      crash: bounce("SIGQUIT"),
      restart: bounce("SIGINT"),
      close: async () => {
        process.removeListener("exit", killOnExit)
        await stopWith("SIGQUIT")
        await rm(databaseDir, { recursive: true, force: true })
      }
    }
  }),
  (server) => Effect.promise(() => server.close())
)

