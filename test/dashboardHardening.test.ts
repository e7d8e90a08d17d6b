/**
 * What a security review of the dashboard found (2026-12-08): job text whose
 * direction or control characters made an operator misread it, a POST body
 * read whole before its limit was checked, bearer credentials with text after
 * the token accepted, a blank token allowed, and a token comparison that told
 * the token's length.
 */
import { assert, describe, layer } from "@effect/vitest"
import { it as plainIt } from "vitest"
import { Effect, Exit } from "effect"
import { request as httpRequest } from "node:http"
import * as Dashboard from "../src/Dashboard.ts"
import { html } from "../src/internal/dashboard/html.ts"
import { page as layoutPage } from "../src/internal/dashboard/layout.ts"
import { sameSecret } from "../src/internal/dashboard/security.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { Client, insertJobs } from "./support/dashboard.ts"

const prefix = uniquePrefix("dashboard_hardening")
const token = "test-token-0123456789abcdef"
const bearer = { authorization: `Bearer ${token}` }

describe("dashboard text", () => {
  plainIt("hidden characters show as their code points in text, and stay themselves in attribute values", () => {
    const text = "ok\u202Egnp.exe\u0007\u200B"
    const page = html`<p title="${text}">${text}</p>`.value
    assert.strictEqual(
      page,
      `<p title="ok&#x202E;gnp.exe&#x0007;&#x200B;">ok<span class="hidden-char">U+202E</span>gnp.exe` +
        `<span class="hidden-char">U+0007</span><span class="hidden-char">U+200B</span></p>`
    )
    // Emoji built with the zero-width joiner are left alone, and so are ordinary non-ASCII letters.
    assert.strictEqual(html`${"👩‍👩‍👧 Zürich"}`.value, "👩‍👩‍👧 Zürich")
    // A `>` of the template's own attribute text does not end the attribute; characters past the BMP are found too.
    assert.strictEqual(html`<a title="a > b ${"x\u202E"}">`.value, `<a title="a > b x&#x202E;">`)
    assert.strictEqual(html`<p>${"tag\u{E0041}"}</p>`.value, `<p>tag<span class="hidden-char">U+E0041</span></p>`)
    // A page's title is not parsed as markup (a confirmation's holds the queue's name): there the code point goes unmarked.
    const confirm = layoutPage({ base: "", csrf: "x", canAct: true }, { title: "Pause queue bill\u202Eing", current: "" }, html``).value
    assert.include(confirm, "<title>Pause queue billU+202Eing · effect-oban</title>")
  })

  plainIt("a token is compared whatever its length, and a wrong one of any length is refused", () => {
    assert.isTrue(sameSecret(token, token))
    for (const given of ["", "x", token.slice(0, -1), `${token}x`, token.toUpperCase()]) assert.isFalse(sameSecret(given, token))
  })
})

layer(testLayer(prefix), { excludeTestServices: true })("dashboard hardening", (it) => {
  it.effect("a job whose names and args hold direction overrides shows them marked on its page and in the list", () =>
    Effect.gen(function*() {
      const [id] = yield* insertJobs(prefix, [{
        queue: "billing",
        worker: "Mailer\u202E",
        args: { amount: "\u202E00.01", note: "ok\u202Egnp.exe" },
        tags: ["\u202Eurgent"]
      }])
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      const client = new Client(url, bearer)
      for (const path of [`/jobs/${id}`, "/jobs?queue=billing"]) {
        const page = yield* client.get(path)
        assert.strictEqual(page.status, 200, path)
        assert.notInclude(page.text, "\u202E", path)
        assert.include(page.text, `Mailer<span class="hidden-char">U+202E</span>`, path)
      }
      const job = yield* client.get(`/jobs/${id}`)
      assert.include(job.text, `ok<span class="hidden-char">U+202E</span>gnp.exe`)
      assert.include(job.text, `<span class="hidden-char">U+202E</span>urgent`)

    }))

  it.effect("bearer credentials are the whole rest of the header: text after the token is refused, a token with spaces works", () =>
    Effect.gen(function*() {
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      assert.strictEqual((yield* new Client(url, bearer).get("/")).status, 200)
      assert.strictEqual((yield* new Client(url, { authorization: `Bearer ${token} garbage` }).get("/")).status, 401)
      assert.strictEqual((yield* new Client(url, { authorization: `Bearer  ${token}` }).get("/")).status, 401)
      const spaced = "correct horse battery staple"
      const other = yield* Dashboard.serve({ token: spaced, port: 0 })
      assert.strictEqual((yield* new Client(other.url, { authorization: `Bearer ${spaced}` }).get("/")).status, 200)
      // Sixteen characters of blanks guard nothing.
      const blank = yield* Effect.exit(Dashboard.serve({ token: " ".repeat(16), port: 0 }))
      assert.isTrue(Exit.isFailure(blank))
      assert.match(String(Exit.isFailure(blank) ? blank.cause : ""), /at least 16 characters other than whitespace/)
    }))

  it.effect("a body over the limit is refused by its declared length before it arrives, and a chunked one as well", () =>
    Effect.gen(function*() {
      const { url } = yield* Dashboard.serve({ token, port: 0 })
      // Declared: 100 MB announced, 1 byte sent; the answer comes without waiting for the rest.
      const declared = yield* Effect.promise(() => post(url, { "content-length": String(100 * 1024 * 1024) }, ["x"]))
      assert.strictEqual(declared, 413)
      // Chunked, no length, never ended: refused once past 64 KiB (read whole, the answer waited for an end that never came).
      const chunk = "x".repeat(64 * 1024)
      const chunked = yield* Effect.promise(() => post(url, { "transfer-encoding": "chunked" }, [chunk, chunk], false))
      assert.strictEqual(chunked, 413)
      // A body within the limit still reaches the CSRF check (no session cookie here: refused there, not for its size).
      const fine = yield* Effect.promise(() => post(url, {}, ["_csrf=x"]))
      assert.strictEqual(fine, 403)
    }))
})

/** Sends a POST by hand (so its headers and chunks are ours): the status the server answers with. */
const post = (base: string, headers: Record<string, string>, chunks: ReadonlyArray<string>, end = true) =>
  new Promise<number>((resolve, reject) => {
    const req = httpRequest(new URL("/jobs/1/retry", base), {
      method: "POST",
      headers: { ...bearer, ...headers, "content-type": "application/x-www-form-urlencoded" }
    }, (response) => {
      resolve(response.statusCode ?? 0)
      response.resume()
      req.destroy()
    })
    req.on("error", (error) => {
      if (!req.destroyed) reject(error)
    })
    for (const chunk of chunks) req.write(chunk)
    if (end && headers["content-length"] === undefined) req.end()
  })
