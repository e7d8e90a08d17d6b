/**
 * The dashboard's request handler: access first (every path, assets
 * included), then the route. Pages are rendered on the server from the
 * shared snapshot or one `Jobs` query; `/events` streams snapshots as
 * server-sent events; POSTs pass the CSRF check and run `actions.ts`.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type { SqlClient } from "effect/sql/SqlClient"
import * as Jobs from "../../Jobs.ts"
import { jobWithResult } from "../recordedResult.ts"
import { bulkAction, jobAction, type Outcome, queueAction } from "./actions.ts"
import { script, styles } from "./assets.ts"
import { clusterPage } from "./clusterPage.ts"
import { decodeJobId, parseListQuery, toListOptions } from "./forms.ts"
import type { Html } from "./html.ts"
import { jobPage } from "./jobPage.ts"
import { jobRowsFragment, jobsPage } from "./jobsPage.ts"
import type { PageContext } from "./layout.ts"
import { errorPage, resultPage } from "./messagePages.ts"
import type { Poller } from "./poller.ts"
import { queuesPage } from "./queuesPage.ts"
import { type Csrf, securityHeaders, sessionCookie } from "./security.ts"
import type { Snapshot } from "./snapshot.ts"
import { pausedSummary } from "../pausedSummary.ts"
import { queueSummaries } from "../queueSummaries.ts"

export type Access = "full" | "read-only" | "denied"

export interface HandlerOptions {
  readonly base: string
  readonly access: (request: HttpServerRequest) => Effect.Effect<Access>
  /** The `WWW-Authenticate` header of a refusal, for access checks a browser can answer (basic auth). */
  readonly challenge?: string | undefined
  readonly poller: Poller
  readonly csrf: Csrf
  /** Completes when the server stops: open event streams end at once instead of holding up its shutdown. */
  readonly stopping: Deferred.Deferred<void>
}

type Response = HttpServerResponse.HttpServerResponse

const maxBody = 64 * 1024

/**
 * A POST's body as text, or undefined past `maxBody` bytes: refused by its
 * declared length before anything is read, else read only until it passes the
 * limit (a body of hundreds of megabytes read whole took that much memory).
 * A body that cannot be read is empty, which the CSRF check then refuses.
 */
const readBody = (request: HttpServerRequest): Effect.Effect<string | undefined> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > maxBody) return Effect.succeed(undefined)
  return Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let size = 0
    return Stream.runForEachWhile(request.stream, (chunk) =>
      Effect.sync(() => {
        size += chunk.length
        if (size <= maxBody) chunks.push(chunk)
        return size <= maxBody
      })).pipe(
        Effect.map(() => size > maxBody ? undefined : Buffer.concat(chunks).toString("utf8")),
        Effect.orElseSucceed(() => "")
      )
  })
}

const withSession = (response: Response, session: { readonly value: string; readonly isNew: boolean }, base: string) =>
  session.isNew
    ? HttpServerResponse.setCookie(response, sessionCookie, session.value, {
      httpOnly: true,
      sameSite: "strict",
      path: base === "" ? "/" : base
    }).pipe(Effect.orElseSucceed(() => response))
    : Effect.succeed(response)

const htmlResponse = (body: Html, status = 200): Response =>
  HttpServerResponse.text(body.value, { status, contentType: "text/html; charset=utf-8", headers: securityHeaders })

const textResponse = (
  body: string,
  status: number,
  headers: Record<string, string> = {},
  contentType = "text/plain; charset=utf-8"
): Response => HttpServerResponse.text(body, { status, contentType, headers: { ...securityHeaders, ...headers } })

const jsonResponse = (body: unknown, status = 200): Response =>
  HttpServerResponse.text(JSON.stringify(body), { status, contentType: "application/json", headers: securityHeaders })

/**
 * What live pages receive: counts, per-queue producer totals and throughput, the per-queue ones as
 * `[queue, value]` pairs (see `Snapshot.throughput`).
 */
export const livePayload = (snapshot: Snapshot) => {
  const producers: Array<readonly [string, { nodes: number; limit: number | string; running: number; paused: string }]> =
    queueSummaries(snapshot.cluster).map((entry) => [entry.queue, {
      nodes: entry.producers.length,
      limit: entry.limit,
      running: entry.running,
      paused: pausedSummary(entry.producers, entry.pausedSince !== undefined)
    }])
  return {
    now: snapshot.now.toISOString(),
    version: snapshot.version,
    counts: snapshot.counts.queues,
    producers,
    throughput: [...snapshot.throughput]
  }
}

const encoder = new TextEncoder()

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

const events = (poller: Poller, stopping: Deferred.Deferred<void>): Response => {
  const event = (snapshot: Snapshot) => encoder.encode(`event: snapshot\ndata: ${JSON.stringify(livePayload(snapshot))}\n\n`)
  const first = Stream.fromEffect(Effect.map(Effect.option(poller.current), Option.match({
    onNone: () => encoder.encode("retry: 3000\n\n"),
    onSome: (snapshot) => event(snapshot)
  })))
  const keepAlive = Stream.tick(Duration.seconds(15)).pipe(Stream.map(() => encoder.encode(": keep-alive\n\n")))
  return HttpServerResponse.stream(
    // Ends with the poller (when the dashboard stops), so open pages never hold up a shutdown.
    Stream.concat(first, Stream.merge(Stream.map(poller.changes, event), keepAlive, { haltStrategy: "left" })).pipe(
      Stream.interruptWhen(Deferred.await(stopping))
    ),
    {
      contentType: "text/event-stream",
      headers: { ...securityHeaders, "cache-control": "no-store", "x-accel-buffering": "no" }
    }
  )
}

const outcomeResponse = (context: PageContext, outcome: Outcome, wantsJson: boolean): Response => {
  switch (outcome._tag) {
    case "Confirm":
      return wantsJson ? jsonResponse({ confirm: outcome.message }, 409) : htmlResponse(outcome.page)
    case "NotFound":
      return wantsJson ? jsonResponse({ error: outcome.message }, 404) : htmlResponse(errorPage(context, "Not found", outcome.message), 404)
    case "Done":
      return wantsJson
        ? jsonResponse({ message: outcome.message, changed: outcome.changed, skipped: outcome.skipped ?? 0 })
        : htmlResponse(resultPage(context, outcome.title, outcome.message, outcome.back))
  }
}

const failureResponse = (context: PageContext, error: { readonly _tag: string; readonly message: string }, wantsJson: boolean) => {
  const field = (error as { readonly field?: string }).field
  const [status, title, message] = error._tag === "InvalidFilterError" || error._tag === "InvalidConfigError"
    ? [400, "Bad input", `${field === undefined ? "" : `${field}: `}${error.message}`]
    : error._tag === "MigrationError"
    ? [503, "Not migrated", error.message]
    : [503, "Database error", "the database did not answer; see the server's log"]
  return wantsJson ? jsonResponse({ error: message }, status) : htmlResponse(errorPage(context, title, message), status)
}

export const makeHandler = (options: HandlerOptions) =>
(request: HttpServerRequest): Effect.Effect<Response, never, SqlClient> =>
  Effect.gen(function*() {
    const access = yield* options.access(request)
    if (access === "denied") {
      return textResponse(
        "authentication required",
        401,
        options.challenge === undefined ? {} : { "www-authenticate": options.challenge }
      )
    }
    // Leading slashes collapsed: "//x/jobs" would otherwise read as a host ("x") and a path, or fail to parse.
    const url = new URL(request.url.replace(/^\/{2,}/, "/"), "http://dashboard.invalid")
    const path = url.pathname.replace(/\/+$/, "") || "/"
    const session = options.csrf.session(request)
    const context: PageContext = { base: options.base, csrf: options.csrf.token(session.value), canAct: access === "full" }
    const wantsJson = (request.headers["accept"] ?? "").includes("application/json")
    const segments = path.split("/").slice(1).map(decodeSegment)

    const route = Effect.gen(function*() {
      if (request.method === "GET" || request.method === "HEAD") {
        if (path === "/assets/dashboard.js") {
          return textResponse(script, 200, {}, "text/javascript; charset=utf-8")
        }
        if (path === "/assets/dashboard.css") return textResponse(styles, 200, {}, "text/css; charset=utf-8")
        if (path === "/favicon.ico") return HttpServerResponse.empty({ status: 204, headers: securityHeaders })
        if (path === "/events") return events(options.poller, options.stopping)
        if (path === "/") return htmlResponse(queuesPage(context, yield* options.poller.current))
        if (path === "/cluster") return htmlResponse(clusterPage(context, yield* options.poller.current))
        if (path === "/jobs") {
          const query = yield* parseListQuery(url.searchParams)
          const page = yield* Jobs.list(toListOptions(query))
          if (request.headers["x-dashboard-fragment"] === "rows") return htmlResponse(jobRowsFragment(context, query, page))
          const snapshot = yield* options.poller.current
          return htmlResponse(jobsPage(context, query, page, snapshot.version))
        }
        if (segments.length === 2 && segments[0] === "jobs") {
          const id = yield* decodeJobId(segments[1]!)
          const found = yield* jobWithResult(id)
          if (Option.isNone(found)) return htmlResponse(errorPage(context, "Not found", `job ${id} does not exist`), 404)
          return htmlResponse(jobPage(context, found.value.job, found.value.result, (yield* options.poller.current).version))
        }
        return htmlResponse(errorPage(context, "Not found", `no page at ${path}`), 404)
      }
      if (request.method !== "POST") return textResponse("method not allowed", 405, { allow: "GET, POST" })
      if (access !== "full") return textResponse("read-only access: actions are not allowed", 403)
      const body = yield* readBody(request)
      if (body === undefined) return textResponse("request body too large", 413)
      const form = new URLSearchParams(body)
      const refused = options.csrf.check(request, form)
      if (refused !== undefined) return textResponse(`refused: ${refused}`, 403)
      const outcome = segments.length === 3 && segments[0] === "jobs"
        ? yield* jobAction(context, segments[1]!, segments[2]!, form)
        : segments.length === 2 && segments[0] === "bulk"
        ? yield* bulkAction(context, segments[1]!, form)
        : segments.length === 3 && segments[0] === "queues"
        ? yield* queueAction(context, segments[1]!, segments[2]!, form)
        : undefined
      if (outcome === undefined) return textResponse("no such action", 404)
      return outcomeResponse(context, outcome, wantsJson)
    })

    const response = yield* route.pipe(
      Effect.catch((error) =>
        Effect.as(
          error._tag === "SqlError" ? Effect.logWarning("dashboard: database error", error) : Effect.void,
          failureResponse(context, error, wantsJson)
        )
      )
    )
    return yield* withSession(response, session, options.base)
  }).pipe(
    Effect.catchCause((cause) =>
      Effect.as(
        Effect.logError("dashboard: request failed", cause),
        textResponse(Cause.hasInterruptsOnly(cause) ? "interrupted" : "internal error", 500)
      )
    )
  )
