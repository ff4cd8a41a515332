// The dashboard's timeline page: the Chrome trace of api/timeline, one row of spans per
// worker process lane, and a link to download the trace for Perfetto.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const LABEL_W = 260;
const WIDTH = 1000;
const ROW_H = 18;
let loads = 0;

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function draw(events) {
  const names = {};
  for (const e of events) {
    if (e.ph === "M" && e.name === "process_name") names[e.pid] = e.args.name;
  }
  const spans = events.filter((e) => e.ph === "X" && (e.cat === "task" || e.cat === "actor_task"));
  const holder = document.getElementById("spans");
  const summary = document.getElementById("summary");
  holder.replaceChildren();
  summary.replaceChildren();
  const byCat = { task: 0, actor_task: 0 };
  for (const s of spans) byCat[s.cat] += 1;
  summary.append(el("span", { class: "chip" }, `${byCat.task} task spans`),
    el("span", { class: "chip" }, `${byCat.actor_task} actor call spans`));
  if (!spans.length) {
    holder.append(el("div", { class: "empty" }, "No task has started yet."));
    return;
  }
  const t0 = Math.min(...spans.map((s) => s.ts));
  const t1 = Math.max(...spans.map((s) => s.ts + s.dur));
  const scale = (WIDTH - LABEL_W - 10) / Math.max(t1 - t0, 1);
  const rows = [...new Set(spans.map((s) => `${s.pid}/${s.tid}`))].sort((a, b) => {
    const [pa, ta] = a.split("/").map(Number);
    const [pb, tb] = b.split("/").map(Number);
    return pa - pb || ta - tb;
  });
  const height = rows.length * ROW_H + 24;
  const chart = svg("svg", { class: "spans", viewBox: `0 0 ${WIDTH} ${height}`,
    "aria-label": "spans per worker" });
  rows.forEach((key, i) => {
    const [pid, tid] = key.split("/");
    const y = i * ROW_H;
    chart.append(svg("line", { class: "grid", x1: 0, x2: WIDTH, y1: y + ROW_H, y2: y + ROW_H }));
    // "worker pid=4242, node=1f2e3d4c5b6a7988" -> "pid=4242, node=1f2e3d4c…": fits the column.
    const name = (names[pid] || `pid=${pid}`).replace(/^worker /, "")
      .replace(/node=(\w{8})\w+/, "node=$1…");
    const label = name + (tid !== "0" ? ` · lane ${tid}` : "");
    chart.append(svg("text", { x: 4, y: y + 13, "data-row": key }, label));
  });
  for (const s of spans) {
    const y = rows.indexOf(`${s.pid}/${s.tid}`) * ROW_H;
    const state = s.args.state;
    const rect = svg("rect", {
      class: `span-${s.cat}` + (state === "FAILED" || state === "RUNNING" ? ` span-${state}` : ""),
      x: LABEL_W + (s.ts - t0) * scale, y: y + 3, height: ROW_H - 6,
      width: Math.max(s.dur * scale, 1.5), "data-task": s.args.task_id,
    });
    rect.append(svg("title", {}, `${s.name} (${state}) ${(s.dur / 1000).toFixed(1)} ms, ` +
      `waited ${s.args.scheduling_delay_ms} ms`));
    chart.append(rect);
  }
  chart.append(svg("text", { x: LABEL_W, y: height - 6 }, "0 ms"));
  chart.append(svg("text", { x: WIDTH - 90, y: height - 6 },
    `${((t1 - t0) / 1000).toFixed(1)} ms`));
  holder.append(chart);
}

async function load() {
  try {
    draw(await getJSON("api/timeline"));
    loads += 1;
    document.body.dataset.loads = String(loads);
    setStatus("live", "loaded");
    document.getElementById("updated").textContent =
      `as of ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    setStatus("error", err.message || String(err));
  }
}

document.getElementById("reload").addEventListener("click", load);
dropToken();
load();
