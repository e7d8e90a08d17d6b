/**
 * The dashboard's only script and style sheet, served from its own path so
 * the Content-Security-Policy can forbid inline code. The script listens to
 * the server-sent events and updates counts, producers and charts in place,
 * and reloads a job list's rows, with its page links, when the counts
 * changed. It never inserts job data as markup: text goes through
 * `textContent`, rows come as HTML the server escaped.
 */

export const script = `"use strict";
(() => {
  const body = document.body;
  const base = body.dataset.base || "";
  let version = body.dataset.version || "";
  const live = document.getElementById("live");
  const height = 40;
  const step = 5;
  const smooth = (values) => {
    const out = [];
    for (let i = 0; i < values.length; i += step) {
      out.push(values.slice(i, i + step).reduce((sum, value) => sum + value, 0) / step);
    }
    return out;
  };
  const points = (values, max) =>
    values.map((value, i) => i + "," + (height - (value / max) * (height - 2)).toFixed(1)).join(" ");
  const rate = (values) => (values.slice(-60).reduce((sum, value) => sum + value, 0) / 60).toFixed(1);
  const setText = (element, text) => {
    if (element && element.textContent !== text) {
      element.textContent = text;
      element.classList.add("changed");
      setTimeout(() => element.classList.remove("changed"), 1200);
    }
  };
  // One reload at a time; a change seen during one reloads once more after it.
  let refreshing = false;
  let again = false;
  const refreshRows = async () => {
    if (!document.getElementById("job-rows")) return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(location.href, { headers: { "x-dashboard-fragment": "rows" }, credentials: "same-origin" });
      if (!response.ok) return;
      const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
      // The rows and the page links together: the next page starts after the last row shown.
      for (const id of ["job-rows", "job-pages"]) {
        const fresh = parsed.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) current.replaceWith(document.importNode(fresh, true));
      }
    } finally {
      refreshing = false;
      if (again) { again = false; refreshRows(); }
    }
  };
  const update = (snapshot) => {
    const counts = new Map(snapshot.counts.map((entry) => [entry.queue, entry.states]));
    const producersOf = new Map(snapshot.producers);
    const throughputOf = new Map(snapshot.throughput);
    for (const cell of document.querySelectorAll("[data-queue][data-state]")) {
      const states = counts.get(cell.dataset.queue);
      setText(cell, String((states && states[cell.dataset.state]) || 0));
    }
    for (const row of document.querySelectorAll("tr[data-queue-row]")) {
      const producers = producersOf.get(row.dataset.queueRow);
      if (!producers) continue;
      for (const field of ["nodes", "limit", "running", "paused"]) {
        setText(row.querySelector('[data-field="' + field + '"]'), String(producers[field]));
      }
    }
    for (const figure of document.querySelectorAll("figure.throughput")) {
      const series = throughputOf.get(figure.dataset.queue);
      if (!series) continue;
      const completed = smooth(series.completed);
      const failed = smooth(series.failed);
      const max = Math.max(1, ...completed, ...failed);
      figure.querySelector("polyline.completed").setAttribute("points", points(completed, max));
      figure.querySelector("polyline.failed").setAttribute("points", points(failed, max));
      figure.querySelector(".completed-rate").textContent = rate(series.completed);
      figure.querySelector(".failed-rate").textContent = rate(series.failed);
      figure.querySelector(".peak").textContent = max.toFixed(1);
    }
    if (snapshot.version !== version) {
      version = snapshot.version;
      body.dataset.version = version;
      refreshRows();
    }
  };
  if (window.EventSource) {
    const events = new EventSource(base + "/events");
    events.addEventListener("open", () => { live.textContent = "● live"; live.classList.add("on"); });
    events.addEventListener("error", () => { live.textContent = "○ reconnecting"; live.classList.remove("on"); });
    events.addEventListener("snapshot", (event) => update(JSON.parse(event.data)));
  }
})();
`

export const styles = `:root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --accent: #4f46e5; --ok: #15803d; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: #f8fafc; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #111827; color: #fff; }
header nav a { color: #cbd5e1; margin-right: 1rem; text-decoration: none; }
header nav a[aria-current="page"] { color: #fff; font-weight: 600; }
.live { margin-left: auto; color: #9ca3af; font-size: 12px; }
.live.on { color: #86efac; }
.readonly { background: #f59e0b; color: #111; padding: 0 .4rem; border-radius: 3px; font-size: 12px; }
main { padding: 1rem 1.2rem; }
h1 { font-size: 20px; margin: .2rem 0 1rem; }
h2 { font-size: 16px; margin: 1.4rem 0 .5rem; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left; vertical-align: middle; }
th { font-weight: 600; font-size: 12px; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.hidden-char { color: var(--muted); border: 1px dotted currentColor; font-size: 0.8em; padding: 0 0.15em; }
.note { color: var(--muted); font-size: 12px; }
.changed { background: #fef9c3; transition: background .3s; }
.state { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-size: 12px; background: #e5e7eb; }
.state-completed { background: #dcfce7; } .state-discarded { background: #fee2e2; } .state-retryable { background: #ffedd5; }
.state-executing { background: #dbeafe; } .state-cancelled { background: #f3f4f6; } .state-available { background: #e0e7ff; }
.tag { display: inline-block; background: #eef2ff; border-radius: 3px; padding: 0 .3rem; font-size: 12px; }
.tag.late { background: #fde2e2; color: #8a1c1c; }
code.args { font-size: 12px; word-break: break-all; }
pre { background: #0f172a; color: #e2e8f0; padding: .7rem; border-radius: 4px; overflow: auto; max-height: 24rem; }
.throughput { margin: 0; width: 240px; }
.chart { width: 240px; height: 40px; background: #f1f5f9; display: block; }
.chart polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart polyline.completed { stroke: var(--ok); } .chart polyline.failed { stroke: var(--bad); }
figcaption { font-size: 11px; color: var(--muted); }
form.inline { display: inline-block; margin: 0 .2rem 0 0; }
form.inline input[type="number"] { width: 5rem; }
.filters { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; margin-bottom: .8rem; }
.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
.actions { margin: .5rem 0; }
button { font: inherit; padding: .2rem .6rem; border: 1px solid #c7d2fe; background: #eef2ff; border-radius: 4px; cursor: pointer; }
button.danger { background: var(--bad); color: #fff; border-color: var(--bad); }
.question, .result { font-size: 16px; }
.error { color: var(--bad); }
.pages { margin-top: .8rem; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.fields dt { color: var(--muted); }
ol.errors li, ol.timeline li { margin-bottom: .4rem; }
`
