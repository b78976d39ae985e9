// History: stored results, filtered by source, status, failed rule, score and time, newest first,
// paged with the API's cursor ("Older results" follows `next_cursor`).

import { api } from "../api.js";
import { failedRules, statusText, statusTone } from "../cards.js";
import { badge, el, field, fill, fmtNumber, fmtTime, problemText, table } from "../ui.js";

const STATUSES = ["", "ok", "rejected", "failed", "expired", "pending"];

/** The worst-placed mug's score, null for a result without mugs. */
function lowestScore(result) {
  const scores = ((result.positioning && result.positioning.mugs) || [])
    .map((m) => m.score)
    .filter((score) => typeof score === "number");
  return scores.length ? Math.min(...scores) : null;
}

function isoOrUndefined(local) {
  return local ? new Date(local).toISOString() : undefined;
}

export default {
  id: "history",
  title: "History",
  permission: "read:analysis",
  nav: true,
  async render(root) {
    const inputs = {
      source_id: el("input", { name: "source_id", size: 16 }),
      status: el("select", { name: "status" }, STATUSES.map((s) => el("option", { value: s }, s || "any"))),
      failed_rule: el("input", { name: "failed_rule", size: 14, placeholder: "rule id" }),
      min_score: el("input", { name: "min_score", type: "number", min: 0, max: 100, step: 1, size: 5 }),
      since: el("input", { name: "since", type: "datetime-local" }),
      until: el("input", { name: "until", type: "datetime-local" }),
    };
    const message = el("p", { class: "error", role: "alert" });
    const results = el("div", { "data-testid": "history-results" });
    const more = el("button", { type: "button", hidden: true }, "Older results");
    let rows = [];
    let cursor = null;

    function query() {
      return {
        source_id: inputs.source_id.value.trim(),
        status: inputs.status.value,
        failed_rule: inputs.failed_rule.value.trim(),
        min_score: inputs.min_score.value,
        since: isoOrUndefined(inputs.since.value),
        until: isoOrUndefined(inputs.until.value),
        limit: 25,
      };
    }

    async function load(next) {
      fill(message);
      try {
        const page = await api("/api/v1/analyze", { query: { ...query(), cursor: next || undefined } });
        rows = next ? [...rows, ...page.items] : page.items;
        cursor = page.next_cursor;
      } catch (err) {
        fill(message, problemText(err));
        return;
      }
      more.hidden = !cursor;
      fill(
        results,
        table(
          [
            { label: "Completed", cell: (r) => fmtTime(r.completed_at || r.submitted_at) },
            { label: "Request", cell: (r) => el("a", { href: `#/results/${encodeURIComponent(r.request_id)}` }, r.request_id) },
            { label: "Source", cell: (r) => r.source_id },
            { label: "Status", cell: (r) => badge(statusText(r), statusTone(r)) },
            { label: "Lowest score", cell: (r) => fmtNumber(lowestScore(r), 0) },
            { label: "Failed rules", cell: (r) => failedRules(r).map((v) => v.name).join(", ") || "—" },
          ],
          rows,
          { empty: "No result matches." },
        ),
      );
    }

    more.addEventListener("click", () => load(cursor));
    const form = el(
      "form",
      { class: "row", onsubmit: (e) => { e.preventDefault(); load(null); } },
      field("Source", inputs.source_id),
      field("Status", inputs.status),
      field("Failed rule", inputs.failed_rule),
      field("Score at least", inputs.min_score),
      field("Since", inputs.since),
      field("Until", inputs.until),
      el("button", { type: "submit", class: "primary" }, "Apply"),
    );
    fill(root, el("h1", { id: "page-title" }, "History"), form, message, results, more);
    await load(null);
  },
};
