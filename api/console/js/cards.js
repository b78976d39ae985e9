// A result as a card (Live and Upload): the picture with its boxes, source, status, failed rules
// and the advice, linking to the result's page.

import { drawResult, failingMugs } from "./draw.js";
import { badge, el, fmtTime } from "./ui.js";

export function statusTone(result) {
  if (result.status === "ok") return failingMugs(result).size || failedRules(result).length ? "bad" : "ok";
  if (result.status === "pending") return "";
  return "warn";
}

/** ok results: how many rules failed, else how many mugs are misplaced, else "passes". */
export function statusText(result) {
  if (result.status !== "ok") return result.status;
  const failed = failedRules(result).length;
  if (failed) return `${failed} rule${failed > 1 ? "s" : ""} failed`;
  const misplaced = failingMugs(result).size;
  return misplaced ? `${misplaced} mug${misplaced > 1 ? "s" : ""} misplaced` : "passes";
}

export function failedRules(result) {
  return (result.verdicts || []).filter((v) => v.passed === false);
}

/** The recommendations of a result, one line per mug that has one. */
export function advice(result) {
  return ((result.positioning && result.positioning.mugs) || [])
    .filter((m) => m.recommendation && m.recommendation.text)
    .map((m) => `Mug ${m.index}: ${m.recommendation.text}`); // numbered as verdicts name mugs
}

export function resultCard(result) {
  const canvas = el("canvas", {
    class: "scene",
    role: "img",
    "aria-label": `Picture of ${result.request_id} with its detections`,
  });
  drawResult(canvas, result).catch(() => canvas.setAttribute("aria-label", "The picture could not be shown"));
  const failed = failedRules(result);
  const tips = advice(result);
  return el(
    "article",
    { class: "card", "data-request-id": result.request_id, "data-testid": "result-card" },
    el(
      "a",
      { class: "card-link", href: `#/results/${encodeURIComponent(result.request_id)}` },
      canvas,
      el(
        "div",
        { class: "body" },
        el("div", {}, badge(statusText(result), statusTone(result)), " ", el("strong", {}, result.source_id)),
        el("div", { class: "muted" }, fmtTime(result.completed_at || result.submitted_at)),
        failed.length ? el("div", { class: "bad" }, failed.map((v) => v.name).join(" · ")) : null,
        result.error ? el("div", { class: "bad" }, result.error.message) : null,
        tips.length ? el("div", { class: "advice" }, tips.map((t) => el("div", {}, t))) : null,
        result.coalesced > 1 ? el("div", { class: "muted" }, `latest of ${result.coalesced} results`) : null,
      ),
    ),
  );
}
