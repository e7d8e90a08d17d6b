/**
 * The dashboard's protections: who may look or act (the application's access
 * function), CSRF tokens for every action, and the headers of every response
 * (a strict Content-Security-Policy, no caching, no framing, no sniffing).
 *
 * CSRF: a random session value in an HttpOnly, SameSite=Strict cookie; every
 * form carries an HMAC of it under a key made when the dashboard starts. A
 * POST is accepted only with both, matching, and (when the browser says
 * where it comes from) from the same origin.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"

export const sessionCookie = "effect_oban_session"

export const securityHeaders: Readonly<Record<string, string>> = {
  "content-security-policy": [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'"
  ].join("; "),
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
}

export interface Csrf {
  /** The session value of the request, or a new one to set in a cookie. */
  readonly session: (request: HttpServerRequest) => { readonly value: string; readonly isNew: boolean }
  /** The token forms carry for a session. */
  readonly token: (session: string) => string
  /** Why a POST is refused, or undefined when it carries a valid token from this origin. */
  readonly check: (request: HttpServerRequest, form: URLSearchParams) => string | undefined
}

const sessionPattern = /^[A-Za-z0-9_-]{43}$/

export const makeCsrf = (): Csrf => {
  const key = randomBytes(32)
  const token = (session: string) => createHmac("sha256", key).update(session).digest("base64url")
  const validSession = (request: HttpServerRequest): string | undefined => {
    const value = request.cookies[sessionCookie]
    return value !== undefined && sessionPattern.test(value) ? value : undefined
  }
  return {
    token,
    session: (request) => {
      const value = validSession(request)
      return value === undefined ? { value: randomBytes(32).toString("base64url"), isNew: true } : { value, isNew: false }
    },
    check: (request, form) => {
      // `none` is a request the user made (a reload, say), never a page of another site. An Origin of `null` is what
      // browsers send with every POST under the `no-referrer` policy these pages set (Fetch: "serializing a request
      // origin"), so it cannot be refused; the SameSite=Strict cookie and Sec-Fetch-Site guard those requests.
      const site = request.headers["sec-fetch-site"]
      if (site !== undefined && site !== "same-origin" && site !== "none") return `cross-site request (${site})`
      const origin = request.headers["origin"]
      const host = request.headers["host"]
      if (origin !== undefined && origin !== "null" && host !== undefined) {
        let originHost: string
        try {
          originHost = new URL(origin).host
        } catch {
          return "malformed Origin header"
        }
        if (originHost !== host) return `request from another origin (${origin})`
      }
      const session = validSession(request)
      if (session === undefined) return "no session cookie: reload the page and try again"
      const given = Buffer.from(form.get("_csrf") ?? "")
      const expected = Buffer.from(token(session))
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return "missing or invalid CSRF token: reload the page and try again"
      }
      return undefined
    }
  }
}

/** Compares a secret in constant time, its length included: the digests of both are compared, which have one length. */
export const sameSecret = (given: string, expected: string): boolean =>
  timingSafeEqual(createHash("sha256").update(given).digest(), createHash("sha256").update(expected).digest())

/** What a dashboard token needs, as error messages say it. */
export const tokenRule = "at least 16 characters other than whitespace"

/** Whether `token` may guard a dashboard: 16 characters of blanks would pass a bare length check. */
export const strongEnough = (token: unknown): token is string =>
  typeof token === "string" && token.replace(/\s/g, "").length >= 16
