/* Areas of need: a choropleth of the county's own areas, drawn inline as SVG from the GeoJSON
   the hub serves (/v1/maps/<grain>) — Web-Mercator projection of the polygon rings, no tile
   server, no external request, no dependency. Areas whose count is withheld are hatched (SVG
   pattern) and never coloured by a value; every area is keyboard-focusable with a text
   tooltip, and a table holds the same numbers for screen readers.
   Every area path carries data-area / data-value / data-suppressed for tests. */
"use strict";
const AreaMap = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const CLASSES = ["#deebf7", "#9ecae1", "#6baed6", "#3182bd", "#08519c"];
  const NO_DATA = "#f1f3f5";
  const WIDTH = 640, MAX_HEIGHT = 520, PAD = 8;
  let uid = 0;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(name, attrs, parent, text) {
    const node = document.createElement(name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  // Web Mercator (unit sphere): x = λ, y = ln tan(π/4 + φ/2); north up on screen
  function mercator(lon, lat) {
    const phi = Math.max(-85, Math.min(85, lat)) * Math.PI / 180;
    return [lon * Math.PI / 180, Math.log(Math.tan(Math.PI / 4 + phi / 2))];
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return null;
    return v.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 1 : digits });
  }
  // class breaks: quantiles of the published values (at most five classes)
  function breaks(values) {
    const sorted = [...new Set(values)].sort((a, b) => a - b);
    if (sorted.length <= CLASSES.length) return sorted;
    return CLASSES.map((_, i) => sorted[Math.floor(i * (sorted.length - 1) / (CLASSES.length - 1))]);
  }
  function classOf(v, cuts) {
    let i = 0;
    while (i + 1 < cuts.length && v >= cuts[i + 1]) i++;
    return Math.min(i, CLASSES.length - 1);
  }
  function describe(row, measure, grain, name) {
    const label = `${grain} ${name}`;
    if (!row) return `${label}: no behavioral-health calls recorded`;
    if (row.suppressed) return `${label}: suppressed (1 to 10 calls, or a count that would reveal one)`;
    const parts = [`${fmt(row.calls, 0)} behavioral-health calls`];
    if (row.rate_per_1000_calls !== null) parts.push(`${fmt(row.rate_per_1000_calls)} per 1,000 calls for service`);
    if (row.rate_per_1000_residents !== null) parts.push(`${fmt(row.rate_per_1000_residents)} per 1,000 residents`);
    if (measure.key !== "calls" && row[measure.key] === null) parts.push(`${measure.label}: not published`);
    return `${label}: ${parts.join(", ")}`;
  }

  /* Draw panel (from /v1/dashboard "areas") with its map document into container. */
  function draw(container, geo, panel) {
    container.textContent = "";
    const id = ++uid;
    const rows = new Map(panel.rows.map(r => [r.area, r]));
    const measures = panel.measures.length ? panel.measures : [{ key: "calls", label: "BH calls" }];
    const controls = html("p", { class: "map-controls" }, container);
    const selectId = `map-measure-${id}`;
    html("label", { for: selectId }, controls, "Colour areas by ");
    const select = html("select", { id: selectId }, controls);
    for (const m of measures) html("option", { value: m.key }, select, m.label);
    const holder = html("div", { class: "map-holder" }, container);
    const tip = html("div", { class: "map-tip", role: "status", "aria-live": "polite" }, holder);
    tip.hidden = true;
    const legendBox = html("div", { class: "map-legend" }, container);
    const note = html("p", { class: "map-note" }, container);
    const tableBox = html("div", { class: "sr-only" }, container);

    // projected bounding box → a viewBox that keeps the map's proportions
    const [x0, y0] = mercator(geo.bbox[0], geo.bbox[1]);
    const [x1, y1] = mercator(geo.bbox[2], geo.bbox[3]);
    const scale = Math.min((WIDTH - 2 * PAD) / Math.max(x1 - x0, 1e-9), (MAX_HEIGHT - 2 * PAD) / Math.max(y1 - y0, 1e-9));
    const height = Math.round((y1 - y0) * scale + 2 * PAD);
    const project = ([lon, lat]) => {
      const [x, y] = mercator(lon, lat);
      return [(PAD + (x - x0) * scale).toFixed(1), (PAD + (y1 - y) * scale).toFixed(1)];
    };

    function render(measure) {
      holder.querySelectorAll("svg").forEach(s => s.remove());
      const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "group",
                              "aria-label": `Map of ${panel.grain}s: ${measure.label}` });
      holder.insertBefore(svg, tip);
      el("defs", {}, svg).innerHTML =
        `<pattern id="map-hatch-${id}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
        '<rect width="6" height="6" fill="#ffffff"/><rect width="2.5" height="6" fill="#718096"/></pattern>';
      const values = panel.rows.filter(r => !r.suppressed && r[measure.key] !== null).map(r => r[measure.key]);
      const cuts = breaks(values);
      for (const area of geo.areas) {
        const row = rows.get(area.area);
        const d = area.polygons.map(poly => poly.map(ring =>
          "M" + ring.map(p => project(p).join(",")).join("L") + "Z").join("")).join("");
        const value = row && !row.suppressed ? row[measure.key] : null;
        const fill = row && row.suppressed ? `url(#map-hatch-${id})`
          : value === null || value === undefined ? NO_DATA : CLASSES[classOf(value, cuts)];
        const text = describe(row, measure, panel.grain, area.name);
        const path = el("path", {
          id: `area-${panel.grain}-${area.area}`,
          d, fill, "fill-rule": "evenodd", stroke: "#2d3748", "stroke-width": 0.8, tabindex: 0,
          role: "img", "aria-label": text, "data-area": area.area,
          "data-value": row ? (row.suppressed ? "suppressed" : String(value)) : "none",
          "data-suppressed": row && row.suppressed ? "1" : "0",
        }, svg);
        el("title", {}, path).textContent = text;
        const show = () => {
          tip.textContent = text;
          tip.hidden = false;
          // just above the area (below it at the top edge), kept inside the map's box
          const box = path.getBBox(), k = (svg.clientWidth || WIDTH) / svg.viewBox.baseVal.width;
          const w = tip.offsetWidth, room = holder.clientWidth || WIDTH;
          const left = Math.max(0, Math.min(room - w, (box.x + box.width / 2) * k - w / 2));
          tip.style.left = `${Math.round(left)}px`;
          const above = box.y * k - tip.offsetHeight - 4;
          tip.style.top = `${Math.round(above >= 0 ? above : (box.y + box.height) * k + 4)}px`;
          path.classList.add("active");
        };
        const hide = () => { tip.hidden = true; path.classList.remove("active"); };
        path.addEventListener("focus", show);
        path.addEventListener("mouseenter", show);
        path.addEventListener("blur", hide);
        path.addEventListener("mouseleave", hide);
      }
      for (const path of svg.querySelectorAll("path[data-area]")) {
        const box = path.getBBox();
        if (box.width < 18 || box.height < 12) continue;  // too small to label
        const label = el("text", { x: box.x + box.width / 2, y: box.y + box.height / 2 + 4, "text-anchor": "middle",
                                   class: "map-label", "aria-hidden": "true" }, svg);
        label.textContent = path.dataset.area;
      }
      legend(measure, cuts);
    }

    function legend(measure, cuts) {
      legendBox.textContent = "";
      html("span", { class: "map-legend-title" }, legendBox, measure.label + ":");
      cuts.forEach((c, i) => {
        const item = html("span", { class: "map-legend-item" }, legendBox);
        html("i", { style: `background:${CLASSES[Math.min(i, CLASSES.length - 1)]}` }, item);
        const next = cuts[i + 1];
        item.append(next === undefined ? `${fmt(c)} or more` : `${fmt(c)} to under ${fmt(next)}`);
      });
      const hatched = html("span", { class: "map-legend-item", "data-legend": "suppressed" }, legendBox);
      const sw = el("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true", class: "swatch" }, hatched);
      el("rect", { width: 14, height: 14, fill: `url(#map-hatch-${id})`, stroke: "#a0aec0" }, sw);
      hatched.append("suppressed (1–10, or could reveal one)");
      const none = html("span", { class: "map-legend-item" }, legendBox);
      html("i", { style: `background:${NO_DATA}` }, none);
      none.append("no calls recorded");
    }

    // the same numbers as a table, for screen readers
    const table = html("table", {}, tableBox);
    html("caption", {}, table, `Behavioral-health calls by ${panel.grain}`);
    const head = html("tr", {}, html("thead", {}, table));
    for (const h of [panel.grain, "BH calls", "per 1,000 calls for service", "per 1,000 residents"]) html("th", { scope: "col" }, head, h);
    const body = html("tbody", {}, table);
    const names = new Map(geo.areas.map(a => [a.area, a.name]));
    for (const r of panel.rows) {
      const tr = html("tr", {}, body);
      html("th", { scope: "row" }, tr, names.get(r.area) || r.area);
      for (const v of [r.suppressed ? "suppressed" : fmt(r.calls, 0), fmt(r.rate_per_1000_calls), fmt(r.rate_per_1000_residents)]) {
        html("td", {}, tr, v === null ? "not published" : v);
      }
    }

    const notes = [];
    if (panel.population) notes.push(`Residents: ${panel.population.source} (${panel.population.year}).`);
    if (geo.unmapped && geo.unmapped.length) notes.push(`Areas with calls that are not on the map: ${geo.unmapped.join(", ")}.`);
    note.textContent = notes.join(" ");
    select.addEventListener("change", () => render(measures.find(m => m.key === select.value)));
    render(measures[0]);
  }
  return { draw, mercator };
})();
