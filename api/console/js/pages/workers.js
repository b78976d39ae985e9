// Workers: every worker's latest heartbeat (state, stages, partitions, model, batches, GPU), kept
// fresh every 2 s, and — for roles with write:servers — the operator commands with the workers'
// acknowledgements. Rows are updated in place (keyed by worker id) so a refresh never wipes what
// an operator is typing into a row's settings or moves the keyboard focus.

import { api, can } from "../api.js";
import { barChart } from "../chart.js";
import { badge, el, fill, fmtNumber, problemText, repeat } from "../ui.js";

const REFRESH_MS = 2000;
const STATE_TONE = {
  running: "ok",
  paused: "warn",
  draining: "warn",
  degraded: "warn",
  starting: "warn",
  stopping: "bad",
  lost: "bad",
};

// Read-only columns, rebuilt from each heartbeat; the controls column is built once per row.
const COLUMNS = [
  { label: "Worker", cell: workerCell },
  { label: "State", cell: stateCell },
  { label: "Stages", cell: (w) => w.stages.join(", ") || "—" },
  { label: "Partitions", cell: partitionsCell },
  { label: "Model", cell: modelCell },
  { label: "Device", cell: deviceCell },
  { label: "Batches (last minute)", cell: batchCell },
  { label: "Heartbeat", cell: heartbeatCell },
];

function workerCell(w) {
  return el("div", {}, el("strong", { class: "worker-id" }, w.worker_id), el("div", { class: "muted small" }, `${w.host} · pid ${w.pid}`));
}

function stateCell(w) {
  const down = Object.entries(w.unavailable || {});
  return el(
    "div",
    {},
    badge(w.state, STATE_TONE[w.state]),
    down.length ? el("div", { class: "small bad" }, `down: ${down.map(([name, s]) => `${name} ${Math.round(s)} s`).join(", ")}`) : null,
  );
}

/** "images.v1 0,1,2" per topic: the prefix is the same for every topic, so it is left out. */
function partitionsCell(w) {
  if (!w.partitions.length) return el("span", { class: "muted" }, "none");
  const byTopic = new Map();
  for (const pair of w.partitions) {
    const cut = pair.lastIndexOf(":");
    const topic = pair.slice(0, cut);
    byTopic.set(topic, [...(byTopic.get(topic) || []), pair.slice(cut + 1)]);
  }
  return el(
    "div",
    { class: "partitions", title: w.partitions.join(" ") },
    [...byTopic].map(([topic, parts]) => el("div", {}, `${topic.split(".").slice(-2).join(".")} ${parts.join(",")}`)),
  );
}

function modelCell(w) {
  return el(
    "div",
    {},
    el("div", {}, w.model || "—"),
    el("div", { class: "muted small" }, `max batch ${w.max_batch} · confidence ${fmtNumber(w.confidence, 2)}`),
  );
}

function deviceCell(w) {
  const gpu = w.gpu || {};
  const readings = gpu.present
    ? [
        gpu.name,
        gpu.utilization_percent != null ? `${fmtNumber(gpu.utilization_percent, 0)} % busy` : null,
        gpu.memory_used_mb != null ? `${fmtNumber(gpu.memory_used_mb, 0)}/${fmtNumber(gpu.memory_total_mb, 0)} MB` : null,
        gpu.temperature_c != null ? `${fmtNumber(gpu.temperature_c, 0)} °C` : null,
      ].filter(Boolean)
    : [];
  return el(
    "div",
    {},
    el("div", {}, [w.device, w.backend].filter(Boolean).join(" · ") || "—"),
    readings.length ? el("div", { class: "small" }, readings.join(" · ")) : null,
    el("div", { class: "muted small" }, `CPU ${fmtNumber(w.cpu_percent, 0)} % · ${fmtNumber(w.rss_mb, 0)} MB`),
  );
}

/** A tiny bar chart of the heartbeat's batch-size histogram; plain text when it is one size. */
function batchCell(w) {
  const sizes = Object.keys(w.batch_sizes || {}).sort((a, b) => Number(a) - Number(b));
  const rate = el("div", { class: "muted small" }, `${w.images_last_minute} images · ${fmtNumber(w.throughput_per_s, 2)}/s`);
  if (!sizes.length) return el("div", {}, el("span", { class: "muted" }, "no batches"), rate);
  const text = sizes.map((s) => `${w.batch_sizes[s]}× size ${s}`).join(", ");
  if (sizes.length < 2) return el("div", {}, text, rate);
  const chart = barChart({
    labels: sizes,
    series: [{ name: "batches", colour: "#2f6fdf", values: sizes.map((s) => w.batch_sizes[s]) }],
    label: `Batch sizes in the last minute: ${text}`,
    width: 220,
    height: 90,
  });
  chart.classList.add("mini-chart");
  return el("div", {}, chart, rate);
}

function heartbeatCell(w) {
  return el("span", { class: w.state === "lost" ? "bad" : "" }, `${fmtNumber(w.heartbeat_age_s, 1)} s ago`);
}

/** What a command reply says about each worker's acknowledgement, in words. */
function ackLines(reply, action) {
  const acks = Object.entries(reply.acks || {});
  if (!acks.length) return [`${action} sent (${reply.command_id}); no worker acknowledged it within 5 s.`];
  return acks.map(([worker, ack]) =>
    ack.ok ? `${worker}: ${ack.action} applied` : `${worker}: ${ack.action} refused — ${ack.reason || "no reason given"}`,
  );
}

export default {
  id: "workers",
  title: "Workers",
  permission: "read:servers",
  nav: true,
  async render(root) {
    const writable = can("write:servers");
    const totals = el("p", { class: "muted", "data-testid": "worker-totals" });
    const failure = el("p", { class: "error", role: "alert" });
    const acks = el("div", { class: "acks", role: "status", "aria-live": "polite", "data-testid": "acks" });
    const body = el("tbody");
    const empty = el("p", { class: "muted" }, "No worker has reported in the last 10 minutes.");
    const columns = writable ? [...COLUMNS, { label: "Controls" }] : COLUMNS;
    const grid = el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { class: "workers-table" },
        el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.label)))),
        body,
      ),
    );
    const rows = new Map(); // worker id -> {row, cells}
    let stopped = false;

    /** Send `action` to `target` (a worker id or "all"), then show each worker's ack. */
    async function command(target, action, params = {}) {
      fill(failure);
      fill(acks, `Sending ${action}…`);
      try {
        const reply = await api(`/api/v1/servers/${encodeURIComponent(target)}/commands`, {
          method: "POST",
          json: { action, params },
        });
        const lines = ackLines(reply, action);
        fill(acks, el("ul", {}, lines.map((line) => el("li", {}, line))));
        refresh();
      } catch (err) {
        fill(acks);
        fill(failure, problemText(err));
        failure.dataset.from = "command";
      }
    }

    function rowFor(worker) {
      let entry = rows.get(worker.worker_id);
      if (!entry) {
        // data-label: the column's name, shown beside each cell where a phone stacks the row.
        const cells = COLUMNS.map((c) => el("td", { "data-label": c.label }));
        const row = el("tr", { "data-worker": worker.worker_id }, cells);
        if (writable) row.append(el("td", { "data-label": "Controls" }, controls(worker.worker_id, command)));
        entry = { row, cells };
        rows.set(worker.worker_id, entry);
      }
      COLUMNS.forEach((c, i) => fill(entry.cells[i], c.cell(worker)));
      return entry.row;
    }

    function show(view) {
      const workers = view.workers || [];
      const t = view.totals || {};
      const s = view.scaling || {};
      fill(
        totals,
        `${t.live ?? 0} live of ${t.workers ?? 0} workers · ${t.images_last_minute ?? 0} images in the last minute · ` +
          `GPU cost $${fmtNumber(t.cost_usd, 2)} · backlog ${s.backlog_messages ?? 0} messages, ` +
          `${s.inference_workers_needed ?? 0} inference workers needed (${s.inference_workers_now ?? 0} now)`,
      );
      const seen = new Set(workers.map((w) => w.worker_id));
      for (const [id, entry] of rows) {
        if (!seen.has(id)) {
          entry.row.remove();
          rows.delete(id);
        }
      }
      // Append in order: moving an existing row keeps its inputs (re-appending in place is a no-op).
      workers.forEach((w, i) => {
        const row = rowFor(w);
        if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
      });
      empty.hidden = workers.length > 0;
      grid.hidden = workers.length === 0;
    }

    async function refresh() {
      try {
        show(await api("/api/v1/servers"));
        if (failure.dataset.from === "refresh") fill(failure);
      } catch (err) {
        if (stopped) return;
        fill(failure, `Could not read the workers: ${problemText(err)}`);
        failure.dataset.from = "refresh";
      }
    }

    fill(
      root,
      el("h1", { id: "page-title" }, "Workers"),
      totals,
      writable ? everyWorker(command) : null,
      acks,
      failure,
      empty,
      grid,
    );
    grid.hidden = true;
    const stop = await repeat(refresh, REFRESH_MS);
    return () => {
      stopped = true;
      stop();
    };
  },
};

/** Commands for every worker at once (target `all`). */
function everyWorker(command) {
  return el(
    "div",
    { class: "row every-worker", role: "group", "aria-label": "Every worker" },
    el("span", { class: "muted" }, "Every worker:"),
    el("button", { type: "button", onclick: () => command("all", "pause") }, "Pause all"),
    el("button", { type: "button", onclick: () => command("all", "resume") }, "Resume all"),
    el("button", { type: "button", onclick: () => command("all", "reload_rules") }, "Reload rules"),
  );
}

/** One worker's controls: pause, resume, drain (confirmed inline), live settings and model. */
function controls(id, command) {
  const name = (verb) => `${verb} ${id}`;
  // Drain ends the worker, so it asks first: inline (no modal), focus moved to the question
  // and back, so a keyboard user is never left on a button that has just been hidden.
  const drain = el("button", { type: "button", class: "danger", "aria-label": name("Drain"), onclick: () => ask(true) }, "Drain");
  const yes = el("button", { type: "button", class: "danger", "aria-label": name("Confirm drain"), onclick: () => {
    ask(false);
    command(id, "drain");
  } }, "Confirm drain");
  const confirm = el(
    "span",
    { class: "confirm", hidden: true },
    el("span", { class: "small" }, "Stop taking work and exit?"),
    yes,
    el("button", { type: "button", onclick: () => ask(false) }, "Cancel"),
  );
  function ask(open) {
    confirm.hidden = !open;
    (open ? yes : drain).focus();
  }
  const batch = el("input", { type: "number", min: 1, max: 64, step: 1, inputmode: "numeric", "aria-label": name("Max batch for") });
  const confidence = el("input", { type: "number", min: 0, max: 1, step: 0.01, inputmode: "decimal", "aria-label": name("Confidence for") });
  const model = el("input", { type: "text", placeholder: "name:version", "aria-label": name("Model for"), autocomplete: "off" });
  const hint = el("p", { class: "error small", role: "alert" });

  function applySettings(event) {
    event.preventDefault();
    fill(hint);
    const params = {};
    if (batch.value !== "") params.max_batch = Number(batch.value);
    if (confidence.value !== "") params.confidence = Number(confidence.value);
    if (!Object.keys(params).length) {
      fill(hint, "Enter a max batch or a confidence first.");
      return;
    }
    command(id, "set", params);
  }

  function switchModel(event) {
    event.preventDefault();
    fill(hint);
    if (!model.value.includes(":")) {
      fill(hint, "Name the model as name:version.");
      return;
    }
    command(id, "switch_model", { model: model.value.trim() });
  }

  return el(
    "div",
    { class: "worker-controls" },
    el(
      "div",
      { class: "buttons" },
      el("button", { type: "button", "aria-label": name("Pause"), onclick: () => command(id, "pause") }, "Pause"),
      el("button", { type: "button", "aria-label": name("Resume"), onclick: () => command(id, "resume") }, "Resume"),
      drain,
      el("button", { type: "button", "aria-label": name("Reload rules on"), onclick: () => command(id, "reload_rules") }, "Reload rules"),
    ),
    confirm,
    el(
      "details",
      {},
      el("summary", {}, "Settings and model"),
      el(
        "form",
        { class: "settings", onsubmit: applySettings },
        el("label", {}, "Max batch", batch),
        el("label", {}, "Confidence", confidence),
        el("button", { type: "submit", "aria-label": name("Apply settings to") }, "Apply"),
      ),
      el(
        "form",
        { class: "settings", onsubmit: switchModel },
        el("label", {}, "Model", model),
        el("button", { type: "submit", "aria-label": name("Switch model of") }, "Switch"),
      ),
    ),
    hint,
  );
}
