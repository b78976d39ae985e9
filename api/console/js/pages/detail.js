// One result: the picture with boxes and labels, each mug's facts in cm, every verdict with what
// was measured against its threshold, the advice, the time each stage took, and the raw JSON.

import { api, imageUrl } from "../api.js";
import { advice, statusText, statusTone } from "../cards.js";
import { drawResult, failingMugs } from "../draw.js";
import { badge, el, fill, fmtNumber, fmtTime, table, toast } from "../ui.js";

function measured(verdict) {
  const unit = verdict.unit || "";
  const value = (v) => (typeof v === "number" ? fmtNumber(v, 1, unit) : fmtNumber(v));
  if (verdict.threshold === null || verdict.threshold === undefined) return value(verdict.measured);
  return `${value(verdict.measured)} (threshold ${value(verdict.threshold)})`;
}

function verdictBadge(verdict) {
  if (verdict.passed === null) return badge("n/a");
  return verdict.passed ? badge("pass", "ok") : badge("fail", "bad");
}

function mugFacts(result) {
  const failing = failingMugs(result);
  const mugs = (result.positioning && result.positioning.mugs) || [];
  return table(
    [
      { label: "Mug", cell: (m) => `${m.index}` },
      { label: "Verdict", cell: (m) => (failing.has(m.index) ? badge("fails", "bad") : badge("passes", "ok")) },
      { label: "On coaster", cell: (m) => fmtNumber(m.on_coaster) },
      { label: "From edge", cell: (m) => fmtNumber(m.edge_distance_cm, 1, "cm") },
      { label: "Nearest hazard", cell: (m) => (m.nearest_hazard ? `${m.nearest_hazard} ${fmtNumber(m.hazard_distance_cm, 1, "cm")}` : "—") },
      { label: "Nearest mug", cell: (m) => fmtNumber(m.nearest_mug_cm, 1, "cm") },
      { label: "Zone", cell: (m) => m.zone || "—" },
      { label: "Score", cell: (m) => fmtNumber(m.score, 0) },
    ],
    mugs,
    { empty: "No mug in this picture." },
  );
}

export default {
  id: "results",
  title: "Result",
  permission: "read:analysis",
  nav: false,
  async render(root, ctx) {
    const [requestId] = ctx.params;
    const result = await api(`/api/v1/analyze/${encodeURIComponent(requestId)}`);
    const canvas = el("canvas", { class: "scene", role: "img", "aria-label": `Picture of ${requestId} with boxes and labels` });
    // The server-rendered JPEG (what a report or an e-mail would carry), shown on request.
    let annotatedUrl = null;
    const annotated = el("figure", { class: "annotated", hidden: true });
    const showAnnotated = el(
      "button",
      {
        type: "button",
        onclick: async () => {
          showAnnotated.disabled = true;
          annotatedUrl = annotatedUrl || (await imageUrl(requestId, { annotated: true }).catch(() => null));
          if (!annotatedUrl) {
            toast("The annotated JPEG could not be made.", { error: true });
            showAnnotated.disabled = false;
            return;
          }
          fill(
            annotated,
            el("img", { class: "scene", src: annotatedUrl, alt: `Annotated JPEG of ${requestId}` }),
            el("figcaption", { class: "muted" }, "As rendered by the server (GET …/image?annotated=true)."),
          );
          annotated.hidden = false;
        },
      },
      "Show the annotated JPEG",
    );
    const tips = advice(result);
    fill(
      root,
      el("h1", { id: "page-title" }, "Result ", el("code", {}, requestId)),
      el(
        "p",
        {},
        badge(statusText(result), statusTone(result)),
        ` ${result.source_id} · ${fmtTime(result.completed_at)}`,
        result.model ? ` · model ${result.model.name} ${result.model.version}` : "",
      ),
      result.error ? el("p", { class: "error" }, `${result.error.reason}: ${result.error.message}`) : null,
      el(
        "div",
        { class: "detail" },
        el(
          "div",
          {},
          canvas,
          el("div", { class: "legend" }, el("span", { class: "ok" }, "passes every rule"), el("span", { class: "bad" }, "fails a rule")),
          result.image && result.image.object_key ? [showAnnotated, annotated] : null,
        ),
        el(
          "div",
          {},
          el("h2", {}, "Advice"),
          tips.length ? el("ul", {}, tips.map((t) => el("li", {}, t))) : el("p", { class: "muted" }, "Nothing to change."),
          el("h2", {}, "Rules"),
          table(
            [
              { label: "Rule", cell: (v) => v.name },
              { label: "Outcome", cell: verdictBadge },
              { label: "Measured", cell: measured },
              { label: "Message", cell: (v) => v.message },
            ],
            result.verdicts || [],
            { empty: "No rule applied." },
          ),
        ),
      ),
      el("h2", {}, "Mugs"),
      mugFacts(result),
      el("h2", {}, "Timings"),
      table(
        [
          { label: "Stage", cell: ([stage]) => stage },
          { label: "Time", cell: ([, ms]) => fmtNumber(ms, 1, "ms") },
        ],
        Object.entries(result.timings_ms || {}).filter(([stage]) => stage !== "batch_size"),
        { empty: "No timings recorded." },
      ),
      result.timings_ms && result.timings_ms.batch_size
        ? el("p", { class: "muted" }, `Inferred in a batch of ${result.timings_ms.batch_size}.`)
        : null,
      result.latency_ms ? el("p", { class: "muted" }, `Submission to result: ${fmtNumber(result.latency_ms, 0, "ms")}`) : null,
      el("details", {}, el("summary", {}, "Raw JSON"), el("pre", { class: "json" }, JSON.stringify(result, null, 2))),
    );
    await drawResult(canvas, result).catch(() => canvas.setAttribute("aria-label", "The picture could not be shown"));
    return () => annotatedUrl && URL.revokeObjectURL(annotatedUrl);
  },
};
