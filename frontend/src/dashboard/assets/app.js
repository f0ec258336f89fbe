// The jetwork dashboard: polls /api/overview (the server's last sample of the leader's
// status) and renders it; the job browser's pages read /api/jobs, /api/job and
// /api/schedules when opened (and on "Refresh"), not on every tick: each of those costs the
// master a request. Routes: #/ (overview), #/jobs?queue=&state=&id=&page=, #/queue/<name>
// (same parameters), #/job/<id>, #/schedules. Plain DOM, no framework, no build step.
// Every value from the server goes in as text (textContent), never as HTML: job ids,
// payloads, results and failure reasons come from whoever submits work.
"use strict";

const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16",
                "#4a5568", "#9b2c2c", "#276749"];
const STATES = ["ready", "waiting", "running", "completed", "failed", "cancelled"];
const FINAL = ["completed", "failed", "cancelled", "rejected"];
let timer = null;
let lastOverview = null;
// The route last rendered in full, and whether that job page can still change.
let rendered = null;
let jobSettled = false;
// When an action was last taken: its effect may reach the master's state a moment after the
// page's first look, so a settled job's page is read again for a while after one.
let actedAt = 0;
const ACTION_SETTLES_MS = 15000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  // Nested lists of children at any depth (a row's cells built by map inside map).
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function ago(ms) {
  if (ms < 1000) return ms + " ms ago";
  return (ms / 1000).toFixed(1) + " s ago";
}

function iso(ms) {
  return ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

function jobLink(id) {
  return el("a", { href: "#/job/" + encodeURIComponent(id), class: "job-link" }, id);
}

function queueLink(name) {
  return el("a", { href: "#/queue/" + encodeURIComponent(name), class: "queue-link" }, name);
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({ error: "unreadable reply" }));
  return { ok: response.ok, status: response.status, body };
}

function header(o) {
  const leader = document.getElementById("leader");
  if (o.nats_lost_ms) {
    leader.className = "leader bad";
    leader.textContent = "dashboard lost NATS";
  } else if (o.no_leader) {
    leader.className = "leader bad";
    leader.textContent = "no leader";
  } else if (o.status && !o.stale) {
    leader.className = "leader ok";
    leader.textContent = "leader " + o.status.leader + " · epoch " + o.status.epoch;
  } else {
    leader.className = "leader bad";
    leader.textContent = o.error ? "status unavailable" : "waiting for the first sample";
  }
  document.getElementById("updated").textContent =
    o.updated_ms ? "updated " + ago(Math.max(0, o.now_ms - o.updated_ms)) : "";
  document.getElementById("mode").textContent = o.actions ? "actions enabled" : "read-only";
}

// Why the figures shown are not current, if they are not.
function staleNotice(o) {
  if (o.nats_lost_ms) {
    return el("section", { id: "nats-lost", class: "alert" }, el("h2", {}, "Dashboard lost NATS"),
      el("pre", {}, "The dashboard's own connection to NATS is down since " + iso(o.nats_lost_ms) +
        " (it reconnects by itself)." +
        (o.status ? " The figures below are the last ones received, at " + iso(o.status_ms) + "." : "")));
  }
  if (o.no_leader) {
    return el("section", { id: "no-leader", class: "alert" }, el("h2", {}, "No leader"),
      el("pre", {}, o.no_leader));
  }
  if (o.error) {
    return el("section", { class: "alert" }, el("h2", {}, "Status unavailable"), el("pre", {}, o.error));
  }
  return null;
}

// A POST to /api/action; resolves to the reply's message or error.
async function act(query) {
  const response = await fetch("/api/action?" + query,
    { method: "POST", headers: { "X-Jetwork-Action": "1" } });
  const reply = await response.json().catch(() => ({}));
  return response.ok ? (reply.message || "done") : (reply.error || String(response.status));
}

// Asks before an action (in the page, outside what the refresh re-renders): `question`,
// then the action's outcome in #confirm-result.
function confirmAction(question, label, query) {
  const box = document.getElementById("confirm");
  const yes = el("button", { type: "button", class: "confirm danger" }, label);
  const no = el("button", { type: "button", class: "dismiss" }, "Keep as it is");
  const out = el("span", { id: "confirm-result", class: "muted" });
  yes.onclick = async () => {
    yes.disabled = true; no.disabled = true;
    out.textContent = "…";
    out.textContent = await act(query);
    yes.remove();
    no.textContent = "Close"; no.disabled = false;
    actedAt = Date.now();
    rendered = null;
    setTimeout(refresh, 300);
  };
  no.onclick = () => { box.hidden = true; box.replaceChildren(); };
  box.replaceChildren(el("span", { class: "question" }, question), yes, no, out);
  box.hidden = false;
}

function actionButton(cls, text, question, label, query, danger) {
  const button = el("button", { type: "button", class: cls + (danger ? " danger" : "") }, text);
  button.onclick = () => confirmAction(question, label, query);
  return button;
}

function pauseButton(q) {
  const kind = q.paused ? "resume" : "pause";
  const question = (q.paused ? "Resume handing out " : "Pause handing out ") + "the work of queue " + q.queue + "?";
  return actionButton("queue-" + kind, q.paused ? "Resume" : "Pause", question,
    q.paused ? "Resume" : "Pause", "kind=" + kind + "&queue=" + encodeURIComponent(q.queue));
}

function queuesSection(o) {
  const status = o.status, actions = o.actions;
  const rows = status.queues.map(q => el("tr", { "data-queue": q.queue },
    el("td", { class: "queue" }, queueLink(q.queue), q.paused ? el("span", { class: "paused" }, " paused") : null),
    el("td", { class: "num pending" }, q.pending),
    el("td", { class: "num waiting" }, q.waiting || 0),
    el("td", { class: "num in-progress" }, q.in_progress),
    el("td", { class: "num completed" }, q.completed),
    el("td", { class: "num failed" }, q.failed),
    el("td", { class: "num cancelled" }, q.cancelled || 0),
    el("td", { class: "num rejected" }, q.rejected),
    actions ? el("td", {}, pauseButton(q)) : null));
  const more = status.queues_total > status.queues.length
    ? el("p", { class: "muted" }, (status.queues_total - status.queues.length) + " more queues not listed")
    : null;
  return el("section", { id: "queues", class: o.stale ? "stale" : null }, el("h2", {}, "Queues"),
    el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "queue"), el("th", { class: "num" }, "pending"),
      el("th", { class: "num", title: "failed, waiting out a back-off" }, "waiting"),
      el("th", { class: "num" }, "in flight"), el("th", { class: "num" }, "completed"),
      el("th", { class: "num" }, "failed"), el("th", { class: "num" }, "cancelled"),
      el("th", { class: "num" }, "rejected"), actions ? el("th", {}, "") : null)),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no queues yet")))),
    more);
}

// One line chart of `field` per queue over the samples' times.
// The charts' time range: "recent" (the last 5 minutes, every sample) or "long" (the
// dashboard's whole history, 10 s buckets for an hour); remembered across reloads.
let chartRange = (() => { try { return localStorage.getItem("jetwork.chartRange") || "recent"; } catch (e) { return "recent"; } })();

const CHART = { w: 440, h: 190, left: 46, right: 12, top: 10, bottom: 24 };
const TICK_STEPS = [60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3];

// A round step near `raw`: 1, 2 or 5 times a power of ten.
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// A span in words: "5 min", "1 h", "1 h 30 min".
function spanText(ms) {
  const min = Math.round(ms / 60000);
  if (min < 60) return min + " min";
  return Math.floor(min / 60) + " h" + (min % 60 ? " " + (min % 60) + " min" : "");
}

// Clock time of `ms` in UTC, like every time on these pages: "14:20".
function clockText(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}

function svgText(attrs, text) {
  const node = svgEl("text", attrs);
  node.textContent = text;
  return node;
}

// One chart of `field` of every queue in `series`, over `from`..`to` (ms): a time axis with
// clock-time ticks and a value axis with round steps. A null point is a gap (no figure, or
// no sample then): the line breaks there.
function chart(title, series, field, from, to) {
  const { w, h, left, right, top, bottom } = CHART;
  const plotW = w - left - right, plotH = h - top - bottom;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title });
  const names = Object.keys(series.queues);
  const shown = series.t.map(t => t >= from && t <= to);
  let max = 0;
  for (const name of names) series.queues[name][field].forEach((v, j) => { if (shown[j] && v !== null) max = Math.max(max, v); });
  const step = max > 0 ? niceStep(max / 4) : 1;
  const yMax = Math.max(step, Math.ceil(max / step) * step);
  const x = ms => left + (ms - from) / (to - from) * plotW;
  const y = v => top + plotH - (v / yMax) * plotH;
  const decimals = step < 1 ? Math.min(3, Math.ceil(-Math.log10(step))) : 0;
  const yAxis = svgEl("g", { class: "y-axis" });
  for (let v = 0; v <= yMax + step / 1e6; v += step) {
    yAxis.append(svgEl("line", { x1: left, y1: y(v), x2: w - right, y2: y(v), stroke: v ? "#edf0f5" : "#ccd3dd" }),
      svgText({ x: left - 4, y: y(v) + 3, "font-size": 10, fill: "#6b7585", "text-anchor": "end", class: "tick-y" },
        v.toFixed(decimals)));
  }
  const xAxis = svgEl("g", { class: "x-axis" });
  const tick = TICK_STEPS.find(s => s >= (to - from) / 7) || TICK_STEPS[TICK_STEPS.length - 1];
  for (let t = Math.ceil(from / tick) * tick; t <= to; t += tick) {
    xAxis.append(svgEl("line", { x1: x(t), y1: top, x2: x(t), y2: top + plotH + 3, stroke: "#edf0f5" }),
      svgText({ x: x(t), y: h - 8, "font-size": 10, fill: "#6b7585", "text-anchor": "middle", class: "tick-x",
                "data-ms": t }, clockText(t)));
  }
  xAxis.append(svgText({ x: w - right, y: h - 8, "font-size": 9, fill: "#9aa3b1", "text-anchor": "end", class: "zone" }, "UTC"));
  svg.append(yAxis, xAxis);
  names.forEach((name, i) => {
    const values = series.queues[name][field];
    let d = "", points = 0, first = null, drawing = false;
    values.forEach((v, j) => {
      if (!shown[j] || v === null) { drawing = false; return; }
      d += (drawing ? " L" : " M") + x(series.t[j]).toFixed(1) + " " + y(v).toFixed(1);
      drawing = true;
      points += 1;
      if (first === null) first = series.t[j];
    });
    if (d) svg.append(svgEl("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2,
                                      "data-queue": name, "data-points": points, "data-first-ms": first }));
  });
  const legend = el("div", { class: "legend" }, names.map((name, i) =>
    el("span", {}, el("i", { style: "background:" + COLORS[i % COLORS.length] }), name)));
  return el("div", { class: "chart", id: "chart-" + field }, el("h2", {}, title), svg, legend);
}

function chartsSection(o) {
  const history = o.history;
  const recent = chartRange === "recent";
  const span = recent ? history.recent_ms : history.span_ms;
  const series = recent ? history.recent : history.long;
  const to = o.now_ms, from = to - span;
  const choose = (range, label) => {
    const button = el("button", { type: "button", id: "range-" + range,
                                  class: "range" + (range === chartRange ? " active" : "") }, label);
    button.onclick = () => {
      chartRange = range;
      try { localStorage.setItem("jetwork.chartRange", range); } catch (e) { /* private mode */ }
      if (lastOverview) renderOverview(lastOverview);
    };
    return button;
  };
  const about = recent ? "every sample of the last " + spanText(span)
    : "the last " + spanText(span) + ", " + Math.round(history.bucket_ms / 1000) + " s a point";
  return el("section", { id: "charts", class: o.stale ? "stale" : null, "data-range": chartRange },
    el("p", { class: "ranges" }, choose("recent", spanText(history.recent_ms)), choose("long", spanText(history.span_ms)),
      el("span", { class: "muted" }, about + " (kept by the dashboard; times in UTC)")),
    el("div", { class: "charts" },
      chart("Throughput (jobs finished/s)", series, "rate", from, to),
      chart("Backlog (pending jobs)", series, "pending", from, to),
      chart("In flight (jobs)", series, "in_flight", from, to)));
}

function workersSection(o) {
  const status = o.status;
  const rows = status.workers.map(wk => el("tr", { "data-worker": wk.worker_id },
    el("td", {}, wk.worker_id),
    el("td", {}, wk.queues.join(", ")),
    el("td", { class: "num" }, wk.capacity),
    el("td", {}, ago(wk.last_seen_ago_ms)),
    el("td", { class: "running" }, wk.running.length
      ? wk.running.map((r, i) => [i ? ", " : "", jobLink(r.work_id), " @" + r.attempt])
      : el("span", { class: "muted" }, "idle"),
      wk.running_total > wk.running.length ? " and " + (wk.running_total - wk.running.length) + " more" : null)));
  return el("section", { id: "workers", class: o.stale ? "stale" : null },
    el("h2", {}, "Workers (" + status.workers_total + ")"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", {}, "queues"),
      el("th", { class: "num" }, "slots"), el("th", {}, "last seen"), el("th", {}, "running"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no workers registered")))));
}

function failuresSection(failures, note) {
  const rows = failures.map(f => el("tr", { "data-work-id": f.work_id },
    el("td", {}, jobLink(f.work_id)), el("td", {}, queueLink(f.queue)), el("td", { class: "num" }, f.attempt),
    el("td", { class: "reason" }, f.reason)));
  return el("section", { id: "failures" }, el("h2", {}, "Recent failures (since the dashboard started)"),
    note ? el("p", { class: "alert", id: "failures-note" }, "Failures are not being read right now: " + note) : null,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", {}, "queue"),
      el("th", { class: "num" }, "attempt"), el("th", {}, "reason"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "none")))));
}

function renderOverview(o) {
  const parts = [staleNotice(o)];
  if (o.status) parts.push(queuesSection(o), chartsSection(o), workersSection(o));
  else parts.push(chartsSection(o));
  parts.push(failuresSection(o.failures, o.failures_note));
  document.getElementById("app").replaceChildren(...parts.filter(p => p));
}

// A job's bytes as /api/job previews them: pretty JSON, text, or a hex dump.
function bytesSection(id, title, preview) {
  const about = preview.bytes + " bytes, " + preview.kind +
    (preview.truncated ? ", the first 4096 shown" : "");
  return el("section", { id: id + "-section" }, el("h2", {}, title + " (" + about + ")"),
    el("pre", { class: "result kind-" + preview.kind, id, "data-kind": preview.kind }, preview.text));
}

async function renderJob(id) {
  const { status, body } = await getJson("/api/job?id=" + encodeURIComponent(id));
  const state = body.status || "unknown";
  const rows = [];
  const add = (label, value, attrs) => { if (value !== null && value !== undefined && value !== "")
    rows.push(el("dt", {}, label), el("dd", attrs || {}, value)); };
  add("work id", body.work_id || id, { id: "job-id" });
  add("status", state, { id: "job-status", class: "status-" + state });
  if (body.queue) add("queue", queueLink(body.queue), { id: "job-queue" });
  add("attempts", body.attempt, { id: "job-attempt" });
  add(state === "failed" || state === "cancelled" ? "reason" : "last error", body.reason,
      { id: "job-reason", class: "reason" });
  if (body.ready_at_ms) add("next attempt", iso(body.ready_at_ms), { id: "job-ready-at" });
  if (body.finished_ms) add("finished", iso(body.finished_ms), { id: "job-finished" });
  if (body.running) add("running on", body.running.worker + " (attempt " + body.running.attempt + ")", { id: "job-running" });
  add("submit sequence", body.submit_seq);
  if (body.error && status !== 200) add("note", body.error, { class: "muted" });
  if (body.note) add("note", body.note, { class: "muted" });
  const parts = [el("p", {}, el("a", { href: "#/" }, "← overview"), " · ", el("a", { href: "#/jobs" }, "all jobs"),
                   body.queue ? [" · ", el("a", { href: "#/queue/" + encodeURIComponent(body.queue) }, "queue " + body.queue)] : null),
                 el("section", { id: "job" },
                   el("h2", {}, "Job ", el("span", { class: "work-id", id: "job-title-id" }, id)),
                   el("dl", {}, rows))];
  if (lastOverview && lastOverview.actions && status === 200) {
    // Only what the master would accept in this state.
    const enc = encodeURIComponent(id);
    let button = null;
    if (state === "failed" || state === "cancelled") {
      button = actionButton("", "Retry", "Run job " + id + " again?", "Retry", "kind=retry&id=" + enc);
      button.id = "retry";
    } else if (state === "ready" || state === "waiting" || state === "running") {
      button = actionButton("", "Cancel", "Cancel job " + id + "?", "Cancel the job", "kind=cancel&id=" + enc, true);
      button.id = "cancel";
    }
    if (button) parts.push(el("section", { id: "actions" }, el("h2", {}, "Actions"), button));
  }
  if (body.history && body.history.length) {
    const took = a => a.ended_ms ? ((a.ended_ms - a.started_ms) / 1000).toFixed(3) + " s" : "";
    parts.push(el("section", { id: "attempts" }, el("h2", {}, "Attempts"), el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "worker"), el("th", {}, "started"),
        el("th", { class: "num" }, "run time"), el("th", {}, "outcome"), el("th", {}, "reason"))),
      el("tbody", {}, body.history.map(a => el("tr", { "data-attempt": a.attempt },
        el("td", {}, a.attempt), el("td", {}, a.worker),
        el("td", {}, iso(a.started_ms)),
        el("td", { class: "num" }, took(a)),
        el("td", { class: "outcome status-" + a.outcome }, a.outcome),
        el("td", { class: "reason" }, a.reason || "")))))));
  }
  if (body.result && state === "completed") parts.push(bytesSection("job-result", "Result", body.result));
  if (body.payload) parts.push(bytesSection("job-payload", "Payload", body.payload));
  else if (body.payload_note) parts.push(el("section", { id: "job-payload-section" }, el("h2", {}, "Payload"),
    el("p", { class: "muted", id: "job-payload-note" }, body.payload_note)));
  document.getElementById("app").replaceChildren(...parts);
  jobSettled = FINAL.includes(state);
}

// The hash of a job list with `params` changed by `changes`.
function listHref(base, params, changes) {
  const next = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) { if (v === "" || v === null) next.delete(k); else next.set(k, v); }
  const qs = next.toString();
  return base + (qs ? "?" + qs : "");
}

// Jobs by state, searchable by id, a page at a time; `queue` fixed on a queue's page.
async function jobsSection(base, params, queue) {
  const state = params.get("state") || "";
  const search = params.get("id") || "";
  const page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  const query = new URLSearchParams({ state, id: search, page: String(page) });
  const shownQueue = queue || params.get("queue") || "";
  if (shownQueue) query.set("queue", shownQueue);
  const { ok, body } = await getJson("/api/jobs?" + query);
  const tabs = el("nav", { class: "tabs", id: "state-tabs" }, ["", ...STATES].map(s =>
    el("a", { href: listHref(base, params, { state: s, page: "" }), "data-state": s || "all",
              class: "tab" + (s === state ? " active" : "") }, s || "all")));
  const input = el("input", { type: "search", id: "job-search", placeholder: "job id contains…", value: search });
  const form = el("form", { id: "job-search-form", class: "search" }, input,
    el("button", { type: "submit" }, "Search"),
    el("button", { type: "button", id: "jobs-refresh" }, "Refresh"));
  form.onsubmit = e => { e.preventDefault(); location.hash = listHref(base, params, { id: input.value.trim(), page: "" }); };
  form.querySelector("#jobs-refresh").onclick = () => { rendered = null; refresh(); };
  let filter = null;
  if (!queue && lastOverview && lastOverview.status) {
    const select = el("select", { id: "queue-filter" }, el("option", { value: "" }, "all queues"),
      lastOverview.status.queues.map(q => el("option", { value: q.queue }, q.queue)));
    select.value = shownQueue;
    select.onchange = () => { location.hash = listHref(base, params, { queue: select.value, page: "" }); };
    filter = select;
  }
  const parts = [tabs, el("div", { class: "filters" }, filter, form)];
  if (!ok) {
    parts.push(el("p", { class: "alert", id: "jobs-error" }, body.error || "the list is unavailable"));
  } else {
    const rows = body.jobs.map(j => el("tr", { "data-work-id": j.work_id },
      el("td", {}, jobLink(j.work_id)), el("td", {}, queueLink(j.queue)),
      el("td", { class: "state status-" + j.state }, j.state), el("td", { class: "num" }, j.attempts),
      el("td", {}, j.finished_ms ? iso(j.finished_ms) : j.ready_at_ms ? "ready at " + iso(j.ready_at_ms) : ""),
      el("td", { class: "reason" }, j.reason || "")));
    parts.push(el("table", { id: "job-list" }, el("thead", {}, el("tr", {}, el("th", {}, "job"),
      el("th", {}, "queue"), el("th", {}, "state"), el("th", { class: "num" }, "attempts"),
      el("th", {}, "finished"), el("th", {}, "reason"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "muted", id: "no-jobs" },
        search ? "no job whose id contains “" + search + "”" : "no jobs")))));
    const pager = el("p", { class: "pager" },
      page > 0 ? el("a", { id: "page-prev", href: listHref(base, params, { page: page - 1 || "" }) }, "← newer") : null,
      el("span", { id: "page-number" }, "page " + (page + 1)),
      body.more ? el("a", { id: "page-next", href: listHref(base, params, { page: page + 1 }) }, "older →") : null,
      search ? el("a", { id: "search-open", href: "#/job/" + encodeURIComponent(search) }, "open job " + search) : null);
    parts.push(pager);
    parts.push(el("p", { class: "muted" }, "In flight first, then finished, newest first. Jobs still unread in their " +
      "queue's backlog are not listed (the counters include them)." +
      (body.truncated ? " Only the newest jobs were looked at: older ones may match too." : "")));
  }
  return el("section", { id: "jobs" }, el("h2", {}, queue ? "Jobs of " + queue : "Jobs"), parts);
}

async function renderJobs(params) {
  const section = await jobsSection("#/jobs", params, null);
  document.getElementById("app").replaceChildren(staleNotice(lastOverview) || "", section);
}

function queueSummary(name) {
  const o = lastOverview;
  const q = o && o.status ? o.status.queues.find(x => x.queue === name) : null;
  if (!q) return el("section", { id: "queue-summary" }, el("h2", {}, "Queue ", el("span", { class: "work-id" }, name)),
    el("p", { class: "muted" }, "not in the leader's last status report"));
  const counter = (label, key, value) => [el("dt", {}, label), el("dd", { id: "queue-" + key, class: "num" }, value)];
  const actions = o.actions ? el("p", { class: "queue-actions" }, pauseButton(q),
    actionButton("retry-failed", "Retry failed", "Run every failed job of queue " + name + " again (up to 100, newest first)?",
      "Retry failed jobs", "kind=retry-failed&queue=" + encodeURIComponent(name)),
    actionButton("purge", "Purge", "Cancel all pending work of queue " + name + " (running jobs finish)?",
      "Purge the queue", "kind=purge&queue=" + encodeURIComponent(name), true)) : null;
  return el("section", { id: "queue-summary", class: o.stale ? "stale" : null },
    el("h2", {}, "Queue ", el("span", { class: "work-id" }, name), q.paused ? el("span", { class: "paused" }, " paused") : null),
    el("dl", { class: "counters" }, counter("pending", "pending", q.pending), counter("waiting", "waiting", q.waiting || 0),
      counter("in flight", "in-progress", q.in_progress), counter("completed", "completed", q.completed),
      counter("failed", "failed", q.failed), counter("cancelled", "cancelled", q.cancelled || 0),
      counter("rejected", "rejected", q.rejected)),
    actions);
}

async function renderQueue(name, params) {
  const section = await jobsSection("#/queue/" + encodeURIComponent(name), params, name);
  document.getElementById("app").replaceChildren(el("p", {}, el("a", { href: "#/" }, "← overview")),
    staleNotice(lastOverview) || "", queueSummary(name), section);
}

async function renderSchedules() {
  const { ok, body } = await getJson("/api/schedules");
  let content;
  if (!ok) content = el("p", { class: "alert", id: "schedules-error" }, body.error || "unavailable");
  else content = el("table", { id: "schedule-list" }, el("thead", {}, el("tr", {}, el("th", {}, "name"),
      el("th", {}, "queue"), el("th", {}, "cadence"), el("th", {}, "next tick"), el("th", {}, "last tick"),
      el("th", { class: "num" }, "fired"), el("th", { class: "num" }, "missed"), el("th", { class: "num" }, "payload bytes"))),
    el("tbody", {}, body.schedules.length ? body.schedules.map(s => el("tr", { "data-schedule": s.name },
      el("td", {}, s.name), el("td", {}, queueLink(s.queue)),
      el("td", { class: "cadence" }, s.every ? "every " + s.every : "cron " + s.cron),
      el("td", { class: "next" }, iso(s.next_ms)), el("td", {}, iso(s.last_ms)),
      el("td", { class: "num fired" }, s.fired), el("td", { class: "num" }, s.missed),
      el("td", { class: "num" }, s.payload_bytes)))
      : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no schedules"))));
  const refreshButton = el("button", { type: "button", id: "schedules-refresh" }, "Refresh");
  refreshButton.onclick = () => { rendered = null; refresh(); };
  document.getElementById("app").replaceChildren(el("section", { id: "schedules" },
    el("h2", {}, "Schedules"), content, el("p", {}, refreshButton,
      el("span", { class: "muted" }, "Times in UTC. Add and remove them with jetwork-frontend schedule."))));
}

async function refresh() {
  clearTimeout(timer);
  let every = 2000;
  try {
    const o = await overview();
    every = Math.max(500, o.refresh_ms || 2000);
    const [path, qs] = location.hash.replace(/^#/, "").split("?");
    const params = new URLSearchParams(qs || "");
    const key = location.hash;
    const fresh = key !== rendered;
    let match;
    if ((match = path.match(/^\/job\/(.+)$/))) {
      const settling = Date.now() - actedAt < ACTION_SETTLES_MS;
      if (fresh || !jobSettled || settling) await renderJob(decodeURIComponent(match[1]));
    } else if ((match = path.match(/^\/queue\/(.+)$/))) {
      const name = decodeURIComponent(match[1]);
      if (fresh) await renderQueue(name, params);
      else document.getElementById("queue-summary").replaceWith(queueSummary(name));
    } else if (path === "/jobs") {
      if (fresh) await renderJobs(params);
    } else if (path === "/schedules") {
      if (fresh) await renderSchedules();
    } else {
      renderOverview(o);
    }
    rendered = key;
    document.body.dataset.ready = "1";
  } catch (e) {
    const leader = document.getElementById("leader");
    leader.className = "leader bad";
    leader.textContent = "dashboard unreachable: " + e.message;
  }
  timer = setTimeout(refresh, every);
}

async function overview() {
  const { ok, body } = await getJson("/api/overview");
  if (!ok) throw new Error(body.error || "overview failed");
  lastOverview = body;
  header(body);
  return body;
}

window.addEventListener("hashchange", () => {
  delete document.body.dataset.ready;
  const box = document.getElementById("confirm");
  box.hidden = true; box.replaceChildren();
  refresh();
});
refresh();
