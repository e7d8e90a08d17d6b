/**
 * The frame of every dashboard page (navigation, assets, the live marker)
 * and the pieces pages share: dates, state badges, action forms.
 */
import type { JobState } from "../../Job.ts"
import { type Html, html, type Interpolation, plainVisibleText } from "./html.ts"

export interface PageContext {
  /** Where the dashboard is mounted, without a trailing slash ("" at the root). */
  readonly base: string
  /** The CSRF token of this session, carried by every form. */
  readonly csrf: string
  readonly canAct: boolean
}

export const states: ReadonlyArray<JobState> = [
  "available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled", "suspended"
]

/**
 * A time, or `-` for none. PostgreSQL's `infinity` and `-infinity` (plain SQL
 * parks a job with them) reach us as an invalid `Date`, on which
 * `toISOString` throws: they show as `infinite`.
 */
export const date = (value: Date | null | undefined): Html =>
  value === null || value === undefined
    ? html`<span class="muted">-</span>`
    : Number.isNaN(value.getTime())
    ? html`<span class="muted">infinite</span>`
    : html`<time datetime="${value.toISOString()}">${value.toISOString().replace("T", " ").slice(0, 19)}</time>`

export const badge = (state: string): Html => html`<span class="state state-${state}">${state}</span>`

/** A POST form with its CSRF token; `fields` become hidden inputs. */
export const postForm = (
  context: PageContext,
  action: string,
  fields: ReadonlyArray<readonly [string, string]>,
  body: Interpolation,
  className = "inline"
): Html =>
  context.canAct
    ? html`<form method="post" action="${action}" class="${className}">
<input type="hidden" name="_csrf" value="${context.csrf}">
${fields.map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
${body}</form>`
    : html``

export const page = (
  context: PageContext,
  options: { readonly title: string; readonly current: "queues" | "jobs" | "cluster" | ""; readonly version?: string },
  content: Interpolation
): Html => {
  const link = (name: "queues" | "jobs" | "cluster", label: string, href: string) =>
    html`<a href="${href}"${name === options.current ? html` aria-current="page"` : ""}>${label}</a>`
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${plainVisibleText(options.title)} · effect-oban</title>
<link rel="stylesheet" href="${context.base}/assets/dashboard.css">
<script src="${context.base}/assets/dashboard.js" defer></script>
</head>
<body data-base="${context.base}" data-version="${options.version ?? ""}">
<header>
<strong class="brand">effect-oban</strong>
<nav>${link("queues", "Queues", `${context.base}/`)}${link("jobs", "Jobs", `${context.base}/jobs`)}${
    link("cluster", "Nodes & cron", `${context.base}/cluster`)
  }</nav>
<span id="live" class="live" title="live updates">○ static</span>
${context.canAct ? "" : html`<span class="readonly">read-only</span>`}
</header>
<main>
<h1>${options.title}</h1>
${content}
</main>
</body>
</html>
`
}
