// Rules: every rule's newest version, a plain-English editor that says as you type what the
// sentence compiles to (or where it stops making sense), versions, and a back-test over stored
// results. #/rules/<rule_id> opens one rule; write controls appear only for roles that hold them.

import { api, can } from "../api.js";
import { barChart } from "../chart.js";
import { badge, el, field, fill, fmtNumber, fmtTime, problemText, table, toast } from "../ui.js";

const PARSE_DELAY_MS = 300; // a pause in typing, not every keystroke, asks the server
const DEFAULT_LAST = 100;
const COLOURS = { passed: "#1f9d4c", failed: "#d7263d", notApplicable: "#9aa3ad", errors: "#a15c00" };
// Sentences the parser understands (core/rules/parser.py EXAMPLES), as starting points.
const EXAMPLES = [
  "Every mug must be on a coaster.",
  "Mugs must be at least 5 cm from the table edge.",
  "No mug within 10 cm of a laptop.",
  "At most 2 mugs per table.",
  "If a mug is off its coaster and within 3 cm of the edge, alert (critical).",
  "No mug off its coaster for more than 30 seconds (critical).",
];
const OPS = { "<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "is", "!=": "is not" };
const SCOPES = { mug: "each mug", scene: "the scene", detection: "each detection" };
const MODES = { must_hold: "must hold (fails when the conditions do not)", flag_when: "flagged when the conditions hold" };

function ruleLink(ruleId) {
  return el("a", { href: `#/rules/${encodeURIComponent(ruleId)}` }, el("code", {}, ruleId));
}

function stateBadge(spec) {
  return spec.enabled ? badge("enabled", "ok") : badge("disabled", "warn");
}

function severityBadge(severity) {
  const tone = { critical: "bad", high: "bad", medium: "warn", warning: "warn" }[severity] || "";
  return badge(severity, tone);
}

/** The list: newest version of every rule; the open one marked for screen readers too. */
function rulesTable(rules, openId) {
  return table(
    [
      { label: "Rule", cell: (r) => ruleLink(r.rule_id) },
      {
        label: "Name",
        cell: (r) => el("span", { "aria-current": r.rule_id === openId ? "true" : null, class: r.rule_id === openId ? "open" : null }, r.rule.name),
      },
      { label: "Version", cell: (r) => String(r.version) },
      { label: "State", cell: (r) => stateBadge(r.rule) },
      { label: "Severity", cell: (r) => severityBadge(r.rule.severity) },
      { label: "Changed", cell: (r) => `${fmtTime(r.created_at)} by ${r.created_by}` },
    ],
    rules,
    { empty: "No rules yet." },
  );
}

/** One comparison as words: "hazard distance (laptop) ≤ 10 cm". Percentages are stored as fractions. */
function leafText(leaf) {
  const fact = leaf.fact.replaceAll("_", " ") + (leaf.target ? ` (${leaf.target})` : "");
  let value = String(leaf.value);
  if (typeof leaf.value === "number") value = leaf.unit === "%" ? `${+(leaf.value * 100).toFixed(4)}` : `${leaf.value}`;
  const unit = leaf.unit === "%" ? "%" : leaf.unit ? ` ${leaf.unit}` : "";
  return `${fact} ${OPS[leaf.op] || leaf.op} ${value}${unit}`;
}

/** A condition group as a nested list, so "all of / any of / not" nesting is visible. */
function conditionTree(group) {
  const any = group.logic === "any";
  let head = any ? "any of:" : "all of:";
  if (group.conditions.length === 1) head = group.negate ? "not:" : null;
  else if (group.negate) head = any ? "none of:" : "not all of:";
  return el(
    "div",
    { class: "conditions" },
    head ? el("span", {}, head) : null,
    el("ul", {}, group.conditions.map((c) => el("li", {}, c.conditions ? conditionTree(c) : el("code", {}, leafText(c))))),
  );
}

function holdText(hold) {
  if (!hold) return null;
  if (hold.seconds !== null && hold.seconds !== undefined) return `${hold.seconds} s of frame time`;
  return `${hold.frames} consecutive frame${hold.frames === 1 ? "" : "s"}`;
}

function actionText(action) {
  const params = Object.entries(action.params || {}).map(([k, v]) => `${k}=${v}`);
  return params.length ? `${action.type} (${params.join(", ")})` : action.type;
}

/** What a rule compiles to, as a definition list a person can check, plus the raw JSON. */
function structure(spec) {
  const rows = [
    ["Applies to", SCOPES[spec.scope] || spec.scope],
    ["Mode", MODES[spec.mode] || spec.mode],
    ["Kind", spec.type],
    ["Severity", severityBadge(spec.severity)],
    ["Conditions", conditionTree(spec.conditions)],
    ["Must last", holdText(spec.hold)],
    ["Actions", spec.actions && spec.actions.length ? spec.actions.map(actionText).join(", ") : null],
    ["Tags", spec.tags && spec.tags.length ? spec.tags.join(", ") : null],
    ["Enabled", spec.enabled ? "yes" : "no"],
  ].filter(([, value]) => value !== null && value !== undefined);
  return el(
    "div",
    { class: "rule-structure" },
    el("dl", {}, rows.map(([name, value]) => [el("dt", {}, name), el("dd", {}, value)])),
    el("details", {}, el("summary", {}, "Raw JSON"), el("pre", { class: "json" }, JSON.stringify(spec, null, 2))),
  );
}

/**
 * A sentence the parser stopped in: the column, the sentence with a caret under that column,
 * what it expected there and the closest supported phrasing (with a button to take it).
 */
function syntaxError(problem, { onUse, onLocate }) {
  const sentence = problem.sentence || "";
  const column = Number(problem.column) || 1;
  const expected = Array.isArray(problem.expected) && problem.expected.length ? problem.expected : null;
  return el(
    "div",
    { class: "parse-error", role: "alert", "data-testid": "parse-error" },
    el("p", { class: "error" }, el("strong", {}, `Not understood at column ${column}.`), expected ? ` Expected: ${expected.join(", ")}.` : ""),
    el(
      "pre",
      { class: "caret", "data-testid": "rule-caret", "aria-label": `The rule with a marker under column ${column}` },
      `${sentence}\n${" ".repeat(column - 1)}`,
      el("span", { class: "caret-mark" }, "^"),
    ),
    el(
      "p",
      { class: "row" },
      el("button", { type: "button", onclick: onLocate }, `Go to column ${column}`),
      problem.suggestion
        ? [
            el("span", {}, "Closest supported phrasing: ", el("q", { "data-testid": "suggestion" }, problem.suggestion)),
            el("button", { type: "button", onclick: () => onUse(problem.suggestion) }, "Use this phrasing"),
          ]
        : null,
    ),
  );
}

/** The rule's versions, newest first; any one can be loaded into the editor as a starting point. */
function versionsTable(versions, onLoad) {
  return table(
    [
      { label: "Version", cell: (v) => String(v.version) },
      { label: "Saved", cell: (v) => `${fmtTime(v.created_at)} by ${v.created_by}` },
      { label: "State", cell: (v) => stateBadge(v.rule) },
      { label: "Explanation", cell: (v) => v.explanation },
      {
        label: "Editor",
        // A rule stored as JSON has no sentence (description) to edit.
        cell: (v) =>
          v.rule.description
            ? el("button", { type: "button", onclick: () => onLoad(v), "aria-label": `Load version ${v.version} into the editor` }, "Load")
            : el("span", { class: "muted" }, "JSON rule"),
      },
    ],
    versions,
    { caption: "Newest first", empty: "No versions." },
  );
}

/** Pass/fail counts as bars, one per outcome, each in its colour; the label says the numbers. */
function outcomeChart(report) {
  const outcomes = [
    ["Passed", "passed", report.passed, COLOURS.passed],
    ["Failed", "failed", report.failed, COLOURS.failed],
    ["Not applicable", "not applicable", report.not_applicable, COLOURS.notApplicable],
    ["Errors", "errors", report.errors, COLOURS.errors],
  ];
  return barChart({
    labels: outcomes.map(([label]) => label),
    series: outcomes.map(([, name, value, colour], i) => ({
      name,
      colour,
      values: outcomes.map((_, j) => (i === j ? value : 0)),
    })),
    label: `Back-test of ${report.rule_id} version ${report.version} over ${report.evaluated} results: ${report.passed} passed, ${report.failed} failed, ${report.not_applicable} not applicable, ${report.errors} errors`,
    height: 200,
  });
}

function exampleLinks(ids) {
  if (!ids.length) return "—";
  return ids.map((id, i) => [i ? ", " : "", el("a", { href: `#/results/${encodeURIComponent(id)}` }, id)]);
}

function backtestReport(report) {
  if (!report.evaluated) {
    return el("p", { class: "muted", "data-testid": "backtest-summary" }, "No stored result carries positioning facts yet: there is nothing to test the rule against.");
  }
  const rate = report.passed + report.failed ? (100 * report.passed) / (report.passed + report.failed) : null;
  const rows = [
    ["Results evaluated", String(report.evaluated)],
    ["Passed", String(report.passed)],
    ["Failed", String(report.failed)],
    ["Not applicable", String(report.not_applicable)],
    ["Errors", String(report.errors)],
    ["Pass rate", rate === null ? "—" : fmtNumber(rate, 0, "%")],
    ["Failed, e.g.", exampleLinks(report.failed_examples)],
    ["Passed, e.g.", exampleLinks(report.passed_examples)],
  ];
  return el(
    "div",
    {},
    el("dl", { class: "backtest-summary", "data-testid": "backtest-summary" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    report.error ? el("p", { class: "error", role: "alert" }, `The rule raised on some results: ${report.error}`) : null,
    outcomeChart(report),
  );
}

/** The back-test form: how many of the newest results, then summary and chart. */
function backtestPanel(rule) {
  const last = el("input", { type: "number", name: "last", min: 1, max: 10000, step: 1, value: DEFAULT_LAST, required: true });
  const run = el("button", { type: "submit" }, "Run backtest");
  const out = el("div", { class: "backtest-out", "aria-live": "polite" });
  const form = el(
    "form",
    {
      class: "row",
      onsubmit: async (event) => {
        event.preventDefault();
        run.disabled = true;
        fill(out, el("p", { class: "muted" }, "Testing…"));
        try {
          const report = await api(`/api/v1/rules/${encodeURIComponent(rule.rule_id)}/backtest`, {
            method: "POST",
            query: { last: last.value, version: rule.version },
          });
          fill(out, backtestReport(report));
        } catch (err) {
          fill(out, el("p", { class: "error", role: "alert" }, problemText(err)));
        } finally {
          run.disabled = false;
        }
      },
    },
    field("Newest results to test", last),
    run,
  );
  return el(
    "section",
    { class: "panel", "aria-labelledby": "backtest-title" },
    el("h2", { id: "backtest-title" }, "Backtest"),
    el("p", { class: "muted" }, `Version ${rule.version} against the facts stored with past results (nothing is re-analysed).`),
    form,
    out,
  );
}

/** The open rule (or why it cannot be shown: unknown, unreadable). */
async function loadRule(ruleId) {
  try {
    const [rule, versions] = await Promise.all([
      api(`/api/v1/rules/${encodeURIComponent(ruleId)}`),
      api(`/api/v1/rules/${encodeURIComponent(ruleId)}/versions`),
    ]);
    return { rule, versions };
  } catch (err) {
    return { error: err };
  }
}

export default {
  id: "rules",
  title: "Rules",
  permission: "read:rules",
  nav: true,
  async render(root, ctx) {
    const [openId] = ctx.params;
    const [rules, open] = await Promise.all([api("/api/v1/rules"), openId ? loadRule(openId) : null]);
    const rule = open && open.rule;
    let timer = null;
    let pending = null; // the parse request in flight; a newer keystroke aborts it

    const text = el("textarea", {
      id: "rule-text",
      name: "text",
      rows: 3,
      maxlength: 500,
      spellcheck: "true",
      placeholder: EXAMPLES[0],
      "aria-describedby": "rule-feedback",
      oninput: () => schedule(),
    });
    const feedback = el("div", { id: "rule-feedback", class: "rule-feedback", "aria-live": "polite" });
    const actionError = el("div", { class: "action-error" });

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(check, PARSE_DELAY_MS);
    }

    function setText(value) {
      text.value = value;
      text.focus();
      schedule();
    }

    /** Selects the character the parser stopped at (the server strips the sentence first). */
    function locate(problem) {
      const start = Math.max(0, text.value.indexOf(problem.sentence || ""));
      const at = Math.min(text.value.length, start + (Number(problem.column) || 1) - 1);
      text.focus();
      text.setSelectionRange(at, Math.min(text.value.length, at + 1));
    }

    async function check() {
      pending?.abort();
      if (!text.value.trim()) {
        pending = null;
        fill(feedback, el("p", { class: "muted" }, "Write a rule in plain English; what it means appears here as you type."));
        return;
      }
      const mine = new AbortController();
      pending = mine;
      try {
        const parsed = await api("/api/v1/rules/parse", { method: "POST", json: { text: text.value }, signal: mine.signal });
        if (pending !== mine) return;
        fill(
          feedback,
          el("div", { class: "parse-ok", "data-testid": "parse-ok" }, el("p", {}, badge("understood", "ok"), " ", el("span", { "data-testid": "explanation" }, parsed.explanation)), structure(parsed.rule)),
        );
      } catch (err) {
        if (mine.signal.aborted || pending !== mine) return; // a newer sentence is being checked
        const problem = err.problem || {};
        fill(
          feedback,
          problem.code === "rule_syntax"
            ? syntaxError(problem, { onUse: setText, onLocate: () => locate(problem) })
            : el("p", { class: "error", role: "alert", "data-testid": "parse-error" }, problemText(err)),
        );
      }
    }

    /** Create / save / disable / enable: a toast when done, the error beside the buttons. */
    async function act(button, work) {
      button.disabled = true;
      fill(actionError);
      try {
        const saved = await work();
        ctx.navigate(`#/rules/${encodeURIComponent(saved.rule_id)}`);
      } catch (err) {
        fill(actionError, el("p", { class: "error", role: "alert" }, problemText(err)));
        button.disabled = false;
      }
    }

    const buttons = [];
    if (can("write:rules")) {
      const create = el("button", { type: "button", class: rule ? null : "primary" }, "Create rule");
      create.addEventListener("click", () =>
        act(create, async () => {
          const made = await api("/api/v1/rules", { method: "POST", json: { text: text.value } });
          toast(`Created ${made.rule_id} (version ${made.version}).`);
          return made;
        }),
      );
      buttons.push(create);
    }
    // A rule that cannot be read (409) can still be replaced by a new version.
    const editable = openId && (rule || (open.error && open.error.status === 409));
    if (editable && can("write:rules")) {
      const save = el("button", { type: "button", class: "primary" }, "Save as new version");
      save.addEventListener("click", () =>
        act(save, async () => {
          const saved = await api(`/api/v1/rules/${encodeURIComponent(openId)}`, { method: "PUT", json: { text: text.value } });
          toast(`Saved ${saved.rule_id} as version ${saved.version}.`);
          return saved;
        }),
      );
      buttons.push(save);
    }
    if (rule && rule.rule.enabled && can("delete:rules")) {
      const disable = el("button", { type: "button", class: "danger" }, "Disable rule");
      disable.addEventListener("click", () =>
        act(disable, async () => {
          const done = await api(`/api/v1/rules/${encodeURIComponent(rule.rule_id)}`, { method: "DELETE" });
          toast(`Disabled ${done.rule_id} (version ${done.version}); its history is kept.`);
          return done;
        }),
      );
      buttons.push(disable);
    }
    if (rule && !rule.rule.enabled && can("write:rules")) {
      // No enable route: a new version of the same rule with `enabled` set again.
      const enable = el("button", { type: "button" }, "Enable rule");
      enable.addEventListener("click", () =>
        act(enable, async () => {
          const done = await api(`/api/v1/rules/${encodeURIComponent(rule.rule_id)}`, {
            method: "PUT",
            json: { rule: { ...rule.rule, enabled: true } },
          });
          toast(`Enabled ${done.rule_id} (version ${done.version}).`);
          return done;
        }),
      );
      buttons.push(enable);
    }

    const editor = el(
      "section",
      { class: "panel rules-editor", "aria-labelledby": "editor-title" },
      el("h2", { id: "editor-title" }, rule ? ["Edit ", el("code", {}, rule.rule_id)] : "Write a rule"),
      field("Rule in plain English", text),
      el(
        "details",
        { class: "examples" },
        el("summary", {}, "Examples"),
        el("ul", {}, EXAMPLES.map((e) => el("li", {}, el("button", { type: "button", class: "link", onclick: () => setText(e) }, e)))),
      ),
      feedback,
      buttons.length
        ? el("div", { class: "row actions" }, buttons, openId ? el("a", { href: "#/rules" }, "New rule instead") : null)
        : el("p", { class: "muted" }, "Your role can try sentences and back-test rules, not save them."),
      actionError,
    );

    fill(
      root,
      el("h1", { id: "page-title" }, "Rules"),
      el(
        "div",
        { class: "rules-layout" },
        el("section", { class: "panel rules-list", "aria-labelledby": "list-title" }, el("h2", { id: "list-title" }, "All rules"), rulesTable(rules, openId)),
        editor,
        openId ? openPanel(open, openId, (v) => setText(v.rule.description)) : null,
      ),
    );
    if (rule) text.value = rule.rule.description; // empty for a rule stored as JSON
    check();

    return () => {
      clearTimeout(timer);
      pending?.abort();
    };
  },
};

/** The open rule: its explanation, versions and the back-test (or why it cannot be shown). */
function openPanel(open, ruleId, onLoad) {
  if (open.error) {
    return el(
      "section",
      { class: "panel rules-open" },
      el("h2", {}, el("code", {}, ruleId)),
      el("p", { class: "error", role: "alert" }, problemText(open.error)),
    );
  }
  const { rule, versions } = open;
  return el(
    "div",
    { class: "rules-open" },
    el(
      "section",
      { class: "panel", "aria-labelledby": "open-title" },
      el("h2", { id: "open-title" }, rule.rule.name),
      el("p", {}, el("code", {}, rule.rule_id), " · version ", String(rule.version), " ", stateBadge(rule.rule), " ", severityBadge(rule.rule.severity)),
      el("p", { "data-testid": "open-explanation" }, rule.explanation),
      el("h3", {}, "Versions"),
      versionsTable(versions, onLoad),
    ),
    backtestPanel(rule),
  );
}
