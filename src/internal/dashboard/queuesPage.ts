/**
 * The queues page: per queue, the jobs in each state, the producers that run
 * it (limits, running jobs, paused), a throughput chart of the last five
 * minutes, and pause / resume / scale.
 */
import type { ProducerInfo } from "../../Cluster.ts"
import { type Html, html } from "./html.ts"
import { date, page, type PageContext, postForm, states } from "./layout.ts"
import { type Series, type Snapshot, windowSeconds } from "./snapshot.ts"
import { pausedSummary } from "../pausedSummary.ts"
import { queueSummaries } from "../queueSummaries.ts"

export const chartHeight = 40

/** Seconds per point of a chart: each point is the mean rate over that many seconds. */
export const chartStep = 5

/** Mean per second over each `chartStep` seconds (the same as dashboard.js). */
export const smooth = (values: ReadonlyArray<number>): ReadonlyArray<number> => {
  const out: Array<number> = []
  for (let i = 0; i < values.length; i += chartStep) {
    out.push(values.slice(i, i + chartStep).reduce((sum, value) => sum + value, 0) / chartStep)
  }
  return out
}

/** The polyline points of a series, scaled to the chart (the same formula as dashboard.js). */
export const points = (values: ReadonlyArray<number>, max: number): string =>
  values.map((value, i) => `${i},${(chartHeight - (value / max) * (chartHeight - 2)).toFixed(1)}`).join(" ")

const perSecond = (values: ReadonlyArray<number>, seconds: number): string =>
  (values.slice(-seconds).reduce((sum, value) => sum + value, 0) / seconds).toFixed(1)

export const chart = (queue: string, series: Series | undefined): Html => {
  const completed = series?.completed ?? []
  const failed = series?.failed ?? []
  const max = Math.max(1, ...smooth(completed), ...smooth(failed))
  return html`<figure class="throughput" data-queue="${queue}">
<svg class="chart" viewBox="0 0 ${windowSeconds / chartStep - 1} ${chartHeight}" preserveAspectRatio="none" role="img" aria-label="jobs per second, last 5 minutes">
<polyline class="completed" points="${points(smooth(completed), max)}"></polyline>
<polyline class="failed" points="${points(smooth(failed), max)}"></polyline>
</svg>
<figcaption><span class="completed-rate">${perSecond(completed, 60)}</span>/s done, <span class="failed-rate">${
    perSecond(failed, 60)
  }</span>/s failed (last minute; scale <span class="peak">${max.toFixed(1)}</span>/s)</figcaption>
</figure>`
}

const queueActions = (context: PageContext, queue: string, producers: ReadonlyArray<ProducerInfo>, kept: boolean): Html => {
  const path = `${context.base}/queues/${encodeURIComponent(queue)}`
  // A pause kept for nodes that start later can be cleared even where every node runs the queue.
  const anyPaused = kept || producers.some((producer) => producer.paused)
  const anyRunning = producers.some((producer) => !producer.paused)
  return html`<div class="actions">
${anyRunning ? postForm(context, `${path}/pause`, [], html`<button type="submit">Pause</button>`) : ""}
${anyPaused ? postForm(context, `${path}/resume`, [], html`<button type="submit">Resume</button>`) : ""}
${
    producers.length > 0
      ? postForm(
        context,
        `${path}/scale`,
        [],
        html`<input type="number" name="limit" min="1" max="10000" required aria-label="new limit for ${queue}" value="${
          producers[0]!.limit
        }"><button type="submit">Scale</button>`
      )
      : ""
  }
</div>`
}

export const queuesPage = (context: PageContext, snapshot: Snapshot): Html => {
  const rows = queueSummaries(snapshot.cluster, snapshot.counts.queues).map((summary) => {
    const { limit, producers, queue, running, states: counts } = summary
    const kept = summary.pausedSince !== undefined
    const jobsLink = (state: string) => `${context.base}/jobs?${new URLSearchParams({ queue, state })}`
    return html`<tr data-queue-row="${queue}">
<th scope="row"><a href="${context.base}/jobs?${new URLSearchParams({ queue })}">${queue}</a></th>
${
      states.map((state) =>
        html`<td class="num"><a href="${jobsLink(state)}" data-queue="${queue}" data-state="${state}">${counts?.[state] ?? 0}</a></td>`
      )
    }
<td class="num" data-field="nodes">${producers.length}</td>
<td class="num" data-field="limit">${limit || "-"}</td>
<td data-field="cluster-limits">${snapshot.limits.get(queue) ?? html`<span class="muted">none</span>`}</td>
<td class="num" data-field="running">${running}</td>
<td data-field="paused">${pausedSummary(producers, kept)}</td>
<td>${chart(queue, snapshot.throughput.get(queue))}</td>
<td>${queueActions(context, queue, producers, kept)}</td>
</tr>`
  })
  const estimated = snapshot.counts.estimated.length > 0
    ? html`<p class="note">Estimated from the planner's statistics: ${snapshot.counts.estimated.join(", ")}.</p>`
    : ""
  return page(
    context,
    { title: "Queues", current: "queues", version: snapshot.version },
    html`<p class="note">As of ${date(snapshot.now)}. Limits and paused state come from the nodes running each queue; "kept": paused for every node, so nodes that start later start it paused.</p>
<table class="queues">
<thead><tr><th>Queue</th>${states.map((state) => html`<th class="num">${state}</th>`)}<th class="num">nodes</th><th class="num">limit</th><th>cluster limits</th><th class="num">running</th><th>paused</th><th>throughput (5 min)</th><th>actions</th></tr></thead>
<tbody>${rows.length === 0 ? html`<tr><td colspan="16" class="muted">No queues yet.</td></tr>` : rows}</tbody>
</table>
${estimated}`
  )
}
