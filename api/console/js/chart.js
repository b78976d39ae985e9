// Small SVG charts (no charting library is served offline here): stacked bars and lines, each
// with a text alternative, so a chart is also read by a screen reader and by the browser tests.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(width, height, label) {
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    class: "chart",
    preserveAspectRatio: "xMidYMid meet",
  });
  root.append(svg("title", {}, label));
  return root;
}

/**
 * Stacked bars: `labels` along x, `series` = [{name, colour, values[]}] stacked per label.
 * Each bar segment has a <title> with its numbers.
 */
export function barChart({ labels, series, label, width = 640, height = 220 }) {
  const pad = { left: 40, right: 10, top: 22, bottom: 28 }; // the legend sits above the plot
  const root = frame(width, height, label);
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const top = Math.max(1, ...totals);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, labels.length);
  const barW = Math.max(2, step * 0.7);
  root.append(axis(pad, plotW, plotH, top));
  labels.forEach((name, i) => {
    let base = pad.top + plotH;
    for (const s of series) {
      const value = s.values[i] || 0;
      const h = (value / top) * plotH;
      base -= h;
      if (value > 0) {
        const bar = svg("rect", { x: pad.left + i * step + (step - barW) / 2, y: base, width: barW, height: h, fill: s.colour });
        bar.append(svg("title", {}, `${name}: ${s.name} ${value}`));
        root.append(bar);
      }
    }
    if (labels.length <= 24 || i % Math.ceil(labels.length / 12) === 0) {
      root.append(svg("text", { x: pad.left + i * step + step / 2, y: height - 8, "text-anchor": "middle", class: "tick" }, name));
    }
  });
  root.append(legend(series, width));
  return root;
}

/** Lines: `series` = [{name, colour, points: [[x, y], …]}] with numeric x (e.g. epoch ms). */
export function lineChart({ series, label, width = 640, height = 220, format = (x) => x }) {
  const pad = { left: 48, right: 10, top: 22, bottom: 28 };
  const root = frame(width, height, label);
  const all = series.flatMap((s) => s.points);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const xs = all.map((p) => p[0]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  const top = Math.max(0, ...all.map((p) => p[1])) || 1; // all zero: an axis up to 1
  root.append(axis(pad, plotW, plotH, top));
  const sx = (x) => pad.left + (x1 === x0 ? plotW / 2 : ((x - x0) / (x1 - x0)) * plotW);
  const sy = (y) => pad.top + plotH - (y / top) * plotH;
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const path = svg("path", { d, fill: "none", stroke: s.colour, "stroke-width": 2 });
    path.append(svg("title", {}, `${s.name}: last ${s.points[s.points.length - 1][1]}`));
    root.append(path);
  }
  if (xs.length) {
    root.append(svg("text", { x: pad.left, y: height - 8, class: "tick" }, format(x0)));
    root.append(svg("text", { x: width - pad.right, y: height - 8, "text-anchor": "end", class: "tick" }, format(x1)));
  }
  root.append(legend(series, width));
  return root;
}

function axis(pad, plotW, plotH, top) {
  const group = svg("g", { class: "axis" });
  group.append(svg("line", { x1: pad.left, y1: pad.top + plotH, x2: pad.left + plotW, y2: pad.top + plotH, stroke: "#aab3bd" }));
  group.append(svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH, stroke: "#aab3bd" }));
  group.append(svg("text", { x: pad.left - 4, y: pad.top + 8, "text-anchor": "end", class: "tick" }, round(top)));
  group.append(svg("text", { x: pad.left - 4, y: pad.top + plotH, "text-anchor": "end", class: "tick" }, "0"));
  return group;
}

function legend(series, width) {
  const group = svg("g", { class: "legend" });
  let x = width - 10;
  for (const s of [...series].reverse()) {
    const text = svg("text", { x, y: 12, "text-anchor": "end", class: "tick" }, s.name);
    x -= s.name.length * 6.5 + 6;
    group.append(svg("rect", { x: x - 10, y: 3, width: 10, height: 10, fill: s.colour }), text);
    x -= 22;
  }
  return group;
}

function round(value) {
  return value >= 100 ? Math.round(value) : Number(value.toPrecision(3));
}
