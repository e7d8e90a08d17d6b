/**
 * A real PgBouncer in transaction mode in front of the test server, for the
 * scope's life: its own configuration in a temporary directory and a free
 * port on 127.0.0.1. Needs the `pgbouncer` binary (Debian's package); tests
 * skip when it is not installed (`pgbouncerBinary` is undefined).
 */
import { Effect, type Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const pgbouncerBinary: string | undefined = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
  .find((path) => existsSync(path))

/** PgBouncer refuses to run as root: then it runs as this user (Debian's packages create it). */
const unprivilegedUser = "postgres"

const freePort = (): Effect.Effect<number> =>
  Effect.callback<number>((resume) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

const accepting = (port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

/**
 * Starts PgBouncer (transaction mode, trust auth for its clients) in front of
 * the server at `targetUrl`; returns the URL that goes through it.
 */
export const startPgBouncer = (targetUrl: string): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.gen(function*() {
    if (pgbouncerBinary === undefined) return yield* Effect.fail(new Error("pgbouncer is not installed"))
    const target = new URL(targetUrl)
    const user = decodeURIComponent(target.username || "postgres")
    const database = target.pathname.slice(1) || "postgres"
    const port = yield* freePort()
    const dir = mkdtempSync(join(tmpdir(), "effect-oban-pgbouncer-"))
    const upstream = [
      `host=${target.hostname || "127.0.0.1"}`,
      `port=${target.port || "5432"}`,
      `dbname=${database}`,
      `user=${user}`,
      ...(target.password === "" ? [] : [`password=${decodeURIComponent(target.password)}`])
    ].join(" ")
    writeFileSync(join(dir, "users.txt"), `"${user}" ""\n`)
    writeFileSync(
      join(dir, "pgbouncer.ini"),
      [
        "[databases]",
        `${database} = ${upstream}`,
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        `listen_port = ${port}`,
        "auth_type = trust",
        `auth_file = ${join(dir, "users.txt")}`,
        "pool_mode = transaction",
        "max_client_conn = 200",
        "default_pool_size = 10",
        "unix_socket_dir =",
        `logfile = ${join(dir, "pgbouncer.log")}`,
        `pidfile = ${join(dir, "pgbouncer.pid")}`
      ].join("\n") + "\n"
    )
    chmodSync(dir, 0o777)
    const root = process.getuid?.() === 0
    if (root) spawnSync("chown", ["-R", unprivilegedUser, dir])
    const child = root
      ? spawn("su", [unprivilegedUser, "-s", "/bin/sh", "-c", `exec ${pgbouncerBinary} ${join(dir, "pgbouncer.ini")}`], {
        stdio: "ignore"
      })
      : spawn(pgbouncerBinary, [join(dir, "pgbouncer.ini")], { stdio: "ignore" })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        // Run through `su`, the server is its child: stop it by its pid file, and `su` with it.
        try {
          process.kill(Number(readFileSync(join(dir, "pgbouncer.pid"), "utf8").trim()), "SIGINT")
        } catch {
          // Not started, or gone already.
        }
        child.kill("SIGINT")
        rmSync(dir, { recursive: true, force: true })
      })
    )
    const started = Date.now()
    while (!(yield* accepting(port))) {
      if (Date.now() - started > 10_000) return yield* Effect.fail(new Error("pgbouncer did not start within 10 s"))
      yield* Effect.sleep("50 millis")
    }
    const through = new URL(targetUrl)
    through.hostname = "127.0.0.1"
    through.port = String(port)
    through.password = ""
    return through.toString()
  })
