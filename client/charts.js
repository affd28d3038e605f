// Small SVG charts for the calls page (calls.js): horizontal bars, a histogram, points over time and
// stacked bars over time. No chart library: plain SVG built with page.js's svg(). Every drawn datum
// is an element of class "mark" with data-label and data-value, so a test (or a screen reader's
// <title>) can read what was drawn.

import { svg } from "./page.js";

const W = 640;
const FONT_W = 7; // px per character of the axis labels, roughly, at the page's small font

function frame(height, label, extraClass = "") {
  return svg("svg", { viewBox: `0 0 ${W} ${height}`, class: `chart ${extraClass}`.trim(), role: "img", "aria-label": label });
}

function mark(tag, attrs, label, value, title) {
  const node = svg(tag, { ...attrs, class: `mark ${attrs.class ?? ""}`.trim(), "data-label": label, "data-value": value });
  node.append(svg("title", {}, title));
  return node;
}

/** A step for about `parts` ticks up to `max`: 1, 2 or 5 times a power of ten. */
export function niceStep(max, parts = 5) {
  const raw = Math.max(max, 1e-9) / parts;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

/** entries: [{label, value, key?}] drawn largest first as horizontal bars, with the value at each bar's end. */
export function barChart(entries, { label, unit = "", className = "" }) {
  const rows = [...entries].sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
  const left = Math.min(220, 16 + FONT_W * Math.max(4, ...rows.map((r) => r.label.length)));
  const rowH = 26, top = 8, right = 56;
  const height = top * 2 + rowH * rows.length;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const x = (v) => left + (v / max) * (W - left - right);
  const root = frame(height, label, `bar-chart ${className}`);
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    root.append(svg("text", { class: "tick", x: left - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, row.label));
    root.append(mark("rect", { class: "bar", x: left, y: y + 4, width: Math.max(2, x(row.value) - left), height: rowH - 8,
      "data-key": row.key ?? row.label }, row.label, row.value, `${row.label}: ${row.value}${unit}`));
    root.append(svg("text", { class: "value", x: x(row.value) + 6, y: y + rowH / 2 + 4 }, `${row.value}${unit}`));
  });
  return root;
}

const PLOT = { top: 12, right: 16, bottom: 40, left: 48 };

function axes(root, { height, yMax, yLabel, xLabel, yTicks }) {
  const ih = height - PLOT.top - PLOT.bottom;
  const y = (v) => PLOT.top + ih - (v / yMax) * ih;
  for (const v of yTicks) {
    root.append(svg("line", { class: "grid", x1: PLOT.left, x2: W - PLOT.right, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "tick", x: PLOT.left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  root.append(svg("text", { class: "axis-label", x: PLOT.left + (W - PLOT.left - PLOT.right) / 2, y: height - 4,
    "text-anchor": "middle" }, xLabel));
  root.append(svg("text", { class: "axis-label", x: 12, y: PLOT.top + ih / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${PLOT.top + ih / 2})` }, yLabel));
  return y;
}

function countTicks(max) {
  const step = Math.max(1, niceStep(max, 4));
  const ticks = [];
  for (let v = 0; v <= max + 1e-9; v += step) ticks.push(v);
  return { ticks, top: Math.max(max, ticks[ticks.length - 1]) };
}

/** bins: [{label, from, to, count}] as columns of calls, labelled under each column. */
export function histogram(bins, { label, xLabel, yLabel = "Calls" }) {
  const height = 220;
  const { ticks, top } = countTicks(Math.max(1, ...bins.map((b) => b.count)));
  const root = frame(height, label, "histogram");
  const y = axes(root, { height, yMax: top, yLabel, xLabel, yTicks: ticks });
  const iw = W - PLOT.left - PLOT.right;
  const colW = iw / Math.max(1, bins.length);
  bins.forEach((bin, i) => {
    const x0 = PLOT.left + i * colW;
    root.append(svg("text", { class: "tick", x: x0 + colW / 2, y: height - PLOT.bottom + 16, "text-anchor": "middle" }, bin.label));
    if (!bin.count) return;
    root.append(mark("rect", { class: "bar", x: x0 + 2, y: y(bin.count), width: Math.max(1, colW - 4),
      height: y(0) - y(bin.count) }, bin.label, bin.count, `${bin.label}: ${bin.count} call${bin.count === 1 ? "" : "s"}`));
  });
  return root;
}

function timeAxis(root, from, to, height, format) {
  const iw = W - PLOT.left - PLOT.right;
  const span = Math.max(1, to - from);
  const x = (t) => PLOT.left + ((t - from) / span) * iw;
  for (let i = 0; i <= 4; i += 1) {
    const t = from + (span * i) / 4;
    root.append(svg("text", { class: "tick", x: x(t), y: height - PLOT.bottom + 16,
      "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, format(t)));
  }
  return x;
}

/**
 * points: [{t, value, label}] (value -1..1) against time from..to, with a line through their
 * running mean (the last `window` points) to show the trend.
 */
export function trendPlot(points, { label, from, to, format, window = 5 }) {
  const height = 240;
  const root = frame(height, label, "trend");
  const ih = height - PLOT.top - PLOT.bottom;
  const y = (v) => PLOT.top + ((1 - Math.max(-1, Math.min(1, v))) / 2) * ih;
  for (const v of [-1, -0.5, 0, 0.5, 1]) {
    root.append(svg("line", { class: v === 0 ? "zero" : "grid", x1: PLOT.left, x2: W - PLOT.right, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "tick", x: PLOT.left - 6, y: y(v) + 4, "text-anchor": "end" }, v > 0 ? `+${v}` : String(v)));
  }
  root.append(svg("text", { class: "axis-label", x: 12, y: PLOT.top + ih / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${PLOT.top + ih / 2})` }, "Mean customer sentiment"));
  const x = timeAxis(root, from, to, height, format);
  const sorted = [...points].sort((a, b) => a.t - b.t);
  const running = sorted.map((_, i) => {
    const part = sorted.slice(Math.max(0, i - window + 1), i + 1);
    return part.reduce((sum, p) => sum + p.value, 0) / part.length;
  });
  if (sorted.length > 1) {
    root.append(svg("polyline", { class: "running", points: sorted.map((p, i) => `${x(p.t).toFixed(1)},${y(running[i]).toFixed(1)}`).join(" ") }));
  }
  for (const p of sorted) {
    const mood = p.value > 0.05 ? "positive" : p.value < -0.05 ? "negative" : "neutral";
    root.append(mark("circle", { class: `point ${mood}`, cx: x(p.t), cy: y(p.value), r: 4.5 }, p.label, p.value, p.title ?? p.label));
  }
  return root;
}

/**
 * columns: [{from, to, counts: {series: n}}] as stacked bars against time; series: [{key, label}]
 * in stacking order (each gets the class `series-<index>` for its colour).
 */
export function stackedColumns(columns, series, { label, from, to, format, yLabel }) {
  const height = 240;
  const totals = columns.map((c) => Object.values(c.counts).reduce((a, b) => a + b, 0));
  const { ticks, top } = countTicks(Math.max(1, ...totals));
  const root = frame(height, label, "stacked");
  const y = axes(root, { height, yMax: top, yLabel, xLabel: "", yTicks: ticks });
  const x = timeAxis(root, from, to, height, format);
  columns.forEach((column) => {
    let base = 0;
    const x0 = x(column.from) + 1, width = Math.max(1, x(column.to) - x(column.from) - 2);
    series.forEach((s, i) => {
      const n = column.counts[s.key] ?? 0;
      if (!n) return;
      root.append(mark("rect", { class: `bar series-${i % 9}`, x: x0, y: y(base + n), width, height: y(base) - y(base + n),
        "data-key": s.key }, s.label, n, `${format(column.from)}: ${s.label} ${n}`));
      base += n;
    });
  });
  return root;
}

/** A legend for stackedColumns' series. */
export function legend(series, h) {
  return h("p", { class: "chart-legend" }, series.map((s, i) =>
    h("span", { class: "legend-item" }, h("span", { class: `swatch series-${i % 9}`, "aria-hidden": "true" }), s.label)));
}
