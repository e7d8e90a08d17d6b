/**
 * The job list: the filter form (the same filter as `Jobs.list`), a page of
 * jobs in keyset order with a link to the next page, and bulk actions on
 * every job that matches the filter.
 */
import type { Job } from "../../Job.ts"
import type { Page } from "../../Jobs.ts"
import { matchesEveryJob } from "../jobFilter.ts"
import { filterParams, type ListQuery, toFilter } from "./forms.ts"
import { type Html, html } from "./html.ts"
import { badge, date, page, type PageContext, postForm, states } from "./layout.ts"

const summary = (value: unknown): string => {
  const text = JSON.stringify(value) ?? ""
  return text.length > 120 ? `${text.slice(0, 117)}...` : text
}

const row = (context: PageContext, job: Job): Html =>
  html`<tr data-job-id="${job.id}">
<td class="num"><a href="${context.base}/jobs/${job.id}">${job.id}</a></td>
<td>${badge(job.state)}</td>
<td>${job.queue}</td>
<td>${job.worker}</td>
<td><code class="args">${summary(job.args)}</code></td>
<td class="num">${job.attempt}/${job.maxAttempts}</td>
<td>${date(job.scheduledAt)}</td>
<td>${job.tags.join(", ")}</td>
</tr>`

/** The rows of a page: what live updates replace. */
export const jobRows = (context: PageContext, result: Page): Html =>
  html`<tbody id="job-rows">${
    result.jobs.length === 0
      ? html`<tr><td colspan="8" class="muted">No job matches.</td></tr>`
      : result.jobs.map((job) => row(context, job))
  }</tbody>`

const filterForm = (context: PageContext, query: ListQuery): Html => {
  const text = (name: string, label: string, value: string, placeholder: string) =>
    html`<label>${label} <input type="text" name="${name}" value="${value}" placeholder="${placeholder}"></label>`
  return html`<form method="get" action="${context.base}/jobs" class="filters">
${text("queue", "Queue", query.queue[0] ?? "", "any")}
<label>State <select name="state"><option value="">any</option>${
    states.map((state) => html`<option value="${state}"${query.state[0] === state ? html` selected` : ""}>${state}</option>`)
  }</select></label>
${text("worker", "Worker", query.worker[0] ?? "", "any")}
${text("tag", "Tag", query.tag[0] ?? "", "any")}
${text("args", "Args contain", query.args === undefined ? "" : JSON.stringify(query.args), "{\"user_id\": 42}")}
${text("meta", "Meta contains", query.meta === undefined ? "" : JSON.stringify(query.meta), "{}")}
<label>Sort <select name="sort">${
    (["id", "scheduledAt", "insertedAt"] as const).map((sort) =>
      html`<option value="${sort}"${(query.sort ?? "id") === sort ? html` selected` : ""}>${sort}</option>`
    )
  }</select></label>
<label>Order <select name="order">${
    (["desc", "asc"] as const).map((order) =>
      html`<option value="${order}"${(query.order ?? "desc") === order ? html` selected` : ""}>${order}</option>`
    )
  }</select></label>
<button type="submit">Filter</button> <a href="${context.base}/jobs">clear</a>
</form>`
}

const bulkActions = (context: PageContext, query: ListQuery): Html => {
  if (matchesEveryJob(toFilter(query))) {
    return html`<p class="note">Filter the list to act on every matching job at once.</p>`
  }
  const fields = Array.from(filterParams(query).entries()).filter(([name]) => !["sort", "order", "limit"].includes(name))
  const button = (action: string, label: string) =>
    postForm(context, `${context.base}/bulk/${action}`, fields, html`<button type="submit">${label}</button>`)
  return context.canAct
    ? html`<div class="actions bulk">Every matching job: ${button("retry", "Retry all")} ${button("cancel", "Cancel all")} ${
      button("delete", "Delete all")
    }</div>`
    : html``
}

/** The links to the first and the next page, for the rows shown: the next page starts after the last of them. */
const pages = (context: PageContext, query: ListQuery, result: Page): Html => {
  const params = filterParams(query)
  const next = result.next === undefined ? undefined : new URLSearchParams([...params, ["cursor", result.next]])
  return html`<nav class="pages" id="job-pages">${query.cursor === undefined ? "" : html`<a href="${context.base}/jobs?${params}">first page</a>`} ${
    next === undefined ? html`<span class="muted">last page</span>` : html`<a rel="next" href="${context.base}/jobs?${next}">next page</a>`
  }</nav>`
}

/**
 * What a live update replaces: the rows and, with them, the page links. A
 * next link left from before the reload would start after a row no longer
 * shown, skipping or repeating the jobs that moved across the page's end.
 */
export const jobRowsFragment = (context: PageContext, query: ListQuery, result: Page): Html =>
  html`<table>${jobRows(context, result)}</table>${pages(context, query, result)}`

export const jobsPage = (context: PageContext, query: ListQuery, result: Page, version: string): Html =>
  page(
    context,
    { title: "Jobs", current: "jobs", version },
    html`${filterForm(context, query)}
${bulkActions(context, query)}
<table class="jobs" data-live-rows="1">
<thead><tr><th class="num">id</th><th>state</th><th>queue</th><th>worker</th><th>args</th><th class="num">attempt</th><th>scheduled</th><th>tags</th></tr></thead>
${jobRows(context, result)}
</table>
${pages(context, query, result)}`
  )
