// The actorlib dashboard: polls api/snapshot and draws it. No build step, no libraries.
// Every value from the server is written with textContent (task names, errors and
// death causes are user data), never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const LIMIT = 200;
const HISTORY = 60; // running-task samples kept for the chart

const TITLES = { nodes: "Nodes", demand: "Pending demand (waiting for resources)",
  workers: "Workers", actors: "Actors", tasks: "Tasks", objects: "Objects", jobs: "Jobs",
  metrics: "Metrics (actorlib.util.metrics; Prometheus text at /metrics)" };
// Columns shown first, per kind; other fields follow, except those hidden.
const COLUMNS = {
  nodes: ["node_id", "state", "cpu", "memory", "object_store_bytes", "spilled_bytes",
    "resources_total"],
  demand: ["resources", "count", "strategy", "infeasible"],
  workers: ["pid", "worker_type", "is_alive", "actor_class", "current_task_names", "node_id",
    "worker_id", "exit_detail"],
  actors: ["actor_id", "class_name", "name", "state", "num_restarts", "pid", "node_id",
    "death_cause"],
  tasks: ["task_id", "name", "state", "attempt_number", "type", "duration", "node_id",
    "worker_pid", "actor_id"],
  objects: ["object_id", "object_size", "reference_count", "task_status", "where", "spilled"],
  jobs: ["job_id", "type", "status", "entrypoint", "driver_info"],
  metrics: ["name", "type", "tags", "value", "count", "description"],
};
const HIDDEN = {
  nodes: ["resources_available"],
  tasks: ["func_or_class_name", "job_id", "creation_time_ms", "start_time_ms", "end_time_ms"],
  actors: ["job_id", "ray_namespace", "is_detached", "required_resources"],
  objects: [],
  workers: ["actor_id", "current_task_ids"],
  demand: [],
  jobs: ["submission_id", "message", "metadata", "runtime_env", "error_type",
    "driver_exit_code", "driver_node_id"],
  metrics: ["sum"],
};
const ID_FIELD = { nodes: "node_id", workers: "worker_id", actors: "actor_id",
  tasks: "task_id", objects: "object_id" };
const PENDING = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
  "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"];
const BYTE_RESOURCES = ["memory", "object_store_memory"];

const running = [];
let polls = 0;

function number(n) {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, "");
}

function resource(key, value) {
  return BYTE_RESOURCES.includes(key) ? bytes(value) : number(value);
}

function usage(total, available, key) {
  if (!total || total[key] === undefined) return null;
  const used = Math.max(total[key] - ((available || {})[key] ?? total[key]), 0);
  return { used, total: total[key], text: `${resource(key, used)} / ${resource(key, total[key])}` };
}

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function derived(kind, row, now) {
  if (kind === "nodes") {
    return { ...row,
      cpu: usage(row.resources_total, row.resources_available, "CPU"),
      memory: usage(row.resources_total, row.resources_available, "memory") };
  }
  if (kind === "tasks") {
    const start = row.start_time_ms || row.creation_time_ms;
    const end = row.end_time_ms || (row.state === "RUNNING" ? now : null);
    return { ...row, duration: start && end ? seconds(Math.max(end - start, 0)) : null };
  }
  return row;
}

function columns(kind, rows) {
  const present = new Set();
  for (const row of rows) for (const key of Object.keys(row)) present.add(key);
  const first = (COLUMNS[kind] || []).filter((key) => present.has(key));
  const hidden = new Set([...(HIDDEN[kind] || []), ...first]);
  return first.concat([...present].filter((key) => !hidden.has(key)));
}

function cell(key, value) {
  const td = el("td");
  if (value === null || value === undefined || value === "") {
    td.textContent = "–";
  } else if (key === "state" || key === "task_status") {
    td.append(el("span", { class: `state state-${value}` }, value));
  } else if (typeof value === "object" && "used" in value && "total" in value) {
    const bar = el("span", { class: "bar" });
    const fill = el("span");
    fill.style.width = `${value.total ? Math.min(100, (100 * value.used) / value.total) : 0}%`;
    bar.append(fill);
    td.append(bar, document.createTextNode(value.text));
  } else if (key.endsWith("_bytes") || key === "object_size" || key === "rss") {
    td.textContent = bytes(value);
  } else if (key.endsWith("_time_ms")) {
    td.textContent = new Date(value).toLocaleTimeString();
  } else if (Array.isArray(value)) {
    td.textContent = value.length ? value.join(", ") : "–";
  } else if (typeof value === "object") {
    td.textContent = Object.entries(value).map(([k, v]) =>
      `${k}=${typeof v === "number" ? resource(k, v) : v}`).join(", ") || "–";
  } else {
    td.textContent = typeof value === "number" ? number(value) : String(value);
  }
  if (key.endsWith("_id")) td.classList.add("mono");
  return td;
}

function table(kind, rows, total, now) {
  if (!rows.length) return el("div", { class: "empty" }, "none");
  const shown = rows.map((row) => derived(kind, row, now));
  const cols = columns(kind, shown);
  const tbl = el("table");
  const head = el("tr");
  for (const key of cols) head.append(el("th", {}, key.replace(/_/g, " ")));
  const thead = el("thead");
  thead.append(head);
  tbl.append(thead);
  const body = el("tbody");
  for (const row of shown) {
    const tr = el("tr");
    const id = row[ID_FIELD[kind]];
    if (id !== undefined && id !== null) tr.dataset.id = String(id);
    if (row.state) tr.dataset.state = String(row.state);
    for (const key of cols) tr.append(cell(key, row[key]));
    body.append(tr);
  }
  tbl.append(body);
  const wrap = el("div");
  wrap.append(tbl);
  if (total > rows.length) wrap.append(el("div", { class: "more" }, `${rows.length} of ${total} shown`));
  return wrap;
}

function chips(counts) {
  const box = el("div", { class: "chips" });
  for (const [state, n] of Object.entries(counts || {}).sort()) {
    const chip = el("span", { class: "chip" });
    chip.dataset.state = state;
    chip.append(el("span", { class: `state state-${state}` }, state),
      document.createTextNode(` ${n}`));
    box.append(chip);
  }
  return box;
}

function section(kind) {
  let node = document.getElementById(`kind-${kind}`);
  if (!node) {
    node = el("section", { class: "panel", id: `kind-${kind}` });
    node.append(el("h2", {}, TITLES[kind] || kind), el("div", { class: "body" }));
    document.getElementById("kinds").append(node);
  }
  return node;
}

function card(id, label, value, note) {
  const node = el("div", { class: "card", id: `card-${id}` });
  node.dataset.value = String(value);
  node.append(el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  if (note) node.append(el("div", { class: "note" }, note));
  return node;
}

function renderCards(snap) {
  const s = snap.summary;
  const tasks = (s.tasks && s.tasks.by_state) || {};
  const actors = (s.actors && s.actors.by_state) || {};
  const pending = PENDING.reduce((sum, state) => sum + (tasks[state] || 0), 0);
  const out = [];
  if (s.nodes) {
    const alive = (s.nodes.by_state || {}).ALIVE || 0;
    out.push(card("nodes", "Nodes", alive, `${s.nodes.total} known`));
    const cpu = usage(s.nodes.resources_total, s.nodes.resources_available, "CPU");
    if (cpu) out.push(card("cpu", "CPU used", cpu.text));
  }
  if (s.workers) out.push(card("workers", "Workers", s.workers.alive, `${s.workers.total} known`));
  if (s.demand && s.demand.requests) {
    out.push(card("demand", "Waiting for resources", s.demand.requests,
      s.demand.infeasible ? `${s.demand.infeasible} infeasible` : null));
  }
  if (s.actors) {
    out.push(card("actors", "Actors alive", actors.ALIVE || 0,
      `${s.actors.total} known, ${s.actors.restarts} restarts`));
  }
  if (s.tasks) {
    out.push(card("running", "Tasks running", tasks.RUNNING || 0));
    out.push(card("pending", "Tasks pending", pending));
    out.push(card("finished", "Finished", tasks.FINISHED || 0, "remembered by the core"));
    out.push(card("failed", "Failed", tasks.FAILED || 0));
  }
  if (s.objects) {
    out.push(card("objects", "Objects", s.objects.total, bytes(s.objects.total_bytes)));
    out.push(card("spilled", "Spilled", bytes(s.objects.spilled_bytes)));
  }
  document.getElementById("cards").replaceChildren(...out);
}

function drawChart(rate) {
  const canvas = document.getElementById("rate");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const n = rate.finished.length;
  const peak = Math.max(1, ...rate.finished.map((f, i) => f + rate.failed[i]), ...running);
  const left = 36;
  const bottom = height - 16;
  const plotW = width - left - 8;
  const plotH = bottom - 8;
  const y = (v) => bottom - (v / peak) * plotH;
  ctx.strokeStyle = "#e3e6eb";
  ctx.fillStyle = "#667085";
  ctx.font = "11px system-ui, sans-serif";
  for (const frac of [0, 0.5, 1]) {
    const v = peak * frac;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(width - 8, y(v)); ctx.stroke();
    ctx.fillText(number(Math.round(v * 10) / 10), 2, y(v) + 4);
  }
  ctx.fillText("-60 s", left, height - 2);
  ctx.fillText("now", width - 30, height - 2);
  const barW = plotW / n;
  for (let i = 0; i < n; i += 1) {
    const x = left + i * barW;
    const ok = rate.finished[i];
    const bad = rate.failed[i];
    ctx.fillStyle = "#1a7f37";
    ctx.fillRect(x + 1, y(ok), Math.max(barW - 2, 1), bottom - y(ok));
    ctx.fillStyle = "#cf222e";
    ctx.fillRect(x + 1, y(ok + bad), Math.max(barW - 2, 1), y(ok) - y(ok + bad));
  }
  if (running.length > 1) {
    ctx.strokeStyle = "#0969da";
    ctx.lineWidth = 2;
    ctx.beginPath();
    running.forEach((v, i) => {
      const x = left + plotW - (running.length - 1 - i) * barW - barW / 2;
      if (i === 0) ctx.moveTo(x, y(v)); else ctx.lineTo(x, y(v));
    });
    ctx.stroke();
    ctx.lineWidth = 1;
  }
}

function render(snap) {
  document.getElementById("source").textContent = snap.source || "";
  renderCards(snap);
  const tasks = snap.summary.tasks;
  running.push(tasks && tasks.by_state ? tasks.by_state.RUNNING || 0 : 0);
  if (running.length > HISTORY) running.shift();
  drawChart(snap.rate);
  for (const kind of snap.kinds) {
    if (kind === "demand" && !snap.rows[kind].length) { // shown only while there is some
      document.getElementById(`kind-${kind}`)?.remove();
      continue;
    }
    const node = section(kind);
    const body = node.querySelector(".body");
    const parts = [];
    if (kind === "tasks" || kind === "actors") parts.push(chips(snap.summary[kind].by_state));
    parts.push(table(kind, snap.rows[kind], snap.summary[kind].total, snap.time_ms));
    body.replaceChildren(...parts);
  }
  for (const kind of Object.keys(snap.unavailable || {})) {
    const node = document.getElementById(`kind-${kind}`);
    if (node) node.remove();
  }
}

async function poll() {
  let delay = POLL_MS;
  if (document.hidden) { // a tab in the background costs the core nothing
    setTimeout(poll, delay);
    return;
  }
  try {
    const response = await fetch(`api/snapshot?limit=${LIMIT}`,
      { credentials: "same-origin", cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    render(body);
    // At most a tenth of the time building snapshots: a core remembering many tasks
    // takes longer to list them.
    delay = Math.max(POLL_MS, 10 * (body.build_ms || 0));
    polls += 1;
    document.body.dataset.polls = String(polls);
    setStatus("live", "live");
    document.getElementById("updated").textContent =
      `updated ${new Date(body.time_ms).toLocaleTimeString()}`;
  } catch (err) {
    setStatus("error", err.message || String(err));
  } finally {
    setTimeout(poll, delay);
  }
}

dropToken();
poll();
