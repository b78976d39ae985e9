// DOM helpers shared by the pages: elements are built, never parsed from strings, so text from
// the API (rule names, messages, source ids) can never become markup.

/** el("a", {href: "#/x", class: "y", onclick: fn}, "text", child, …) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what `node` holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * Run `task` now, then again `ms` after each run has ended: one request at a time however slow
 * the API answers (an interval would pile them up). Resolves, once the first run has ended, to
 * the function that stops it. `task` shows its own errors: one it throws ends the repeats.
 */
export async function repeat(task, ms) {
  let stopped = false;
  let timer = null;
  async function run() {
    await task();
    if (!stopped) timer = setTimeout(run, ms);
  }
  await run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A short message in the corner; errors stay longer. */
export function toast(message, { error = false } = {}) {
  const box = document.getElementById("toast");
  const item = el("div", { class: error ? "error" : "" }, message);
  box.append(item);
  setTimeout(() => item.remove(), error ? 8000 : 3500);
}

/** What a failed call says to a person: the problem's detail and code, never a stack. */
export function problemText(err) {
  if (err && err.problem) {
    const p = err.problem;
    const where = Array.isArray(p.errors) && p.errors.length
      ? ` (${p.errors.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ")})`
      : "";
    return `${p.detail || p.title || "Request failed"}${where}${p.code ? ` [${p.code}]` : ""}`;
  }
  return err && err.message ? err.message : String(err);
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? String(iso) : when.toLocaleString();
}

export function fmtNumber(value, digits = 1, unit = "") {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return String(value);
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

/** A status badge: ok/passed green, failed/rejected red, the rest neutral. */
export function badge(text, tone) {
  return el("span", { class: `badge ${tone || ""}` }, text);
}

/** A table from column specs [{label, cell: (row) => node|text}] and rows. */
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      caption ? el("caption", { class: "muted" }, caption) : null,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.label)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => el("td", {}, c.cell(row)))))),
    ),
  );
}

/** A labelled form control: label text above, the control inside (clickable, accessible). */
export function field(label, control) {
  return el("label", {}, label, control);
}
