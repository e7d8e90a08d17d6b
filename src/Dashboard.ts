/**
 * The web dashboard: queues with live counts, limits, paused state and
 * throughput charts; a filtered, paginated, live job list; a page per job
 * (args, meta, tags, its failed attempts, a timeline); nodes, leader and
 * cron; and confirmed actions (retry, cancel, delete one job or every job
 * matching a filter; pause, resume, scale a queue). Server-rendered HTML and
 * one small script, no build step.
 *
 * Mount it in an application's own `HttpRouter` with `layer`, under a path
 * and behind an access function the application supplies, or run it on its
 * own with `serve` (as `effect-oban dashboard` does), bound to 127.0.0.1 and
 * guarded by a token. Nothing is open by default: `layer` has no default
 * access function, `serve` always requires the token.
 *
 * Live pages share one poller: one set of aggregate queries (counts per
 * queue and state, the cluster view, the last seconds of throughput) per
 * interval, however many pages are open, and none while no page listens.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "./internal/sql/plain.ts"
import { randomBytes } from "node:crypto"
import { createServer } from "node:http"
import { Settings } from "./Config.ts"
import { DashboardServeError, InvalidConfigError } from "./Errors.ts"
import { type Access as AccessLevel, makeHandler } from "./internal/dashboard/handler.ts"
import { makePoller } from "./internal/dashboard/poller.ts"
import { makeCsrf, sameSecret, strongEnough, tokenRule } from "./internal/dashboard/security.ts"
import { duration } from "./internal/optionChecks.ts"

/**
 * What a request may do: `"full"` (look and act), `"read-only"` (look: every
 * action answers 403) or `"denied"` (401).
 *
 * @since 0.1.0
 */
export type Access = AccessLevel

/**
 * @since 0.1.0
 */
export interface Options {
  /**
   * Decides what each request may do, e.g. from the application's session
   * cookie or an auth header. Called for every request, pages, events and
   * assets alike.
   */
  readonly access: (request: HttpServerRequest) => Effect.Effect<Access>
  /** Where the dashboard lives in the application's router. Default `/oban`; `""` for the root. */
  readonly path?: string | undefined
  /** How often live pages get a new snapshot (one set of queries for all of them). Default 2 seconds. */
  readonly pollInterval?: Duration.Input | undefined
  /** A `WWW-Authenticate` value sent with 401s, when `access` checks credentials a browser can send (basic auth). */
  readonly challenge?: string | undefined
}

const normalizePath = (path: string): string => {
  const trimmed = path.replace(/\/+$/, "")
  return trimmed === "" ? "" : trimmed.startsWith("/") ? trimmed : `/${trimmed}`
}

/**
 * Mounts the dashboard in the application's `HttpRouter` under
 * `options.path`. Needs `SqlClient` and `ObanConfig.Settings` (the prefix),
 * not a running node.
 *
 * ```ts
 * const DashboardLive = Dashboard.layer({
 *   path: "/admin/jobs",
 *   access: (request) => Effect.succeed(request.headers["x-admin"] === "yes" ? "full" : "denied")
 * })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<never, never, HttpRouter.HttpRouter | SqlClient> =>
  Layer.effectDiscard(Effect.flatMap(Deferred.make<void>(), (stopping) => mount(options, stopping)))

/** Registers the routes; `stopping` ends the open event streams. */
const mount = (options: Options, stopping: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const router = yield* HttpRouter.HttpRouter
    const base = normalizePath(options.path ?? "/oban")
    const poller = yield* makePoller(options.pollInterval ?? Duration.seconds(2))
    yield* Effect.addFinalizer(() => Deferred.succeed(stopping, undefined))
    const sql = plain(yield* SqlClient)
    const settings = yield* Settings
    const handler = makeHandler({ base, access: options.access, challenge: options.challenge, poller, csrf: makeCsrf(), stopping })
    const mounted = base === "" ? router : router.prefixed(base)
    yield* mounted.add("*", "/*", (request) =>
      handler(request).pipe(Effect.provideService(SqlClient, sql), Effect.provideService(Settings, settings)))
  })

/**
 * An access function for a shared secret: a request with
 * `Authorization: Bearer <token>`, or basic auth whose password is the token
 * (any user name), gets `access` (default `"full"`); others are denied.
 * Pair it with `basicChallenge` so browsers ask for it.
 *
 * @since 0.1.0
 */
export const tokenAccess = (token: string, access: Exclude<Access, "denied"> = "full") =>
(request: HttpServerRequest): Effect.Effect<Access> =>
  Effect.sync(() => {
    // An empty token would match an empty credential: it lets nobody in. (`serve` refuses a weak token outright.)
    if (token.length === 0) return "denied"
    const header = request.headers["authorization"] ?? ""
    // The scheme, then everything after its space as the credentials: a token with spaces works, text after it does not.
    const space = header.indexOf(" ")
    const scheme = space < 0 ? header : header.slice(0, space)
    const value = space < 0 ? "" : header.slice(space + 1)
    if (scheme.toLowerCase() === "bearer") return sameSecret(value, token) ? access : "denied"
    if (scheme.toLowerCase() === "basic") {
      const decoded = Buffer.from(value, "base64").toString("utf8")
      const password = decoded.slice(decoded.indexOf(":") + 1)
      return decoded.includes(":") && sameSecret(password, token) ? access : "denied"
    }
    return "denied"
  })

/**
 * The `WWW-Authenticate` value that makes a browser ask for basic-auth credentials.
 *
 * @since 0.1.0
 */
export const basicChallenge = "Basic realm=\"effect-oban dashboard\", charset=\"UTF-8\""

/**
 * A random token (32 characters, URL-safe) for `serve`.
 *
 * @since 0.1.0
 */
export const generateToken = (): string => randomBytes(24).toString("base64url")

/**
 * @since 0.1.0
 */
export interface ServeOptions {
  /** The token every request must carry (bearer, or the basic-auth password). At least 16 characters. */
  readonly token: string
  /** Default 4000; 0 picks a free port. */
  readonly port?: number | undefined
  /** Default `127.0.0.1`: reachable from this machine only. */
  readonly host?: string | undefined
  /** Only look, never act. Default false. */
  readonly readOnly?: boolean | undefined
  readonly pollInterval?: Duration.Input | undefined
  /**
   * How long closing the scope waits for responses still being written (event streams are ended
   * first, so they never hold it up). Default 1 second.
   */
  readonly shutdownTimeout?: Duration.Input | undefined
}

/** The system's reason a server could not listen (`listen EADDRINUSE: address already in use ...`). */
const reasonOf = (cause: unknown): string =>
  cause instanceof Error && cause.message !== "" ? cause.message : String(cause)

/**
 * @since 0.1.0
 */
export interface Served {
  /** `http://host:port` of the running server. */
  readonly url: string
}

/**
 * Runs the dashboard on its own HTTP server until the scope closes, bound to
 * `127.0.0.1` unless told otherwise and refusing every request without the
 * token (a browser asks for it: any user name, the token as password).
 *
 * @since 0.1.0
 */
export const serve = (
  options: ServeOptions
): Effect.Effect<Served, DashboardServeError | InvalidConfigError, SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    if (!strongEnough(options.token)) {
      return yield* new InvalidConfigError({ field: "token", message: `the dashboard token must have ${tokenRule}` })
    }
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 4000
    const shutdownTimeout = yield* duration("shutdownTimeout", options.shutdownTimeout, Duration.seconds(1), Duration.zero)
    // The server waits for open responses when it stops: end the event streams first.
    const stopping = yield* Deferred.make<void>()
    const app = Layer.effectDiscard(mount({
      path: "",
      access: tokenAccess(options.token, options.readOnly === true ? "read-only" : "full"),
      challenge: basicChallenge,
      pollInterval: options.pollInterval
    }, stopping))
    const server = HttpRouter.serve(app, { disableLogger: true, disableListenLog: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host, gracefulShutdownTimeout: shutdownTimeout }))
    )
    const scope = yield* Effect.scope
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`
    const context = yield* Layer.buildWithScope(server, scope).pipe(
      Effect.mapError((error) =>
        new DashboardServeError({
          address,
          message: `the dashboard could not listen on ${address}: ${reasonOf(error.cause)}`
        })
      )
    )
    yield* Effect.addFinalizer(() => Deferred.succeed(stopping, undefined))
    const url = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address).replace(/\/$/, "")
    return { url }
  })
