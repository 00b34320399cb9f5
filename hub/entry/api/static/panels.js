/* Dashboard panels for the questions of issue 11: the characteristics of the people served
   (race, ethnicity, gender, age band) and use of force in behavioral-health calls (by
   outcome, month and area). Draws the "demographics" and "use_of_force" parts of
   /v1/dashboard (hub/entry/api/dashboard.py) exactly as published — for analysts, the
   released, suppressed cells.

   Invariants: a withheld (suppressed) cell is shown as "withheld" and drawn hatched, never
   as 0; a cell the release did not carry is "not released". Each panel is a real <table>
   (caption, column and row headers) so screen readers read the same numbers; the bars are
   decoration (aria-hidden). Every value cell carries data-metric / data-group / data-value
   ("withheld", "not released" or the count) for tests. */
"use strict";
const Panels = (() => {
  const WITHHELD = "withheld";
  const NOT_RELEASED = "not released";

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function label(s) { return String(s).replace(/_/g, " "); }
  /* (text, data-value) of a cell {value, share, withheld} */
  function shown(c, withShare) {
    if (c.value === null || c.value === undefined) {
      const word = c.withheld ? WITHHELD : NOT_RELEASED;
      return [word, word];
    }
    const pct = withShare && c.share !== null && c.share !== undefined ? ` (${(c.share * 100).toFixed(1)}%)` : "";
    return [c.value.toLocaleString("en-US") + pct, String(c.value)];
  }
  function valueCell(c, metric, group, withShare) {
    const [text, value] = shown(c, withShare);
    const td = node("td", { "data-metric": metric, "data-group": group, "data-value": value }, text);
    if (value === WITHHELD) td.className = "withheld";
    else if (value === NOT_RELEASED) td.className = "unreleased";
    return td;
  }
  function reason(box, why) {
    if (why) box.appendChild(node("p", { class: "note" }, `Not available: ${why}.`));
  }

  /* Use of force: one table per grouping (all calls, outcome, month, area). */
  function force(box, p) {
    box.textContent = "";
    reason(box, p.reason);
    for (const g of p.groups) {
      if (!g.rows.length) continue;
      const table = node("table", { class: "cells", "data-panel": "use_of_force", "data-grouping": g.key });
      table.appendChild(node("caption", {}, `Use of force — ${g.title.toLowerCase()}`));
      const head = node("tr");
      head.appendChild(node("th", { scope: "col" }, g.key === "total" ? "" : g.title.replace(/^By /, "")));
      for (const c of p.columns) head.appendChild(node("th", { scope: "col" }, c.label));
      table.appendChild(node("thead")).appendChild(head);
      const body = table.appendChild(node("tbody"));
      for (const r of g.rows) {
        const tr = node("tr");
        tr.appendChild(node("th", { scope: "row" }, r.kind === "all" ? "all BH calls" : label(r.label)));
        for (const c of p.columns) tr.appendChild(valueCell(r.cells[c.key], c.key, `${g.key}:${r.label}`, c.key !== "calls"));
        body.appendChild(tr);
      }
      box.appendChild(node("div", { class: "scroll" })).appendChild(table);
    }
  }

  /* Demographics: one table per dimension, categories with a bar of their share. */
  function demographics(box, p) {
    box.textContent = "";
    reason(box, p.reason);
    const [calls] = shown(p.calls, false), [conflicting] = shown(p.conflicting, true);
    const sub = node("p", { class: "note" },
      `BH calls: ${calls}. Sources disagree for: ${conflicting}.` +
      (p.sources.length ? ` Authoritative source first: ${p.sources.join(", ")}.` : ""));
    box.appendChild(sub);
    const grid = box.appendChild(node("div", { class: "demo-grid" }));
    for (const d of p.dimensions) {
      const table = node("table", { class: "cells", "data-panel": "demographics", "data-grouping": d.key });
      table.appendChild(node("caption", {}, d.label));
      const head = node("tr");
      for (const h of ["category", "BH calls (share)", ""]) head.appendChild(node("th", { scope: "col" }, h));
      head.lastChild.setAttribute("aria-hidden", "true");
      table.appendChild(node("thead")).appendChild(head);
      const body = table.appendChild(node("tbody"));
      for (const r of d.rows) {
        const tr = node("tr");
        tr.appendChild(node("th", { scope: "row" }, label(r.label)));
        tr.appendChild(valueCell(r, "calls", `${d.key}:${r.label}`, true));
        const barCell = node("td", { class: "bar", "aria-hidden": "true" });
        const bar = barCell.appendChild(node("span"));
        if (r.value === null || r.value === undefined) bar.className = r.withheld ? "hatched" : "";
        else if (r.value > 0) bar.style.width = `${Math.max(1, Math.round((r.share || 0) * 100))}%`;
        tr.appendChild(barCell);
        body.appendChild(tr);
      }
      grid.appendChild(table);
    }
  }

  function draw(d) {
    const f = document.getElementById("panel-force"), m = document.getElementById("panel-demographics");
    if (f && d.use_of_force) force(f, d.use_of_force);
    if (m && d.demographics) demographics(m, d.demographics);
  }
  return { draw, WITHHELD, NOT_RELEASED };
})();
