// The jetwork dashboard: polls /api/overview (the server's last sample of the leader's
// status) and renders it; #/job/<id> shows one job from /api/job. Plain DOM, no framework,
// no build step. Every value from the server goes in as text (textContent), never as HTML:
// job ids and failure reasons come from whoever submits work.
"use strict";

const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16",
                "#4a5568", "#9b2c2c", "#276749"];
let timer = null;
let lastOverview = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
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

function jobLink(id) {
  return el("a", { href: "#/job/" + encodeURIComponent(id), class: "job-link" }, id);
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({ error: "unreadable reply" }));
  return { ok: response.ok, status: response.status, body };
}

function header(o) {
  const leader = document.getElementById("leader");
  if (o.status) {
    leader.className = "leader ok";
    leader.textContent = "leader " + o.status.leader + " · epoch " + o.status.epoch;
  } else if (o.no_leader) {
    leader.className = "leader bad";
    leader.textContent = "no leader";
  } else {
    leader.className = "leader bad";
    leader.textContent = o.error ? "status unavailable" : "waiting for the first sample";
  }
  document.getElementById("updated").textContent =
    o.updated_ms ? "updated " + ago(Math.max(0, o.now_ms - o.updated_ms)) : "";
  document.getElementById("mode").textContent = o.actions ? "actions enabled" : "read-only";
}

// A POST to /api/action; the reply's message or error goes in `out`.
async function act(query, out) {
  const response = await fetch("/api/action?" + query,
    { method: "POST", headers: { "X-Jetwork-Action": "1" } });
  const reply = await response.json().catch(() => ({}));
  out.textContent = response.ok ? (reply.message || "done") : (reply.error || String(response.status));
  setTimeout(refresh, 300);
}

function queuesSection(status, actions) {
  const rows = status.queues.map(q => el("tr", { "data-queue": q.queue },
    el("td", { class: "queue" }, q.queue, q.paused ? el("span", { class: "paused" }, " paused") : null),
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
  return el("section", { id: "queues" }, el("h2", {}, "Queues"),
    el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "queue"), el("th", { class: "num" }, "pending"),
      el("th", { class: "num", title: "failed, waiting out a back-off" }, "waiting"),
      el("th", { class: "num" }, "in flight"), el("th", { class: "num" }, "completed"),
      el("th", { class: "num" }, "failed"), el("th", { class: "num" }, "cancelled"),
      el("th", { class: "num" }, "rejected"), actions ? el("th", {}, "") : null)),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no queues yet")))),
    more);
}

function pauseButton(q) {
  const out = el("span", { class: "muted action-result" });
  const kind = q.paused ? "resume" : "pause";
  const button = el("button", { type: "button", class: "queue-" + kind }, q.paused ? "Resume" : "Pause");
  button.onclick = () => act("kind=" + kind + "&queue=" + encodeURIComponent(q.queue), out);
  return [button, out];
}

// One line chart of `field` per queue over the samples' times.
function chart(title, history, field, unit) {
  const w = 400, h = 160, pad = 28;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title });
  const t = history.t;
  const names = Object.keys(history.queues);
  let max = 0;
  for (const name of names) for (const v of history.queues[name][field]) if (v !== null) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  const t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
  const x = ms => pad + (t1 > t0 ? (ms - t0) / (t1 - t0) : 1) * (w - 2 * pad);
  const y = v => h - pad + 8 - (v / max) * (h - pad - 8);
  svg.append(svgEl("line", { x1: pad, y1: h - pad + 8, x2: w - pad, y2: h - pad + 8, stroke: "#ccd3dd" }));
  const top = svgEl("text", { x: 2, y: 12, "font-size": 10, fill: "#6b7585" });
  top.textContent = (max / 1.1).toFixed(max < 11 ? 1 : 0) + " " + unit;
  svg.append(top);
  const span = svgEl("text", { x: w - pad, y: h - 4, "font-size": 10, fill: "#6b7585", "text-anchor": "end" });
  span.textContent = t.length > 1 ? "last " + Math.round((t1 - t0) / 1000) + " s" : "";
  svg.append(span);
  names.forEach((name, i) => {
    const values = history.queues[name][field];
    let d = "";
    values.forEach((v, j) => {
      if (v === null) return;
      d += (d && values[j - 1] !== null ? " L" : " M") + x(t[j]).toFixed(1) + " " + y(v).toFixed(1);
    });
    if (d) svg.append(svgEl("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2,
                                      "data-queue": name }));
  });
  const legend = el("div", { class: "legend" }, names.map((name, i) =>
    el("span", {}, el("i", { style: "background:" + COLORS[i % COLORS.length] }), name)));
  return el("div", { class: "chart", id: "chart-" + field }, el("h2", {}, title), svg, legend);
}

function chartsSection(history) {
  return el("section", { id: "charts" }, el("div", { class: "charts" },
    chart("Throughput (jobs finished/s)", history, "rate", "jobs/s"),
    chart("Backlog (pending)", history, "pending", "jobs"),
    chart("In flight", history, "in_flight", "jobs")));
}

function workersSection(status) {
  const rows = status.workers.map(wk => el("tr", { "data-worker": wk.worker_id },
    el("td", {}, wk.worker_id),
    el("td", {}, wk.queues.join(", ")),
    el("td", { class: "num" }, wk.capacity),
    el("td", {}, ago(wk.last_seen_ago_ms)),
    el("td", {}, wk.running.length
      ? wk.running.map((r, i) => [i ? ", " : "", jobLink(r.work_id), " @" + r.attempt])
      : el("span", { class: "muted" }, "idle"),
      wk.running_total > wk.running.length ? " and " + (wk.running_total - wk.running.length) + " more" : null)));
  return el("section", { id: "workers" }, el("h2", {}, "Workers (" + status.workers_total + ")"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", {}, "queues"),
      el("th", { class: "num" }, "slots"), el("th", {}, "last seen"), el("th", {}, "running"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no workers registered")))));
}

function failuresSection(failures) {
  const rows = failures.map(f => el("tr", { "data-work-id": f.work_id },
    el("td", {}, jobLink(f.work_id)), el("td", {}, f.queue), el("td", { class: "num" }, f.attempt),
    el("td", { class: "reason" }, f.reason)));
  return el("section", { id: "failures" }, el("h2", {}, "Recent failures (since the dashboard started)"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", {}, "queue"),
      el("th", { class: "num" }, "attempt"), el("th", {}, "reason"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "none")))));
}

function renderOverview(o) {
  const app = document.getElementById("app");
  const parts = [];
  if (o.no_leader) {
    parts.push(el("section", { id: "no-leader", class: "alert" }, el("h2", {}, "No leader"),
      el("pre", {}, o.no_leader)));
  } else if (o.error) {
    parts.push(el("section", { class: "alert" }, el("h2", {}, "Status unavailable"), el("pre", {}, o.error)));
  }
  if (o.status) {
    parts.push(queuesSection(o.status, o.actions), chartsSection(o.history), workersSection(o.status));
  } else {
    parts.push(chartsSection(o.history));
  }
  parts.push(failuresSection(o.failures));
  app.replaceChildren(...parts);
}

async function overview() {
  const { ok, body } = await getJson("/api/overview");
  if (!ok) throw new Error(body.error || "overview failed");
  lastOverview = body;
  header(body);
  return body;
}

async function renderJob(id) {
  const app = document.getElementById("app");
  const { status, body } = await getJson("/api/job?id=" + encodeURIComponent(id));
  const rows = [];
  const add = (label, value, attrs) => { if (value !== null && value !== undefined && value !== "")
    rows.push(el("dt", {}, label), el("dd", attrs || {}, value)); };
  add("work id", body.work_id || id, { id: "job-id" });
  add("status", body.status || "unknown", { id: "job-status", class: "status-" + (body.status || "unknown") });
  add("queue", body.queue, { id: "job-queue" });
  add("attempts", body.attempt, { id: "job-attempt" });
  add(body.status === "failed" || body.status === "cancelled" ? "reason" : "last error", body.reason,
      { id: "job-reason", class: "reason" });
  if (body.ready_at_ms) add("next attempt", new Date(body.ready_at_ms).toISOString(), { id: "job-ready-at" });
  if (body.running) add("running on", body.running.worker + " (attempt " + body.running.attempt + ")", { id: "job-running" });
  add("submit sequence", body.submit_seq);
  if (body.error && status !== 200) add("note", body.error, { class: "muted" });
  if (body.note) add("note", body.note, { class: "muted" });
  const parts = [el("p", {}, el("a", { href: "#/" }, "← overview")),
                 el("section", { id: "job" }, el("h2", {}, "Job " + id), el("dl", {}, rows))];
  if (body.history && body.history.length) {
    const took = a => a.ended_ms ? ((a.ended_ms - a.started_ms) / 1000).toFixed(3) + " s" : "";
    parts.push(el("section", { id: "attempts" }, el("h2", {}, "Attempts"), el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "worker"), el("th", {}, "started"),
        el("th", { class: "num" }, "run time"), el("th", {}, "outcome"), el("th", {}, "reason"))),
      el("tbody", {}, body.history.map(a => el("tr", { "data-attempt": a.attempt },
        el("td", {}, a.attempt), el("td", {}, a.worker),
        el("td", {}, a.started_ms ? new Date(a.started_ms).toISOString() : ""),
        el("td", { class: "num" }, took(a)),
        el("td", { class: "outcome status-" + a.outcome }, a.outcome),
        el("td", { class: "reason" }, a.reason || "")))))));
  }
  if (body.result !== undefined && body.status === "completed") {
    parts.push(el("section", {}, el("h2", {}, "Result (" + body.result_bytes + " bytes)"),
      el("pre", { class: "result", id: "job-result" }, body.result)));
  }
  if (lastOverview && lastOverview.actions) {
    const out = el("span", { id: "action-result", class: "muted" });
    const retry = el("button", { id: "retry", type: "button" }, "Retry");
    const cancel = el("button", { id: "cancel", type: "button", class: "danger" }, "Cancel");
    retry.onclick = () => act("kind=retry&id=" + encodeURIComponent(id), out);
    cancel.onclick = () => act("kind=cancel&id=" + encodeURIComponent(id), out);
    parts.push(el("section", { id: "actions" }, el("h2", {}, "Actions"), retry, cancel, out));
  }
  app.replaceChildren(...parts);
}

async function refresh() {
  clearTimeout(timer);
  let every = 2000;
  try {
    const o = await overview();
    every = Math.max(500, o.refresh_ms || 2000);
    const route = location.hash.match(/^#\/job\/(.+)$/);
    if (route) await renderJob(decodeURIComponent(route[1]));
    else renderOverview(o);
    document.body.dataset.ready = "1";
  } catch (e) {
    const leader = document.getElementById("leader");
    leader.className = "leader bad";
    leader.textContent = "dashboard unreachable: " + e.message;
  }
  // A job page does not change once finished: refresh it only while it runs.
  if (!location.hash.startsWith("#/job/") || !document.querySelector("#job-status.status-completed, #job-status.status-failed, #job-status.status-cancelled"))
    timer = setTimeout(refresh, every);
}

window.addEventListener("hashchange", () => { delete document.body.dataset.ready; refresh(); });
refresh();
