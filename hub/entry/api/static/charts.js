/* Small hand-written SVG charts (no dependencies, no network). Every drawn mark carries
   data-series / data-label / data-value so tests and screen readers can read the numbers.
   A suppressed cell (null) is drawn as a hatched stub labelled "suppressed" (it may hide a small value, or a larger one
   from which a small value could be derived: complementary suppression). */
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2b6cb0", "#38a169", "#d69e2e", "#c53030", "#805ad5", "#dd6b20", "#319795",
                   "#718096", "#b83280", "#2c5282", "#9c4221"];
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, s, attrs) {
    const t = el("text", Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function svg(container, width, height, label) {
    container.textContent = "";
    const root = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label }, container);
    el("defs", {}, root).innerHTML =
      '<pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">' +
      '<rect width="2" height="4" fill="#a0aec0"/></pattern>';
    return root;
  }
  function fmt(v) { return v === null || v === undefined ? "suppressed" : v.toLocaleString("en-US"); }
  function legend(container, names) {
    const div = document.createElement("div");
    div.className = "legend";
    names.forEach((n, i) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = PALETTE[i % PALETTE.length];
      span.append(sw, n.replace(/_/g, " "));
      div.appendChild(span);
    });
    container.appendChild(div);
  }

  /* Horizontal bars: rows = [{label, value}] (value null = suppressed). */
  function bars(container, rows, opts) {
    opts = opts || {};
    const rowH = 26, left = opts.left || 170, width = 640, right = 120;
    const height = rows.length * rowH + 10;
    const root = svg(container, width, height, opts.title || "bar chart");
    const max = Math.max(1, ...rows.map(r => r.value || 0));
    rows.forEach((r, i) => {
      const y = 5 + i * rowH;
      text(root, left - 8, y + 16, r.label.replace(/_/g, " "), { "text-anchor": "end" });
      const w = r.value ? Math.max(2, (width - left - right) * r.value / max) : (r.value === null ? 14 : 0);
      el("rect", { x: left, y: y + 3, width: w, height: rowH - 8, rx: 2,
                   fill: r.value === null ? "url(#hatch)" : (opts.color || PALETTE[i % PALETTE.length]),
                   "data-series": opts.series || "value", "data-label": r.label,
                   "data-value": r.value === null ? "suppressed" : r.value }, root);
      const pct = r.share !== undefined && r.share !== null ? ` (${(r.share * 100).toFixed(1)}%)` : "";
      text(root, left + w + 6, y + 16, fmt(r.value) + pct);
    });
    return root;
  }

  /* Stacked columns: categories = ["2026-01", ...], series = {name: [values]} (null = suppressed). */
  function stacked(container, categories, series, opts) {
    opts = opts || {};
    const names = Object.keys(series);
    const width = 900, height = 280, left = 50, bottom = 46, top = 10;
    const root = svg(container, width, height, opts.title || "stacked columns");
    const totals = categories.map((_, i) => names.reduce((s, n) => s + (series[n][i] || 0), 0));
    const max = Math.max(1, ...totals);
    const plotH = height - top - bottom;
    const slot = (width - left - 10) / Math.max(1, categories.length);
    const colW = Math.min(60, slot * 0.7);
    for (let g = 0; g <= 4; g++) {
      const y = top + plotH - plotH * g / 4;
      el("line", { x1: left, x2: width - 10, y1: y, y2: y, stroke: "#e2e8f0" }, root);
      text(root, left - 6, y + 4, Math.round(max * g / 4).toLocaleString("en-US"), { "text-anchor": "end" });
    }
    categories.forEach((cat, i) => {
      const x = left + i * slot + (slot - colW) / 2;
      let y = top + plotH;
      names.forEach((n, s) => {
        const v = series[n][i];
        const h = v ? plotH * v / max : (v === null ? 3 : 0);
        y -= h;
        el("rect", { x, y, width: colW, height: h,
                     fill: v === null ? "url(#hatch)" : PALETTE[s % PALETTE.length],
                     "data-series": n, "data-label": cat, "data-value": v === null ? "suppressed" : v }, root)
          .appendChild(document.createElementNS(NS, "title")).textContent = `${cat} ${n}: ${fmt(v)}`;
      });
      const label = categories.length > 14 ? (i % 2 ? "" : cat) : cat;
      text(root, x + colW / 2, height - bottom + 16, label, { "text-anchor": "middle" });
    });
    legend(container, names);
    return root;
  }
  return { bars, stacked, fmt, PALETTE };
})();
