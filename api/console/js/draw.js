// Boxes drawn in the browser from a result's detections, over the stored original: no annotated
// JPEG is rendered per card. Mugs are green when they pass every rule, red when one fails.

import { imageUrl } from "./api.js";
// A mug's failing checks in the words the annotated JPEG uses: served by the API from
// core.positioning (api.routes.console), not kept here.
import { CHECK_WORDS } from "./words.js";

export const COLOURS = { pass: "#1f9d4c", fail: "#d7263d", coaster: "#2f6fdf", hazard: "#e08a00", other: "#7d8794" };

/** Which mugs (positioning indexes) fail: their own failing facts or a failed rule on them. */
export function failingMugs(result) {
  const failing = new Set();
  for (const verdict of result.verdicts || []) {
    if (verdict.passed === false) for (const index of verdict.subjects || []) failing.add(index);
  }
  for (const mug of (result.positioning && result.positioning.mugs) || []) {
    if (mug.failing && mug.failing.length) failing.add(mug.index);
  }
  return failing;
}

/** Why each failing mug fails, in a few words: its own checks, then the rules that failed for
 * it, each once (the annotated JPEG's caption says the same: api.routes.analyze._reason). */
export function mugReasons(result) {
  const rules = new Map();
  for (const verdict of result.verdicts || []) {
    if (verdict.passed !== false) continue;
    for (const index of verdict.subjects || []) {
      rules.set(index, [...(rules.get(index) || []), verdict.name || verdict.rule_id]);
    }
  }
  const reasons = new Map();
  for (const mug of (result.positioning && result.positioning.mugs) || []) {
    const checks = (mug.failing || []).map((f) => CHECK_WORDS[f] || f);
    const parts = [...new Set([...checks, ...(rules.get(mug.index) || [])])];
    if (parts.length) reasons.set(mug.index, parts);
  }
  return reasons;
}

/** What to draw: [{box, colour, label, reason}] in original pixels. */
export function shapes(result) {
  const out = [];
  const mugs = (result.positioning && result.positioning.mugs) || [];
  const failing = failingMugs(result);
  const reasons = mugReasons(result);
  for (const d of result.detections || []) {
    if (d.role === "mug" && mugs.length) continue; // drawn from the positioning facts below
    const colour = d.role === "coaster" ? COLOURS.coaster
      : d.role === "hazard" ? COLOURS.hazard
      : COLOURS.other;
    out.push({ box: d.box, colour, label: `${d.class_name} ${Math.round(d.confidence * 100)}%` });
  }
  for (const mug of mugs) {
    const bad = failing.has(mug.index);
    out.push({
      box: mug.box,
      colour: bad ? COLOURS.fail : COLOURS.pass,
      label: `mug ${mug.index}`, // as verdicts, alerts and the annotated JPEG name it
      reason: bad ? (reasons.get(mug.index) || []).join(", ") : "",
      mug: mug.index,
      failing: bad,
    });
  }
  return out;
}

/** A shape's caption: its label, and why when its mug fails. */
function caption(shape) {
  return shape.reason ? `${shape.label}: ${shape.reason}` : shape.label;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image could not be shown"));
    image.src = url;
  });
}

/**
 * Draw `result` onto `canvas`: its stored image, then the boxes, with line width and labels
 * scaled to the picture so they stay readable when the canvas is shown small. Resolves to false
 * when there is no stored image (the canvas then says so).
 */
export async function drawResult(canvas, result) {
  const url = result.image && result.image.object_key ? await imageUrl(result.request_id) : null;
  const context = canvas.getContext("2d");
  if (!url) {
    canvas.width = 480;
    canvas.height = 120;
    context.fillStyle = "#e9edf1";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#5b6470";
    context.font = "16px sans-serif";
    context.fillText("No stored image", 16, 64);
    return false;
  }
  try {
    const image = await loadImage(url);
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    context.drawImage(image, 0, 0);
  } finally {
    URL.revokeObjectURL(url);
  }
  const side = Math.min(canvas.width, canvas.height);
  const line = Math.max(2, Math.round(side * 0.006));
  const font = Math.max(12, Math.round(side * 0.035));
  context.lineWidth = line;
  context.font = `600 ${font}px sans-serif`;
  context.textBaseline = "top";
  const drawn = shapes(result);
  for (const shape of drawn) {
    const [x0, y0, x1, y1] = shape.box;
    context.strokeStyle = shape.colour;
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = caption(shape);
    const width = context.measureText(text).width + font * 0.5;
    const top = y0 - font * 1.3 >= 0 ? y0 - font * 1.3 : y1;
    const left = Math.min(Math.max(0, x0), Math.max(0, canvas.width - width));
    context.fillStyle = shape.colour;
    context.fillRect(left, top, width, font * 1.3);
    context.fillStyle = "#fff";
    context.fillText(text, left + font * 0.25, top + font * 0.15);
  }
  // What a screen reader says of the picture: the captions drawn, in the order drawn.
  const said = drawn.length ? drawn.map(caption).join("; ") : "nothing found";
  canvas.setAttribute("aria-label", `Picture of ${result.request_id}: ${said}`);
  canvas.dataset.shapes = String(drawn.length); // what the browser tests read
  canvas.dataset.mugs = String(drawn.filter((s) => s.mug !== undefined).length);
  return true;
}
