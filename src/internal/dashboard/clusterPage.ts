/**
 * Nodes and their producers, the leader, and the crontab with each entry's
 * next run.
 */
import { type Html, html } from "./html.ts"
import { date, page, type PageContext } from "./layout.ts"
import type { Snapshot } from "./snapshot.ts"

const seconds = (millis: number): string => `${(millis / 1000).toFixed(1)} s ago`

export const clusterPage = (context: PageContext, snapshot: Snapshot): Html => {
  const { cluster } = snapshot
  return page(
    context,
    { title: "Nodes & cron", current: "cluster", version: snapshot.version },
    html`<p>Leader: ${
      cluster.leader === undefined
        ? html`<span class="muted">none</span>`
        : html`<strong id="leader">${cluster.leader.node}</strong> since ${date(cluster.leader.since)}, lease until ${
          date(cluster.leader.expiresAt)
        }`
    }</p>
<h2>Nodes</h2>
<table class="nodes">
<thead><tr><th>node</th><th>queue</th><th class="num">limit</th><th class="num">running</th><th>paused</th><th>started</th><th>last heartbeat</th></tr></thead>
<tbody>${
      cluster.nodes.length === 0
        ? html`<tr><td colspan="7" class="muted">No node runs a queue.</td></tr>`
        : cluster.nodes.flatMap((node) =>
          node.producers.map((producer) =>
            html`<tr><td>${producer.node}${producer.leader ? html` <span class="tag">leader</span>` : ""}</td><td>${producer.queue}</td><td class="num">${producer.limit}</td><td class="num">${producer.running}</td><td>${
              producer.paused ? "yes" : "no"
            }</td><td>${date(producer.startedAt)}</td><td>${seconds(producer.silentForMillis)}${
              producer.late
                ? html` <span class="tag late" title="no heartbeat for more than twice the node's interval: crashed, stalled or cut off; its jobs are rescued rescueAfter after its last heartbeat">late</span>`
                : ""
            }</td></tr>`
          )
        )
    }</tbody>
</table>
<h2>Cron</h2>
<p>Slots inserted by: ${
      cluster.cronLeader === undefined
        ? html`<span class="muted">no node (none holds the cron lease)</span>`
        : html`<strong id="cron-leader">${cluster.cronLeader.node}</strong>`
    }</p>
<table class="crons">
<thead><tr><th>name</th><th>expression</th><th>time zone</th><th>worker</th><th>queue</th><th>next run</th><th>nodes</th></tr></thead>
<tbody>${
      cluster.crons.length === 0
        ? html`<tr><td colspan="7" class="muted">No cron entries.</td></tr>`
        : cluster.crons.map((cron) =>
          html`<tr><td>${cron.name}</td><td><code>${cron.expression}</code></td><td>${cron.timezone ?? "UTC"}</td><td>${cron.worker}</td><td>${cron.queue}</td><td>${
            cron.error === undefined ? date(cron.nextRun) : html`<span class="error">${cron.error}</span>`
          }</td><td>${cron.nodes.join(", ")}</td></tr>`
        )
    }</tbody>
</table>`
  )
}
