// Dashboard: the API's one summary (GET /api/v1/dashboard/summary) as number tiles, tables and
// charts, read again every 5 s. The summary is a snapshot over a window; the throughput and lag
// lines are the samples this page has seen since it was opened (kept in the browser only).

import { api } from "../api.js";
import { barChart, lineChart } from "../chart.js";
import { el, fill, fmtNumber, problemText, table } from "../ui.js";

const REFRESH_MS = 5000;
const MAX_SAMPLES = 720; // an hour of 5 s samples
const WINDOWS = [
  [60, "last minute"],
  [300, "last 5 minutes"],
  [900, "last 15 minutes"],
  [3600, "last hour"],
];
const STAGE_ORDER = ["total", "preprocess", "inference", "analysis"];
const PARTITION_COLOURS = ["#7d3cc8", "#2f6fdf", "#1f9d4c", "#e08a00", "#d7263d", "#5b6470"];
const COLOURS = { p50: "#2f6fdf", p95: "#e08a00", p99: "#d7263d", line: "#0b5cad", lag: "#7d3cc8", bad: "#c0262d" };

/** Lag per partition, or the reason the broker could not say (the summary gives a string). */
function totalLag(lag) {
  return Array.isArray(lag) ? lag.reduce((sum, x) => sum + x.lag, 0) : null;
}

/** Rates keep their first significant digits: 1 result in 5 minutes is 0.003/s, not 0.00. */
function fmtRate(value) {
  if (typeof value !== "number") return fmtNumber(value);
  return fmtNumber(value, value >= 10 ? 1 : value >= 0.1 ? 2 : 3, "/s");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function tile(label, value, note) {
  return el("div", { class: "tile" }, el("span", { class: "tile-label" }, label), el("strong", { class: "tile-value" }, value), note ? el("span", { class: "tile-note muted" }, note) : null);
}

function tiles(s) {
  const total = s.latency_ms.total;
  const lag = totalLag(s.consumer_lag);
  const dead = Object.values(s.dead_letters_by_reason || {}).reduce((a, b) => a + b, 0);
  const w = s.workers || {};
  return el(
    "div",
    { class: "tiles", "data-testid": "tiles" },
    tile("Throughput", fmtRate(s.throughput_per_s), `${plural(s.results, "result")} in the window`),
    tile("Latency p50", fmtNumber(total?.p50, 0, "ms"), total ? `p95 ${fmtNumber(total.p95, 0)} · p99 ${fmtNumber(total.p99, 0)} ms` : "no results"),
    tile("Consumer lag", lag === null ? "—" : String(lag), lag === null ? "broker unavailable" : "messages behind"),
    tile("Dead letters", String(dead), "rejected or failed"),
    tile("Workers", `${w.live ?? 0}/${w.workers ?? 0}`, w.lost ? `${w.lost} lost` : "live / known"),
    tile("Cache hit rate", s.result_cache_hit_rate === null ? "—" : `${fmtNumber(s.result_cache_hit_rate * 100, 0)} %`, "result cache"),
    tile("Waiting requests", String(s.waiting_requests ?? 0), "callers waiting for a result"),
  );
}

/** The pipeline's order (the end-to-end total first); a stage it does not know goes last. */
function stageRank(stage) {
  const at = STAGE_ORDER.indexOf(stage);
  return at === -1 ? STAGE_ORDER.length : at;
}

/** Latency percentiles per stage: a table of the numbers and bars stacked p50 → p95 → p99. */
function latency(s) {
  const stages = Object.entries(s.latency_ms)
    .filter(([, v]) => v)
    .sort(([a], [b]) => stageRank(a) - stageRank(b));
  if (!stages.length) return el("p", { class: "muted" }, "No finished results in this window.");
  const chart = barChart({
    labels: stages.map(([name]) => name),
    series: [
      { name: "p50", colour: COLOURS.p50, values: stages.map(([, v]) => v.p50) },
      { name: "to p95", colour: COLOURS.p95, values: stages.map(([, v]) => round(v.p95 - v.p50)) },
      { name: "to p99", colour: COLOURS.p99, values: stages.map(([, v]) => round(v.p99 - v.p95)) },
    ],
    label: `Latency per stage in ms: ${stages.map(([n, v]) => `${n} p50 ${v.p50}, p95 ${v.p95}, p99 ${v.p99}`).join("; ")}`,
  });
  const numbers = table(
    [
      { label: "Stage", cell: ([name]) => name },
      { label: "p50 ms", cell: ([, v]) => fmtNumber(v.p50, 1) },
      { label: "p95 ms", cell: ([, v]) => fmtNumber(v.p95, 1) },
      { label: "p99 ms", cell: ([, v]) => fmtNumber(v.p99, 1) },
      { label: "n", cell: ([, v]) => String(v.n) },
    ],
    stages,
  );
  return el("div", { class: "split" }, chart, numbers);
}

/** Lag per topic, stacked by partition: a dozen partition labels would not fit under bars. */
function lag(s) {
  if (!Array.isArray(s.consumer_lag)) return el("p", { class: "error" }, `Lag ${s.consumer_lag}`);
  const parts = s.consumer_lag;
  if (!parts.length) return el("p", { class: "muted" }, "No consumer group has committed yet.");
  const short = (topic) => topic.split(".").slice(-2, -1)[0] || topic;
  const topics = [...new Set(parts.map((x) => x.topic))];
  const numbers = [...new Set(parts.map((x) => x.partition))].sort((a, b) => a - b);
  const series = numbers.map((n, i) => ({
    name: `p${n}`,
    colour: PARTITION_COLOURS[i % PARTITION_COLOURS.length],
    values: topics.map((t) => parts.find((x) => x.topic === t && x.partition === n)?.lag || 0),
  }));
  const behind = parts.filter((x) => x.lag > 0);
  return el(
    "div",
    {},
    barChart({
      labels: topics.map(short),
      series,
      label: `Consumer lag per topic and partition: ${parts.map((x) => `${short(x.topic)}:${x.partition} ${x.lag}`).join(", ")}`,
    }),
    el(
      "p",
      { class: "muted small" },
      behind.length
        ? `Behind: ${behind.map((x) => `${short(x.topic)}:${x.partition} ${x.lag}`).join(", ")}`
        : "Every partition is caught up.",
    ),
  );
}

function deadLetters(s) {
  const reasons = Object.entries(s.dead_letters_by_reason || {}).sort((a, b) => b[1] - a[1]);
  if (!reasons.length) return el("p", { class: "muted" }, "No dead letters in this window.");
  return el(
    "div",
    { class: "split" },
    barChart({
      labels: reasons.map(([r]) => r),
      series: [{ name: "inputs", colour: COLOURS.bad, values: reasons.map(([, n]) => n) }],
      label: `Dead letters by reason: ${reasons.map(([r, n]) => `${r} ${n}`).join(", ")}`,
    }),
    table([{ label: "Reason", cell: ([r]) => r }, { label: "Inputs", cell: ([, n]) => String(n) }], reasons),
  );
}

function statuses(s) {
  const rows = [
    ...Object.entries(s.by_status || {}).map(([k, n]) => ["status", k, n]),
    ...Object.entries(s.models || {}).map(([k, n]) => ["model", k, n]),
  ];
  return table(
    [
      { label: "Kind", cell: (r) => r[0] },
      { label: "Value", cell: (r) => r[1] },
      { label: "Results", cell: (r) => String(r[2]) },
    ],
    rows,
    { empty: "No results in this window." },
  );
}

/** A line per sample series since the page opened; one sample is drawn as a flat line. */
function history(samples, key, name, colour, unit) {
  const points = samples.filter((p) => p[key] !== null).map((p) => [p.at, p[key]]);
  if (!points.length) return el("p", { class: "muted" }, "No samples yet.");
  const last = points[points.length - 1][1];
  return lineChart({
    series: [{ name, colour, points }],
    label: `${name} since this page opened: ${points.length} samples, latest ${last}${unit}`,
    format: (x) => new Date(x).toLocaleTimeString(),
  });
}

function round(value) {
  return Math.max(0, Math.round(value * 100) / 100);
}

function section(title, body) {
  return el("section", { class: "panel", "aria-label": title }, el("h2", {}, title), body);
}

export default {
  id: "dashboard",
  title: "Dashboard",
  permission: "read:dashboard",
  nav: true,
  async render(root) {
    const samples = []; // {at, throughput, lag}, the client-side history
    const windowSelect = el(
      "select",
      { name: "window" },
      WINDOWS.map(([s, text]) => el("option", { value: s, selected: s === 300 }, text)),
    );
    const updated = el("span", { class: "muted", "data-testid": "updated-at", "aria-live": "off" }, "Not read yet");
    const failure = el("p", { class: "error", role: "alert" });
    const content = el("div", { "data-testid": "dashboard-content" });
    let stopped = false;
    let timer = null;

    function show(s) {
      samples.push({ at: Date.parse(s.generated_at) || Date.now(), throughput: s.throughput_per_s, lag: totalLag(s.consumer_lag) });
      if (samples.length > MAX_SAMPLES) samples.shift();
      fill(
        content,
        tiles(s),
        el(
          "div",
          { class: "charts" },
          section("Throughput since this page opened (results/s)", history(samples, "throughput", "throughput", COLOURS.line, "/s")),
          section("Consumer lag since this page opened (messages)", history(samples, "lag", "lag", COLOURS.lag, "")),
        ),
        section("Latency per stage", latency(s)),
        el("div", { class: "charts" }, section("Consumer lag per partition", lag(s)), section("Dead letters by reason", deadLetters(s))),
        section("Results by status and model", statuses(s)),
      );
      fill(updated, `Updated at ${new Date().toLocaleTimeString()} · ${plural(s.results, "result")} in the window`);
    }

    async function refresh(mine) {
      try {
        const summary = await api("/api/v1/dashboard/summary", { query: { window_s: windowSelect.value } });
        if (stopped || mine !== run) return; // an answer for the window before the change
        show(summary);
        fill(failure);
      } catch (err) {
        if (!stopped && mine === run) fill(failure, `Could not read the summary: ${problemText(err)}`);
      }
    }

    // One request at a time: the next is planned when the last has answered. A new window starts
    // a new loop; `run` tells an older loop still waiting on its answer to stop there.
    let run = 0;
    async function loop(mine = run) {
      await refresh(mine);
      if (!stopped && mine === run) timer = setTimeout(() => loop(mine), REFRESH_MS);
    }

    windowSelect.addEventListener("change", () => {
      samples.length = 0; // a new window is another measure: its history starts afresh
      clearTimeout(timer);
      run += 1;
      loop();
    });

    fill(
      root,
      el("h1", { id: "page-title" }, "Dashboard"),
      el("div", { class: "row dashboard-bar" }, el("label", {}, "Summarise the", windowSelect), updated),
      failure,
      content,
    );
    await loop();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  },
};
