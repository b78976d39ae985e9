// Sources: the cameras images come from. The list shows each one's settings version and, when a
// stream is registered for it, the stream's health (refreshed every 5 s). A source's own page
// (#/sources/<id>) shows its newest frame, and lets the roles that may write sources calibrate it
// by clicking four points on that frame, draw named zones on it, choose its rules, model and
// sampling, and set or remove its camera stream. Every save is a PUT of the whole source (a new
// version): the API validates it and refuses a calibration it cannot use, with the reason shown.

import { api, can } from "../api.js";
import { drawResult } from "../draw.js";
import { badge, el, field, fill, fmtNumber, fmtTime, problemText, repeat, table, toast } from "../ui.js";

const REFRESH_MS = 5000;
// Health reported longer ago than this means no streams service is reading the stream.
const STALE_S = 10;
const SOURCE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
// The four calibration points in the order core/sources/spec.py names them.
const CORNERS = [
  ["A", "far left"],
  ["B", "far right"],
  ["C", "near right"],
  ["D", "near left"],
];
const DISTANCES = [
  ["ab", "A to B"],
  ["bc", "B to C"],
  ["cd", "C to D"],
  ["da", "D to A"],
  ["ac", "A to C (diagonal)"],
  ["bd", "B to D (diagonal, optional check)"],
];
const INK = { calibration: "#d61fd6", zone: "#ff8c00", draft: "#ffd400" };

const enc = encodeURIComponent;
const sourcePath = (id) => `/api/v1/sources/${enc(id)}`;

/** A number typed in an input, or null when it is empty or not a number. */
function num(input) {
  if (input.value.trim() === "") return null;
  const value = Number(input.value);
  return Number.isFinite(value) ? value : null;
}

function numberInput(attrs = {}) {
  return el("input", { type: "number", step: "any", inputmode: "decimal", ...attrs });
}

function deepCopy(value) {
  return JSON.parse(JSON.stringify(value));
}

// ---------------------------------------------------------------------------------------------
// Stream health, shared by the list and a source's page.

function healthAge(health) {
  return health ? (Date.now() - new Date(health.updated_at).getTime()) / 1000 : null;
}

function isStale(health) {
  return Boolean(health) && healthAge(health) > STALE_S;
}

function stateBadge(stream) {
  if (!stream) return el("span", { class: "muted" }, "no stream");
  if (!stream.health) return badge("not picked up yet", "warn");
  const tone = { connected: "ok", connecting: "warn", reconnecting: "warn" }[stream.health.state] || "bad";
  return badge(stream.health.state, tone);
}

function staleBadge(stream) {
  if (!stream || !stream.health) return "—";
  return isStale(stream.health)
    ? badge(`stale: last report ${fmtTime(stream.health.updated_at)}`, "bad")
    : badge("reporting", "ok");
}

// ---------------------------------------------------------------------------------------------
// The list page.

function sourceRows(sources, streams) {
  const rows = new Map(sources.map((s) => [s.source_id, { id: s.source_id, source: s, stream: null }]));
  for (const stream of streams) {
    const row = rows.get(stream.source_id) || { id: stream.source_id, source: null, stream: null };
    row.stream = stream;
    rows.set(stream.source_id, row);
  }
  return [...rows.values()].sort((a, b) => a.id.localeCompare(b.id));
}

function sourcesTable(rows) {
  return table(
    [
      { label: "Source", cell: (r) => el("a", { href: `#/sources/${enc(r.id)}` }, r.id) },
      { label: "Name", cell: (r) => (r.source ? r.source.source.name || "—" : el("span", { class: "muted" }, "not registered")) },
      { label: "Version", cell: (r) => (r.source ? String(r.source.version) : "—") },
      { label: "Changed", cell: (r) => (r.source ? `${fmtTime(r.source.created_at)} by ${r.source.created_by}` : "—") },
      { label: "Stream", cell: (r) => stateBadge(r.stream) },
      { label: "FPS", cell: (r) => fmtNumber(r.stream?.health?.fps, 1) },
      { label: "Last frame", cell: (r) => fmtTime(r.stream?.health?.last_frame_at) },
      { label: "Reconnects", cell: (r) => fmtNumber(r.stream?.health?.reconnects, 0) },
      { label: "Health", cell: (r) => staleBadge(r.stream) },
    ],
    rows,
    { caption: "Sources and their camera streams, refreshed every 5 s", empty: "No sources yet." },
  );
}

/** New source: id and name. An existing id is refused here, since a PUT would replace it. */
function createForm(navigate) {
  const id = el("input", { name: "source_id", required: true, maxlength: 128, autocomplete: "off", spellcheck: "false" });
  const name = el("input", { name: "name", maxlength: 200, autocomplete: "off" });
  const error = el("p", { class: "error", role: "alert" });
  const submit = el("button", { type: "submit", class: "primary" }, "Create source");
  async function create(event) {
    event.preventDefault();
    fill(error);
    const sourceId = id.value.trim();
    if (!SOURCE_ID.test(sourceId)) {
      fill(error, "A source id is 1 to 128 letters, digits and _ . : - (starting with a letter or digit).");
      return;
    }
    submit.disabled = true;
    try {
      if (await exists(sourceId)) {
        fill(error, `A source ${sourceId} exists already: open it from the list to change it.`);
        return;
      }
      await api(sourcePath(sourceId), { method: "PUT", json: { name: name.value.trim() } });
      toast(`Created source ${sourceId}`);
      navigate(`#/sources/${enc(sourceId)}`);
    } catch (err) {
      fill(error, problemText(err));
    } finally {
      submit.disabled = false;
    }
  }
  return el(
    "form",
    { class: "panel", "aria-labelledby": "new-source-title", onsubmit: create },
    el("h2", { id: "new-source-title" }, "New source"),
    el("div", { class: "row" }, field("Source id", id), field("Name", name), submit),
    error,
  );
}

async function exists(sourceId) {
  try {
    await api(sourcePath(sourceId));
    return true;
  } catch (err) {
    if (err.status === 404) return false;
    throw err;
  }
}

async function renderList(root, { navigate }) {
  const list = el("div", {});
  const error = el("p", { class: "error", role: "alert" });
  fill(
    root,
    el("h1", { id: "page-title" }, "Sources"),
    can("write:sources") ? createForm(navigate) : null,
    el("h2", {}, "Sources"),
    error,
    list,
  );
  let stopped = false;
  async function refresh() {
    try {
      const [sources, streams] = await Promise.all([api("/api/v1/sources"), api("/api/v1/streams")]);
      if (stopped) return;
      // Keep a keyboard user's place: the refreshed table gets the focus its link had.
      const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
      fill(list, sourcesTable(sourceRows(sources, streams)));
      if (focused) [...list.querySelectorAll("a")].find((a) => a.getAttribute("href") === focused)?.focus();
      fill(error);
    } catch (err) {
      if (!stopped) fill(error, problemText(err));
    }
  }
  const stop = await repeat(refresh, REFRESH_MS);
  return () => {
    stopped = true;
    stop();
  };
}

// ---------------------------------------------------------------------------------------------
// A source's page: the frame and its overlay.

/** The image pixel under a click, whatever size the canvas is shown at. */
function imagePoint(canvas, event) {
  const box = canvas.getBoundingClientRect();
  const x = ((event.clientX - box.left) * canvas.width) / box.width;
  const y = ((event.clientY - box.top) * canvas.height) / box.height;
  return [Math.round(Math.min(Math.max(x, 0), canvas.width)), Math.round(Math.min(Math.max(y, 0), canvas.height))];
}

/** The calibration's four points on the table plane (cm), as core/positioning/perspective.py
 * places them: A at the origin, B along x, C towards the camera. */
function planePoints(calibration) {
  if (calibration.rectangle_cm) {
    const [w, d] = calibration.rectangle_cm;
    return [[0, 0], [w, 0], [w, d], [0, d]];
  }
  const { ab, bc, cd, da, ac } = calibration.distances_cm;
  const cx = (ab * ab + ac * ac - bc * bc) / (2 * ab);
  const c = [cx, Math.sqrt(Math.max(ac * ac - cx * cx, 0))];
  const along = [c[0] / ac, c[1] / ac];
  const across = [-along[1], along[0]];
  const t = (ac * ac + da * da - cd * cd) / (2 * ac);
  const h = Math.sqrt(Math.max(da * da - t * t, 0));
  return [[0, 0], [ab, 0], c, [along[0] * t + across[0] * h, along[1] * t + across[1] * h]];
}

/** Solve the 8x8 system `a`·h = `b` (Gaussian elimination); null when it is singular. */
function solve(a, b) {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let col = 0; col < n; col += 1) {
    let pivot = col;
    for (let r = col + 1; r < n; r += 1) if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    if (Math.abs(m[pivot][col]) < 1e-12) return null;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let r = 0; r < n; r += 1) {
      if (r === col) continue;
      const f = m[r][col] / m[col][col];
      for (let k = col; k <= n; k += 1) m[r][k] -= f * m[col][k];
    }
  }
  return m.map((row, i) => row[n] / row[i]);
}

/** A function from table cm to picture px for the stored calibration (to draw zones given in
 * cm), or null without one. Drawing only: the API computes the real mapping. */
function planeToImage(calibration) {
  if (!calibration) return null;
  if (calibration.kind === "scale") return ([x, y]) => [x * calibration.px_per_cm, y * calibration.px_per_cm];
  const plane = planePoints(calibration);
  const rows = [];
  const values = [];
  plane.forEach(([X, Y], i) => {
    const [x, y] = calibration.image_points[i];
    rows.push([X, Y, 1, 0, 0, 0, -x * X, -x * Y], [0, 0, 0, X, Y, 1, -y * X, -y * Y]);
    values.push(x, y);
  });
  const h = solve(rows, values);
  if (!h) return null;
  return ([X, Y]) => {
    const w = h[6] * X + h[7] * Y + 1;
    return w > 0 ? [(h[0] * X + h[1] * Y + h[2]) / w, (h[3] * X + h[4] * Y + h[5]) / w] : null;
  };
}

/** A zone's corners in picture px, or null when they cannot be placed on it. */
function zoneInPicture(zone, toImage) {
  if (zone.unit === "px") return zone.polygon;
  if (!toImage) return null;
  const points = zone.polygon.map(toImage);
  return points.every(Boolean) ? points : null;
}

/** Markers for the calibration points, the zones and the zone being drawn. */
function drawOverlay(overlay, state) {
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  const side = Math.min(overlay.width, overlay.height);
  const line = Math.max(2, Math.round(side * 0.005));
  const radius = Math.max(5, Math.round(side * 0.012));
  const font = Math.max(12, Math.round(side * 0.03));
  context.lineWidth = line;
  context.font = `700 ${font}px sans-serif`;
  context.textBaseline = "bottom";
  // cm zones are placed with the stored calibration, which is what the analysis uses.
  const toImage = planeToImage(state.stored?.source.calibration || null);
  for (const [name, zone] of Object.entries(state.zones)) {
    const points = zoneInPicture(zone, toImage);
    if (!points) continue;
    polygon(context, points, INK.zone, { closed: true, filled: true });
    const middle = [0, 1].map((k) => points.reduce((sum, p) => sum + p[k], 0) / points.length);
    label(context, name, [middle[0] - context.measureText(name).width / 2, middle[1]], INK.zone, font);
  }
  if (state.draft.length) {
    polygon(context, state.draft, INK.draft, { dash: [line * 3, line * 2] });
    for (const point of state.draft) dot(context, point, radius * 0.7, INK.draft);
  }
  const set = state.points.filter(Boolean);
  if (set.length === 4) polygon(context, state.points, INK.calibration, { closed: true });
  state.points.forEach((point, i) => {
    if (!point) return;
    dot(context, point, radius, INK.calibration);
    label(context, CORNERS[i][0], [point[0] + radius, point[1] - radius], INK.calibration, font);
  });
  overlay.dataset.points = String(set.length);
  overlay.dataset.draft = String(state.draft.length);
}

/** A zone is filled lightly; the calibration quad only outlined, so zones inside it show. */
function polygon(context, points, colour, { closed = false, filled = false, dash = [] }) {
  context.save();
  context.setLineDash(dash);
  context.strokeStyle = colour;
  context.beginPath();
  points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  if (closed) context.closePath();
  if (filled) {
    context.globalAlpha = 0.18;
    context.fillStyle = colour;
    context.fill();
    context.globalAlpha = 1;
  }
  context.stroke();
  context.restore();
}

function dot(context, [x, y], radius, colour) {
  context.beginPath();
  context.arc(x, y, radius, 0, Math.PI * 2);
  context.fillStyle = colour;
  context.fill();
  context.lineWidth = Math.max(1, radius / 3);
  context.strokeStyle = "#000";
  context.stroke();
}

function label(context, text, [x, y], colour, font) {
  const width = context.measureText(text).width + font * 0.4;
  context.fillStyle = "rgba(0, 0, 0, 0.65)";
  context.fillRect(x, y - font * 1.2, width, font * 1.2);
  context.fillStyle = colour;
  context.fillText(text, x + font * 0.2, y);
}

// ---------------------------------------------------------------------------------------------
// Read-only summaries (every role), also shown to writers beside their forms.

function describeCalibration(calibration) {
  if (!calibration) return "None: the scale is guessed from coasters and mugs in each picture.";
  if (calibration.kind === "scale") return `One scale for the whole picture: ${calibration.px_per_cm} px per cm.`;
  const points = calibration.image_points.map((p, i) => `${CORNERS[i][0]} (${p[0]}, ${p[1]})`).join(", ");
  const size = calibration.rectangle_cm
    ? `a rectangle of ${calibration.rectangle_cm[0]} × ${calibration.rectangle_cm[1]} cm${calibration.table_top ? " (the table top)" : ""}`
    : `distances ${DISTANCES.filter(([key]) => calibration.distances_cm[key] != null)
        .map(([key]) => `${key.toUpperCase()} ${calibration.distances_cm[key]} cm`)
        .join(", ")}`;
  return `Four points: ${points}; ${size}.`;
}

function describeRules(rules) {
  return rules === "all" || !rules ? "All rules" : `Rules tagged ${rules.tags.join(", ")}`;
}

function settingsList(spec) {
  const rows = [
    ["Name", spec.name || "—"],
    ["Description", spec.description || "—"],
    ["Rules", describeRules(spec.rules)],
    ["Model", spec.model || "the worker's model"],
    ["Sampling", spec.sampling.interval_s ? `at most one frame every ${spec.sampling.interval_s} s, keeping ${spec.sampling.keep === "all" ? "every frame" : "the latest"}` : "every frame"],
    ["Maximum frame age", spec.max_age_s == null ? "none (every frame is analysed)" : `${spec.max_age_s} s`],
    ["Webhooks", spec.webhooks.length ? spec.webhooks.join(", ") : "—"],
  ];
  return el("dl", { class: "src-facts" }, rows.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function zonesTable(zones, onDelete) {
  const rows = Object.entries(zones).map(([name, zone]) => ({ name, zone }));
  const columns = [
    { label: "Zone", cell: (r) => r.name },
    { label: "Unit", cell: (r) => (r.zone.unit === "cm" ? "cm (table plane)" : "px (picture)") },
    { label: "Corners", cell: (r) => String(r.zone.polygon.length) },
  ];
  if (onDelete) {
    columns.push({
      label: "Delete",
      cell: (r) => el("button", { type: "button", class: "danger", "aria-label": `Delete zone ${r.name}`, onclick: () => onDelete(r.name) }, "Delete"),
    });
  }
  return table(columns, rows, { empty: "No zones." });
}

// ---------------------------------------------------------------------------------------------
// Editors (write:sources). Each returns {node, ...}; `ctx.save(patch, errorBox, button)` PUTs the
// stored source with `patch` applied, so one panel's save never sends another panel's unsaved
// edits.

function calibrationEditor(state, ctx) {
  const kind = el(
    "select",
    { name: "calibration_kind" },
    el("option", { value: "none" }, "None (scale guessed per picture)"),
    el("option", { value: "four_points" }, "Four points on the table (angled camera)"),
    el("option", { value: "scale" }, "One scale (camera looking straight down)"),
  );
  const hint = el("p", { class: "src-hint", "aria-live": "polite" });
  const pointInputs = CORNERS.map(([name, where], i) => {
    const x = numberInput({ name: `point_${name}_x`, min: 0 });
    const y = numberInput({ name: `point_${name}_y`, min: 0 });
    const typed = () => {
      const [px, py] = [num(x), num(y)];
      state.points[i] = px === null || py === null ? null : [px, py];
      ctx.redraw();
      showHint();
    };
    x.addEventListener("input", typed);
    y.addEventListener("input", typed);
    const node = el("fieldset", { class: "src-point" }, el("legend", {}, `${name}, ${where}`), field(`${name} x (px)`, x), field(`${name} y (px)`, y));
    return { x, y, node };
  });
  const clear = el("button", { type: "button", onclick: () => setPoints([null, null, null, null]) }, "Clear points");
  const sizeKind = el(
    "select",
    { name: "size_kind" },
    el("option", { value: "rectangle" }, "A rectangle: width and depth"),
    el("option", { value: "distances" }, "Distances between the points"),
  );
  const width = numberInput({ name: "width_cm", min: 0 });
  const depth = numberInput({ name: "depth_cm", min: 0 });
  const tableTop = el("input", { type: "checkbox", name: "table_top" });
  const distances = Object.fromEntries(DISTANCES.map(([key]) => [key, numberInput({ name: `distance_${key}`, min: 0 })]));
  const pxPerCm = numberInput({ name: "px_per_cm", min: 0 });
  const rectangleGroup = el(
    "div",
    { class: "row" },
    field("Width A to B (cm)", width),
    field("Depth B to C (cm)", depth),
    el("label", { class: "src-check" }, tableTop, "The points are the table top's corners"),
  );
  const distanceGroup = el("div", { class: "row" }, DISTANCES.map(([key, text]) => field(`${text} (cm)`, distances[key])));
  const fourGroup = el(
    "div",
    {},
    hint,
    el("div", { class: "src-points" }, pointInputs.map((p) => p.node)),
    el("div", { class: "row" }, clear, field("Real size given as", sizeKind)),
    rectangleGroup,
    distanceGroup,
  );
  const scaleGroup = el("div", { class: "row" }, field("Pixels per cm", pxPerCm));
  const error = el("p", { class: "error", role: "alert" });
  const save = el("button", { type: "button", class: "primary" }, "Save calibration");

  function setPoints(points) {
    state.points = points.map((p) => (p ? [p[0], p[1]] : null));
    pointInputs.forEach((input, i) => {
      input.x.value = state.points[i] ? String(state.points[i][0]) : "";
      input.y.value = state.points[i] ? String(state.points[i][1]) : "";
    });
    ctx.redraw();
    showHint();
  }

  function showHint() {
    const next = state.points.findIndex((p) => !p);
    fill(
      hint,
      next === -1
        ? "All four points are set. Clear them to pick again, or correct the numbers."
        : `Click point ${CORNERS[next][0]} (${CORNERS[next][1]}) on the frame, with "Calibration point" chosen, or type it.`,
    );
  }

  function showGroups() {
    fourGroup.hidden = kind.value !== "four_points";
    scaleGroup.hidden = kind.value !== "scale";
    rectangleGroup.hidden = sizeKind.value !== "rectangle";
    distanceGroup.hidden = sizeKind.value !== "distances";
  }

  /** The form as the calibration the API takes, or a string saying what is missing. */
  function collect() {
    if (kind.value === "none") return null;
    if (kind.value === "scale") {
      return num(pxPerCm) === null ? "Give the pixels per cm." : { kind: "scale", px_per_cm: num(pxPerCm) };
    }
    const missing = state.points.findIndex((p) => !p);
    if (missing !== -1) return `Set point ${CORNERS[missing][0]}: click it on the frame or type it.`;
    const body = { kind: "four_points", image_points: state.points };
    if (sizeKind.value === "rectangle") {
      if (num(width) === null || num(depth) === null) return "Give the rectangle's width and depth in cm.";
      return { ...body, rectangle_cm: [num(width), num(depth)], table_top: tableTop.checked };
    }
    const given = {};
    for (const [key, text] of DISTANCES) {
      if (num(distances[key]) !== null) given[key] = num(distances[key]);
      else if (key !== "bd") return `Give the distance ${text} in cm.`;
    }
    return { ...body, distances_cm: given };
  }

  /** The stored calibration into the form. */
  function load(calibration) {
    kind.value = calibration ? calibration.kind : "none";
    pxPerCm.value = calibration?.kind === "scale" ? String(calibration.px_per_cm) : "";
    const four = calibration?.kind === "four_points" ? calibration : null;
    setPoints(four ? four.image_points : [null, null, null, null]);
    sizeKind.value = four?.distances_cm ? "distances" : "rectangle";
    width.value = four?.rectangle_cm ? String(four.rectangle_cm[0]) : "";
    depth.value = four?.rectangle_cm ? String(four.rectangle_cm[1]) : "";
    tableTop.checked = Boolean(four?.table_top);
    for (const [key] of DISTANCES) {
      const value = four?.distances_cm?.[key];
      distances[key].value = value == null ? "" : String(value);
    }
    showGroups();
  }

  save.addEventListener("click", async () => {
    fill(error);
    const calibration = collect();
    if (typeof calibration === "string") {
      fill(error, calibration);
      return;
    }
    if (await ctx.save({ calibration }, error, save)) load(state.stored.source.calibration);
  });
  kind.addEventListener("change", showGroups);
  sizeKind.addEventListener("change", showGroups);
  load(state.stored?.source.calibration || null);

  const node = el(
    "section",
    { class: "panel", "aria-labelledby": "calibration-title" },
    el("h2", { id: "calibration-title" }, "Calibration"),
    el("p", { class: "muted" }, "Four points on the table, clockwise as the picture shows them: A far left, B far right, C near right, D near left; then their real size."),
    el("div", { class: "row" }, field("Calibration", kind)),
    fourGroup,
    scaleGroup,
    el("div", { class: "row" }, save),
    error,
  );
  return {
    node,
    /** A click on the frame: the first point not yet set. */
    click(point) {
      const next = state.points.findIndex((p) => !p);
      if (next === -1) {
        fill(hint, "All four points are set. Clear them to pick again.");
        return;
      }
      if (kind.value !== "four_points") {
        kind.value = "four_points";
        showGroups();
      }
      const points = [...state.points];
      points[next] = point;
      setPoints(points);
    },
  };
}

/** "x,y x,y x,y" ↔ [[x, y], …]: the zone's corners as text, for keyboards and exact values. */
function cornersText(points) {
  return points.map(([x, y]) => `${x},${y}`).join(" ");
}

function parseCorners(text) {
  const points = [];
  for (const pair of text.trim().split(/\s+/).filter(Boolean)) {
    const [x, y, extra] = pair.split(",").map((v) => (v.trim() === "" ? NaN : Number(v)));
    if (extra !== undefined || !Number.isFinite(x) || !Number.isFinite(y)) return null;
    points.push([x, y]);
  }
  return points;
}

function zonesEditor(state, ctx) {
  const list = el("div", {});
  const name = el("input", { name: "zone_name", maxlength: 64, autocomplete: "off" });
  const corners = el("input", { name: "zone_corners", autocomplete: "off", spellcheck: "false", placeholder: "x,y x,y x,y" });
  const note = el("p", { class: "src-hint", "aria-live": "polite" });
  const draftError = el("p", { class: "error", role: "alert" });
  const error = el("p", { class: "error", role: "alert" });
  const undo = el("button", { type: "button" }, "Undo corner");
  const finish = el("button", { type: "button" }, "Finish zone");
  const cancel = el("button", { type: "button" }, "Cancel zone");
  const save = el("button", { type: "button", class: "primary" }, "Save zones");
  const unsaved = el("span", { class: "src-unsaved", "aria-live": "polite" });

  function showDraft() {
    corners.value = cornersText(state.draft);
    fill(note, state.draft.length
      ? `${state.draft.length} corner${state.draft.length === 1 ? "" : "s"} (3 or more make a zone).`
      : 'Choose "Zone corner" above the frame and click its corners, or type them.');
    undo.disabled = !state.draft.length;
    ctx.redraw();
  }

  function showZones() {
    fill(list, zonesTable(state.zones, remove));
    const changed = JSON.stringify(state.zones) !== JSON.stringify(state.stored?.source.zones || {});
    fill(unsaved, changed ? "Changes not saved yet" : "");
    ctx.redraw();
  }

  function remove(zoneName) {
    delete state.zones[zoneName];
    showZones();
  }

  corners.addEventListener("input", () => {
    const points = parseCorners(corners.value);
    fill(draftError, points ? "" : "Corners are x,y pairs separated by spaces, e.g. 10,20 200,20 200,150.");
    if (points) {
      state.draft = points;
      fill(note, `${points.length} corner${points.length === 1 ? "" : "s"} (3 or more make a zone).`);
      undo.disabled = !points.length;
      ctx.redraw();
    }
  });
  undo.addEventListener("click", () => {
    state.draft.pop();
    showDraft();
  });
  cancel.addEventListener("click", () => {
    state.draft = [];
    name.value = "";
    fill(draftError);
    showDraft();
  });
  finish.addEventListener("click", () => {
    fill(draftError);
    const zoneName = name.value.trim();
    if (!zoneName) return fill(draftError, "Name the zone.");
    if (state.zones[zoneName]) return fill(draftError, `There is a zone ${zoneName} already: delete it first, or choose another name.`);
    if (state.draft.length < 3) return fill(draftError, "A zone needs 3 corners or more.");
    if (state.draft.length > 64) return fill(draftError, "A zone has at most 64 corners.");
    state.zones[zoneName] = { polygon: state.draft, unit: "px" };
    state.draft = [];
    name.value = "";
    showDraft();
    showZones();
    return null;
  });
  save.addEventListener("click", async () => {
    if (await ctx.save({ zones: state.zones }, error, save)) {
      state.zones = deepCopy(state.stored.source.zones);
      showZones();
    }
  });
  showDraft();
  showZones();

  const node = el(
    "section",
    { class: "panel", "aria-labelledby": "zones-title" },
    el("h2", { id: "zones-title" }, "Zones"),
    list,
    el("h3", {}, "New zone"),
    note,
    el("div", { class: "row" }, field("Zone name", name), field("Corners in px (x,y x,y …)", corners)),
    el("div", { class: "row" }, undo, finish, cancel),
    draftError,
    el("div", { class: "row" }, save, unsaved),
    error,
  );
  return {
    node,
    click(point) {
      state.draft = [...state.draft, point];
      fill(draftError);
      showDraft();
    },
  };
}

function settingsEditor(state, ctx) {
  const spec = state.stored?.source || state.spec;
  const name = el("input", { name: "source_name", maxlength: 200, value: spec.name, autocomplete: "off" });
  const description = el("textarea", { name: "description", maxlength: 2000 }, spec.description);
  const tagged = spec.rules !== "all";
  const allRules = el("input", { type: "radio", name: "rules_choice", value: "all", checked: !tagged });
  const someRules = el("input", { type: "radio", name: "rules_choice", value: "tags", checked: tagged });
  const tags = el("input", { name: "rule_tags", autocomplete: "off", value: tagged ? spec.rules.tags.join(", ") : "", placeholder: "office, kitchen" });
  const model = el("input", { name: "model", autocomplete: "off", spellcheck: "false", value: spec.model || "", placeholder: "name:version (empty: the worker's)" });
  const interval = numberInput({ name: "interval_s", min: 0, value: String(spec.sampling.interval_s) });
  const keep = el("select", { name: "keep" }, el("option", { value: "latest" }, "the latest frame"), el("option", { value: "all" }, "every frame"));
  keep.value = spec.sampling.keep;
  const maxAge = numberInput({ name: "max_age_s", min: 0, value: spec.max_age_s == null ? "" : String(spec.max_age_s) });
  const error = el("p", { class: "error", role: "alert" });
  const save = el("button", { type: "button", class: "primary" }, "Save settings");
  const syncTags = () => {
    tags.disabled = !someRules.checked;
  };
  allRules.addEventListener("change", syncTags);
  someRules.addEventListener("change", syncTags);
  syncTags();

  save.addEventListener("click", async () => {
    fill(error);
    const tagList = tags.value.split(/[\s,]+/).filter(Boolean);
    if (someRules.checked && !tagList.length) return fill(error, "Give at least one tag, or choose all rules.");
    if (num(interval) === null) return fill(error, "Give the sampling interval in seconds (0: every frame).");
    await ctx.save(
      {
        name: name.value.trim(),
        description: description.value,
        rules: someRules.checked ? { tags: tagList } : "all",
        model: model.value.trim() || null,
        sampling: { interval_s: num(interval), keep: keep.value },
        max_age_s: num(maxAge),
      },
      error,
      save,
    );
    return null;
  });

  return {
    node: el(
      "section",
      { class: "panel", "aria-labelledby": "settings-title" },
      el("h2", { id: "settings-title" }, "Rules, model and sampling"),
      el("div", { class: "row" }, field("Name", name)),
      field("Description", description),
      el(
        "fieldset",
        { class: "src-fieldset" },
        el("legend", {}, "Rules that apply"),
        el("label", { class: "src-check" }, allRules, "All rules"),
        el("label", { class: "src-check" }, someRules, "Only rules with one of these tags"),
        field("Tags (comma separated)", tags),
      ),
      el("div", { class: "row" }, field("Model", model)),
      el("div", { class: "row" }, field("Sampling: one frame per (s)", interval), field("When behind, keep", keep), field("Maximum frame age (s, empty: none)", maxAge)),
      el("div", { class: "row" }, save),
      error,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// The stream section.

function streamFacts(stream) {
  const health = stream.health;
  const rows = [
    ["URL", el("code", { class: "src-url" }, stream.url)],
    ["Sampling", `one frame per ${stream.every_s} s${stream.on_change ? `, only when changed (threshold ${stream.change_threshold})` : ""}`],
    ["RTSP transport", stream.rtsp_transport],
    ["State", stateBadge(stream)],
    ["FPS", fmtNumber(health?.fps, 1)],
    ["Last frame", fmtTime(health?.last_frame_at)],
    ["Frames read / sent / dropped", health ? `${health.frames_read} / ${health.sent} / ${health.dropped}` : "—"],
    ["Reconnects", fmtNumber(health?.reconnects, 0)],
    ["Reported", staleBadge(stream)],
    ["Error", health?.error || "—"],
    ["Changed", `${fmtTime(stream.updated_at)}${stream.updated_by ? ` by ${stream.updated_by}` : ""}`],
  ];
  return el("dl", { class: "src-facts", "data-testid": "stream-facts" }, rows.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function streamSection(sourceId) {
  const facts = el("div", {});
  const error = el("p", { class: "error", role: "alert" });
  const node = el("section", { class: "panel", "aria-labelledby": "stream-title" }, el("h2", { id: "stream-title" }, "Camera stream"), facts, error);
  let current = null;
  let form = null;

  async function refresh() {
    try {
      current = await api(`${sourcePath(sourceId)}/stream`);
    } catch (err) {
      if (err.status !== 404) {
        fill(error, problemText(err));
        return;
      }
      current = null;
    }
    fill(error); // this read succeeded: an earlier failure no longer holds
    fill(facts, current ? streamFacts(current) : el("p", { class: "muted" }, "No stream is registered for this source."));
    if (form) form.show(current);
  }

  if (can("write:sources")) {
    form = streamForm(sourceId, refresh);
    node.append(form.node);
  }
  return { node, refresh };
}

function streamForm(sourceId, refresh) {
  const url = el("input", { name: "stream_url", type: "text", autocomplete: "off", spellcheck: "false", maxlength: 2000, placeholder: "rtsp://user:password@camera/stream1" });
  const every = numberInput({ name: "every_s", min: 0.1, value: "1" });
  const onChange = el("input", { type: "checkbox", name: "on_change" });
  const threshold = numberInput({ name: "change_threshold", min: 0, step: 1, value: "2" });
  const transport = el("select", { name: "rtsp_transport" }, el("option", { value: "tcp" }, "TCP"), el("option", { value: "udp" }, "UDP"));
  const note = el("p", { class: "src-hint" });
  const error = el("p", { class: "error", role: "alert" });
  const save = el("button", { type: "button", class: "primary" }, "Save stream");
  const remove = el("button", { type: "button", class: "danger" }, "Remove stream");
  const confirm = el("button", { type: "button", class: "danger", hidden: true }, "Yes, remove the stream");
  let shown = null;

  save.addEventListener("click", async () => {
    fill(error);
    if (!url.value.trim()) return fill(error, "Give the camera's URL (rtsp://, rtsps://, http:// or https://).");
    if (num(every) === null || num(threshold) === null) return fill(error, "Give the sampling interval and the change threshold.");
    save.disabled = true;
    try {
      const body = { url: url.value.trim(), every_s: num(every), on_change: onChange.checked, change_threshold: Math.round(num(threshold)), rtsp_transport: transport.value };
      await api(`${sourcePath(sourceId)}/stream`, { method: "PUT", json: body });
      toast(`Saved the stream of ${sourceId}`);
      shown = null; // show the stored settings again
      await refresh();
    } catch (err) {
      fill(error, problemText(err));
    } finally {
      save.disabled = false;
    }
    return null;
  });
  remove.addEventListener("click", () => {
    confirm.hidden = false;
    confirm.focus();
  });
  confirm.addEventListener("click", async () => {
    fill(error);
    confirm.hidden = true;
    try {
      await api(`${sourcePath(sourceId)}/stream`, { method: "DELETE" });
      toast(`Removed the stream of ${sourceId}`);
      shown = null;
      await refresh();
    } catch (err) {
      fill(error, problemText(err));
    }
  });

  const node = el(
    "div",
    { class: "src-stream-form" },
    el("h3", {}, "Set the stream"),
    note,
    el("div", { class: "row" }, field("Camera URL", url)),
    el("div", { class: "row" }, field("One frame per (s)", every), field("Change threshold (blocks)", threshold), field("RTSP transport", transport)),
    el("div", { class: "row" }, el("label", { class: "src-check" }, onChange, "Only send frames that changed")),
    el("div", { class: "row" }, save, can("delete:sources") ? [remove, confirm] : null),
    error,
  );
  return {
    node,
    /** The stored settings into the form, once per change (not on every health refresh). A
     * masked password cannot be sent back, so such a URL must be typed again. */
    show(stream) {
      const key = stream ? stream.updated_at : "none";
      remove.hidden = !stream;
      if (!stream) confirm.hidden = true;
      if (shown === key) return;
      shown = key;
      const masked = Boolean(stream) && stream.url.includes("***");
      url.value = stream && !masked ? stream.url : "";
      every.value = stream ? String(stream.every_s) : "1";
      onChange.checked = Boolean(stream?.on_change);
      threshold.value = stream ? String(stream.change_threshold) : "2";
      transport.value = stream ? stream.rtsp_transport : "tcp";
      fill(note, masked ? "The stored URL's password is not shown: type the whole URL again to save changes." : "");
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A source's page.

function versionsTable(versions) {
  return table(
    [
      { label: "Version", cell: (v) => String(v.version) },
      { label: "When", cell: (v) => fmtTime(v.created_at) },
      { label: "By", cell: (v) => v.created_by },
      { label: "What", cell: (v) => (v.deleted ? badge("deleted", "bad") : v.source.name || "—") },
    ],
    versions,
    { empty: "No versions yet." },
  );
}

/** The newest result of the source that has a stored picture (pending ones have none yet). */
async function newestFrame(sourceId) {
  const page = await api("/api/v1/analyze", { query: { source_id: sourceId, limit: 10 } });
  return page.items.find((r) => r.image && r.image.object_key) || page.items[0] || null;
}

async function loadSource(sourceId) {
  try {
    return await api(sourcePath(sourceId));
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

async function renderSource(root, sourceId, { navigate }) {
  const writer = can("write:sources");
  const stored = await loadSource(sourceId);
  const state = {
    stored,
    spec: stored ? stored.source : { name: "", description: "", calibration: null, zones: {}, rules: "all", model: null, sampling: { interval_s: 0, keep: "latest" }, max_age_s: null, webhooks: [] },
    // The calibration points on the frame: the stored ones, until a writer picks others.
    points: stored?.source.calibration?.kind === "four_points" ? deepCopy(stored.source.calibration.image_points) : [null, null, null, null],
    zones: deepCopy(stored ? stored.source.zones : {}),
    draft: [],
  };
  const title = el("h1", { id: "page-title" }, `Source ${sourceId}`);
  const summary = el("p", { class: "muted", "data-testid": "source-summary" });
  const readOnly = el("div", {});
  const versions = el("div", {});
  const scene = el("canvas", { class: "scene", "aria-label": `Newest frame of ${sourceId}` });
  const overlay = el("canvas", { class: "src-overlay", "aria-hidden": "true" });
  const frameInfo = el("p", { class: "muted" });
  const frameError = el("p", { class: "error", role: "alert" });
  const redraw = () => drawOverlay(overlay, state);

  function showSummary() {
    const now = state.stored;
    fill(title, `Source ${sourceId}`, now && now.source.name ? ` · ${now.source.name}` : "");
    const unregistered = `Not registered: its images are judged alone, with every rule.${writer ? " Saving below registers it." : ""}`;
    fill(summary, now ? `Version ${now.version}, saved ${fmtTime(now.created_at)} by ${now.created_by}.` : unregistered);
    if (!writer) fill(readOnly, readOnlyPanels(state));
  }

  async function showVersions() {
    if (!state.stored) return fill(versions, el("p", { class: "muted" }, "No versions yet."));
    try {
      return fill(versions, versionsTable(await api(`${sourcePath(sourceId)}/versions`)));
    } catch (err) {
      return fill(versions, el("p", { class: "error", role: "alert" }, problemText(err)));
    }
  }

  /** PUT the stored source with `patch`; true when stored (then the page shows the new version). */
  async function save(patch, errorBox, button) {
    fill(errorBox);
    button.disabled = true;
    try {
      const base = state.stored ? state.stored.source : state.spec;
      state.stored = await api(sourcePath(sourceId), { method: "PUT", json: { ...base, ...patch } });
      state.spec = state.stored.source;
      toast(`Saved ${sourceId}: version ${state.stored.version}`);
      showSummary();
      showVersions();
      return true;
    } catch (err) {
      fill(errorBox, problemText(err));
      return false;
    } finally {
      button.disabled = false;
    }
  }

  async function showFrame() {
    fill(frameError);
    try {
      const result = await newestFrame(sourceId);
      if (!result) {
        fill(frameInfo, "No frame from this source yet: type the calibration points instead of clicking them.");
        scene.hidden = true;
        overlay.hidden = true;
        return;
      }
      fill(frameInfo, "Result ", el("a", { href: `#/results/${enc(result.request_id)}` }, result.request_id), `, ${result.status}, ${fmtTime(result.completed_at || result.submitted_at)}`);
      scene.hidden = false;
      const drawn = await drawResult(scene, result);
      overlay.hidden = !drawn;
      overlay.width = scene.width;
      overlay.height = scene.height;
      scene.dataset.ready = drawn ? "true" : "false";
      redraw();
    } catch (err) {
      fill(frameError, problemText(err));
    }
  }

  const ctx = { save, redraw };
  const calibration = writer ? calibrationEditor(state, ctx) : null;
  const zones = writer ? zonesEditor(state, ctx) : null;
  const settings = writer ? settingsEditor(state, ctx) : null;
  const stream = streamSection(sourceId);

  // What a click on the frame does (writers only): place the next calibration point or add a
  // corner to the zone being drawn.
  const modeCalibration = el("input", { type: "radio", name: "click_mode", value: "calibration", checked: true });
  const modeZone = el("input", { type: "radio", name: "click_mode", value: "zone" });
  if (writer) {
    overlay.classList.add("src-clickable");
    overlay.addEventListener("click", (event) => {
      const point = imagePoint(overlay, event);
      if (modeZone.checked) zones.click(point);
      else calibration.click(point);
    });
  }

  const framePanel = el(
    "section",
    { class: "panel", "aria-labelledby": "frame-title" },
    el("h2", { id: "frame-title" }, "Newest frame"),
    frameInfo,
    el("div", { class: "src-frame" }, scene, overlay),
    frameError,
    el(
      "div",
      { class: "legend" },
      el("span", { class: "src-ink-calibration" }, "calibration"),
      el("span", { class: "src-ink-zone" }, "zones"),
      writer ? el("span", { class: "src-ink-draft" }, "zone being drawn") : null,
    ),
    writer
      ? el(
          "fieldset",
          { class: "src-fieldset src-mode" },
          el("legend", {}, "A click on the frame places"),
          el("label", { class: "src-check" }, modeCalibration, "Calibration point"),
          el("label", { class: "src-check" }, modeZone, "Zone corner"),
        )
      : null,
    el("div", { class: "row" }, el("button", { type: "button", onclick: showFrame }, "Show the newest frame")),
  );

  const deleteButton = can("delete:sources") && stored ? deleteControls(sourceId, navigate) : null;
  fill(
    root,
    title,
    el("p", {}, el("a", { href: "#/sources" }, "← All sources")),
    summary,
    el(
      "div",
      { class: "detail src-detail" },
      el("div", {}, framePanel, writer ? null : readOnly),
      writer ? el("div", {}, calibration.node, zones.node) : el("div", {}, stream.node),
    ),
    writer ? settings.node : null,
    writer ? stream.node : null,
    el("section", { class: "panel", "aria-labelledby": "versions-title" }, el("h2", { id: "versions-title" }, "Versions"), versions),
    deleteButton,
  );
  showSummary();
  const [, , stop] = await Promise.all([showFrame(), showVersions(), repeat(stream.refresh, REFRESH_MS)]);
  return stop;
}

/** What viewers and analysts see instead of the editors. */
function readOnlyPanels(state) {
  const spec = state.stored ? state.stored.source : state.spec;
  return [
    el("section", { class: "panel", "aria-labelledby": "calibration-title" }, el("h2", { id: "calibration-title" }, "Calibration"), el("p", { "data-testid": "calibration-text" }, describeCalibration(spec.calibration))),
    el("section", { class: "panel", "aria-labelledby": "zones-title" }, el("h2", { id: "zones-title" }, "Zones"), zonesTable(spec.zones, null)),
    el("section", { class: "panel", "aria-labelledby": "settings-title" }, el("h2", { id: "settings-title" }, "Rules, model and sampling"), settingsList(spec)),
  ];
}

/** Deleting asks once more, in the page (a confirm() dialog is easy to click through). */
function deleteControls(sourceId, navigate) {
  const error = el("p", { class: "error", role: "alert" });
  const confirm = el("button", { type: "button", class: "danger", hidden: true }, `Yes, delete ${sourceId}`);
  const ask = el("button", { type: "button", class: "danger" }, "Delete source");
  ask.addEventListener("click", () => {
    confirm.hidden = false;
    confirm.focus();
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await api(sourcePath(sourceId), { method: "DELETE" });
      toast(`Deleted source ${sourceId} (its history is kept)`);
      navigate("#/sources");
    } catch (err) {
      fill(error, problemText(err));
      confirm.disabled = false;
    }
  });
  return el(
    "section",
    { class: "panel", "aria-labelledby": "delete-title" },
    el("h2", { id: "delete-title" }, "Delete"),
    el("p", { class: "muted" }, "Its images are then judged alone, with every rule; the history is kept."),
    el("div", { class: "row" }, ask, confirm),
    error,
  );
}

export default {
  id: "sources",
  title: "Sources",
  permission: "read:sources",
  nav: true,
  render(root, ctx) {
    const sourceId = ctx.params[0];
    return sourceId ? renderSource(root, sourceId, ctx) : renderList(root, ctx);
  },
};
