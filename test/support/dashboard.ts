/**
 * Dashboard tests' helpers: plain `fetch` requests with a cookie jar, the
 * CSRF token of a page, jobs inserted in a given state, and a counter of the
 * SQL statements run by the fibers it is provided to.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { CurrentTransformer, type Transformer } from "effect/sql/Statement"

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** A browser-like client: keeps the session cookie, sends credentials. */
export class Client {
  private cookie: string | undefined
  readonly base: string
  readonly headers: Record<string, string>
  constructor(base: string, headers: Record<string, string> = {}) {
    this.base = base
    this.headers = headers
  }

  request(path: string, init: { readonly method?: string; readonly form?: Record<string, string>; readonly headers?: Record<string, string> } = {}): Effect.Effect<Reply> {
    return Effect.promise(async () => {
      const response = await fetch(this.base + path, {
        method: init.method ?? (init.form === undefined ? "GET" : "POST"),
        headers: {
          ...this.headers,
          ...(this.cookie === undefined ? {} : { cookie: this.cookie }),
          ...(init.form === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" }),
          ...init.headers
        },
        redirect: "manual",
        ...(init.form === undefined ? {} : { body: new URLSearchParams(init.form).toString() })
      })
      const set = response.headers.get("set-cookie")
      if (set !== null) this.cookie = set.split(";")[0]
      return { status: response.status, headers: response.headers, text: await response.text() }
    })
  }

  get = (path: string, headers: Record<string, string> = {}) => this.request(path, { headers })
  post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
    this.request(path, { form, headers })

  /** The CSRF token of the forms on a page. */
  csrf = (path: string): Effect.Effect<string> =>
    Effect.map(this.get(path), (reply) => csrfOf(reply.text))
}

export const csrfOf = (page: string): string => {
  const match = /name="_csrf" value="([^"]+)"/.exec(page)
  if (match === null) throw new Error("no CSRF token on the page")
  return match[1]!
}

/** Inserts jobs straight into the table, in any state, and returns their ids. */
export const insertJobs = (
  prefix: string,
  rows: ReadonlyArray<{
    readonly queue: string
    readonly worker?: string
    readonly state?: string
    readonly args?: unknown
    readonly meta?: unknown
    readonly tags?: ReadonlyArray<string>
    readonly errors?: ReadonlyArray<unknown>
    /** When it finished (completed_at or discarded_at), default now. */
    readonly finishedAt?: Date
  }>
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const ids: Array<number> = []
    for (const row of rows) {
      const state = row.state ?? "available"
      const [inserted] = yield* sql<{ id: number }>`
        INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, state, args, meta, tags, errors, attempt, discarded_at, completed_at)
        VALUES (${row.queue}, ${row.worker ?? "Work"}, ${state}::${sql(prefix)}.oban_job_state,
                ${JSON.stringify(row.args ?? {})}::jsonb, ${JSON.stringify(row.meta ?? {})}::jsonb,
                ${`{${(row.tags ?? []).map((tag) => JSON.stringify(tag)).join(",")}}`}::text[],
                ${JSON.stringify(row.errors ?? [])}::jsonb, ${row.errors?.length ?? 0},
                ${state === "discarded" ? (row.finishedAt ?? sql`now()`) : null}::timestamptz,
                ${state === "completed" ? (row.finishedAt ?? sql`now()`) : null}::timestamptz)
        RETURNING id::int AS id`
      ids.push(inserted!.id)
    }
    return ids
  })

/** Counts the SQL statements of every fiber the returned transformer is provided to. */
export const statementCounter = () => {
  let count = 0
  const transformer: Transformer = (statement) => Effect.sync(() => {
    count += 1
    return statement
  })
  return { transformer, count: () => count, reference: CurrentTransformer }
}

/** Reads a server-sent event stream until `events` snapshots arrived (or the signal aborts it). */
export const readSnapshots = async (url: string, headers: Record<string, string>, events: number, signal: AbortSignal) => {
  const response = await fetch(url, { headers, signal })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  let seen = 0
  try {
    while (seen < events) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      seen = text.split("event: snapshot\n").length - 1
    }
  } catch (error) {
    if (!signal.aborted) throw error
  }
  return { status: response.status, contentType: response.headers.get("content-type"), seen, text }
}
