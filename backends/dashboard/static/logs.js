// The dashboard's worker log page: the workers' log files, and the tail of the one
// picked (?pid=N in the address), followed as it grows.
"use strict";

const POLL_MS = 2000;
const TAIL_BYTES = 64 * 1024;
let polls = 0;
let chosen = Number(new URLSearchParams(window.location.search).get("pid")) || null;

function choose(pid) {
  chosen = pid;
  window.history.replaceState(null, "", `${window.location.pathname}?pid=${pid}`);
  refresh();
}

function renderFiles(body) {
  const holder = document.getElementById("file-list");
  holder.replaceChildren();
  if (!body.rows.length) {
    holder.append(el("div", { class: "empty" },
      "No worker log files: a local driver keeps them with init(log_dir=...); " +
      "a cluster's nodes always do."));
    return;
  }
  const head = el("tr");
  for (const name of ["pid", "node", "worker", "running", "size", "written"]) {
    head.append(el("th", {}, name));
  }
  const tbody = el("tbody");
  for (const row of body.rows) {
    const tr = el("tr", { "data-pid": String(row.pid),
      class: row.pid === chosen ? "chosen" : "" });
    const link = el("a", { href: `?pid=${row.pid}` }, row.pid);
    link.addEventListener("click", (event) => { event.preventDefault(); choose(row.pid); });
    const td = el("td", { class: "mono" });
    td.append(link);
    tr.append(td, el("td", { class: "mono" }, row.node_id || "–"),
      el("td", {}, row.actor_class || (row.is_alive === false ? "ended" : "worker")),
      el("td", {}, (row.current_task_names || []).join(", ") || "–"),
      el("td", {}, bytes(row.size)),
      el("td", {}, new Date(row.mtime_ms).toLocaleTimeString()));
    tbody.append(tr);
  }
  const table = el("table");
  table.append(el("thead"), tbody);
  table.tHead.append(head);
  holder.append(table);
}

async function refreshTail() {
  const title = document.getElementById("tail-title");
  const text = document.getElementById("tail-text");
  if (chosen === null) return;
  const tail = await getJSON(`api/logs/${chosen}?bytes=${TAIL_BYTES}`);
  title.textContent = `worker pid ${tail.pid}` + (tail.node_id ? ` on node ${tail.node_id}` : "") +
    ` — ${tail.file}, ${bytes(tail.size)}` + (tail.truncated ? ", its last lines" : "");
  const follow = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
  text.textContent = tail.text;
  text.dataset.pid = String(tail.pid);
  if (follow) text.scrollTop = text.scrollHeight;
}

async function refresh() {
  try {
    renderFiles(await getJSON("api/logs"));
    await refreshTail();
    polls += 1;
    document.body.dataset.polls = String(polls);
    setStatus("live", "live");
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    setStatus("error", err.message || String(err));
  }
}

async function loop() {
  if (!document.hidden) await refresh();
  setTimeout(loop, POLL_MS);
}

dropToken();
loop();
