/**
 * One job: its fields, args, meta, recorded result and tags, each failed attempt (the latest 20) with its
 * error and cause, the timeline of its states, and its actions.
 */
import * as Option from "effect/Option"
import type { Job } from "../../Job.ts"
import { type Html, html, prettyJson } from "./html.ts"
import { badge, date, page, type PageContext, postForm } from "./layout.ts"

interface Moment {
  readonly at: Date
  readonly what: string
  readonly detail: string
}

/** The job's moments in time order: inserted, scheduled, each failed attempt, attempted, finished. */
export const timeline = (job: Job): ReadonlyArray<Moment> => {
  const moments: Array<Moment> = [{ at: job.insertedAt, what: "inserted", detail: `into ${job.queue}` }]
  if (job.scheduledAt.getTime() > job.insertedAt.getTime()) {
    moments.push({ at: job.scheduledAt, what: "scheduled", detail: "to run at" })
  }
  for (const entry of job.errors) {
    const at = new Date(entry.at)
    if (!Number.isNaN(at.getTime())) moments.push({ at, what: `attempt ${entry.attempt} ${entry.kind}`, detail: entry.message })
  }
  if (job.attemptedAt !== null) moments.push({ at: job.attemptedAt, what: `attempt ${job.attempt} started`, detail: "" })
  if (job.completedAt !== null) moments.push({ at: job.completedAt, what: "completed", detail: "" })
  if (job.discardedAt !== null) moments.push({ at: job.discardedAt, what: "discarded", detail: "" })
  if (job.cancelRequestedAt !== null) moments.push({ at: job.cancelRequestedAt, what: "cancel requested", detail: "" })
  if (job.cancelledAt !== null) moments.push({ at: job.cancelledAt, what: "cancelled", detail: "" })
  return moments.sort((a, b) => a.at.getTime() - b.at.getTime())
}

const actions = (context: PageContext, job: Job): Html => {
  const path = `${context.base}/jobs/${job.id}`
  const button = (action: string, label: string) =>
    postForm(context, `${path}/${action}`, [], html`<button type="submit">${label}</button>`)
  return html`<div class="actions">${job.state !== "executing" && job.state !== "available" ? button("retry", "Retry") : ""} ${
    ["available", "scheduled", "executing", "retryable", "suspended"].includes(job.state) ? button("cancel", "Cancel") : ""
  } ${job.state !== "executing" ? button("delete", "Delete") : ""}</div>`
}

export const jobPage = (context: PageContext, job: Job, result: Option.Option<unknown>, version: string): Html =>
  page(
    context,
    { title: `Job ${job.id}`, current: "jobs", version },
    html`<p>${badge(job.state)} <strong>${job.worker}</strong> in <a href="${context.base}/jobs?${
      new URLSearchParams({ queue: job.queue })
    }">${job.queue}</a></p>
${actions(context, job)}
<dl class="fields">
<dt>attempt</dt><dd>${job.attempt} of ${job.maxAttempts}</dd>
<dt>priority</dt><dd>${job.priority}</dd>
<dt>tags</dt><dd>${job.tags.length === 0 ? html`<span class="muted">none</span>` : job.tags.map((tag) => html`<span class="tag">${tag}</span> `)}</dd>
<dt>inserted</dt><dd>${date(job.insertedAt)}</dd>
<dt>scheduled</dt><dd>${date(job.scheduledAt)}</dd>
<dt>attempted</dt><dd>${date(job.attemptedAt)}</dd>
<dt>attempted by</dt><dd>${job.attemptedBy?.join(" / ") ?? "-"}</dd>
</dl>
<h2>Args</h2>
<pre class="json" id="job-args">${prettyJson(job.args)}</pre>
<h2>Meta</h2>
<pre class="json">${prettyJson(job.meta)}</pre>
${Option.match(result, { onNone: () => "", onSome: (value) => html`<h2>Result</h2>
<pre class="json" id="job-result">${prettyJson(value)}</pre>` })}
<h2>Attempts that failed</h2>
${
      job.errors.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<ol class="errors">${
          job.errors.map((entry) =>
            html`<li><p><strong>attempt ${entry.attempt}</strong> · ${entry.kind} · ${entry.at}</p><p class="message">${entry.message}</p>${
              entry.cause === undefined ? "" : html`<details><summary>cause</summary><pre>${entry.cause}</pre></details>`
            }</li>`
          )
        }</ol>`
    }
<h2>Timeline</h2>
<ol class="timeline">${timeline(job).map((moment) => html`<li>${date(moment.at)} <strong>${moment.what}</strong> ${moment.detail}</li>`)}</ol>`
  )
