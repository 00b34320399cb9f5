/* The outcomes dashboard: fetches /v1/dashboard (de-identified aggregates, analyst role) and
   draws it with charts.js. The token comes from the URL fragment (#token=...) or, in
   development, from /dashboard/dev-token. Sets <body data-ready="1"> when every chart is
   drawn (or "error" with a message), so automated tests know when to look. */
"use strict";
(async () => {
  const $ = id => document.getElementById(id);
  function fail(msg) {
    $("error").hidden = false;
    $("error").textContent = msg;
    document.body.dataset.ready = "error";
  }
  async function token() {
    const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) return decodeURIComponent(m[1]);
    const r = await fetch("/dashboard/dev-token");
    if (!r.ok) throw new Error("no token: open the dashboard with #token=<analyst token>");
    return (await r.json()).token;
  }
  function pct(v) { return v === null || v === undefined ? "suppressed" : (v * 100).toFixed(1) + "%"; }

  function headline(cards, box = $("headline")) {
    box.textContent = "";
    for (const c of cards) {
      const div = document.createElement("div");
      div.className = "card";
      div.dataset.metric = c.key;
      const measured = c.measured !== false;
      div.dataset.value = !measured ? "not measured" : (c.share === null ? "suppressed" : c.share);
      const value = document.createElement("div"); value.className = "value";
      value.textContent = measured ? pct(c.share) : "not measured";
      const label = document.createElement("div"); label.className = "label"; label.textContent = c.label;
      const detail = document.createElement("div"); detail.className = "bench";
      const count = !measured ? (c.reason || "the sources cannot express it")
        : c.numerator === null || c.numerator === undefined
        ? `count suppressed (of ${Charts.fmt(c.denominator)})`
        : `${Charts.fmt(c.numerator)} of ${Charts.fmt(c.denominator)}`;
      detail.textContent = count +
        (c.benchmark ? ` · benchmark ${c.benchmark}` : "");
      div.append(value, label, detail);
      box.appendChild(div);
    }
  }
  function pipeline(p) {
    const box = $("pipeline");
    box.textContent = "";
    const stats = document.createElement("div");
    stats.className = "stats";
    const v = p.verification;
    const items = [
      ["Projection lag (records)", p.projection_lag, p.projection_lag === 0 ? "ok" : "bad"],
      ["Open dead letters", p.dead_letters_total, p.dead_letters_total === 0 ? "ok" : "bad"],
      ["Verification", v === null ? "never ran" : (v.ok ? "passed" : `FAILED (${v.breaks} breaks)`),
       v !== null && v.ok ? "ok" : "bad"],
      ["Last verified", v === null ? "—" : new Date(v.checked_at).toLocaleString(), ""],
    ];
    for (const [label, value, cls] of items) {
      const d = document.createElement("div"); d.className = "stat";
      const b = document.createElement("b"); b.textContent = value; if (cls) b.className = cls;
      d.append(b, label);
      stats.appendChild(d);
    }
    box.appendChild(stats);
    const rows = Object.entries(p.dead_letters).map(([k, n]) => ({ label: "dead letters: " + k, value: n }));
    if (rows.length) {
      const sub = document.createElement("div");
      sub.className = "narrow";
      box.appendChild(sub);
      Charts.bars(sub, rows, { title: "dead letters by source", series: "dead_letters", color: "#c53030" });
    }
  }

  async function download(tok, format) {
    // the report as a file: fetched with the token (a plain link could not send it)
    const r = await fetch(`/v1/reports/outcomes/export?format=${format}&by=month`, { headers: { Authorization: "Bearer " + tok } });
    if (!r.ok) { fail(`download: HTTP ${r.status}`); return; }
    const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1] || `outcomes.${format}`;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob()); a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    document.body.dataset.downloaded = name;
  }

  async function maps(tok, panels) {
    // one map per grain the county supplied a GeoJSON of (areas of need)
    const box = $("maps");
    box.textContent = "";
    for (const panel of panels) {
      const fig = document.createElement("figure");
      fig.className = "panel wide";
      fig.id = `map-${panel.grain}`;
      const cap = document.createElement("figcaption");
      cap.textContent = `Areas of need: behavioral-health calls by ${panel.grain}`;
      const div = document.createElement("div");
      div.className = "chart map";
      fig.append(cap, div);
      box.appendChild(fig);
      const r = await fetch(panel.map, { headers: { Authorization: "Bearer " + tok } });
      if (!r.ok) { div.textContent = `map unavailable: HTTP ${r.status}`; continue; }
      AreaMap.draw(div, await r.json(), panel);
    }
  }

  try {
    const tok = await token();
    for (const b of document.querySelectorAll(".downloads button")) b.addEventListener("click", () => download(tok, b.dataset.format));
    const resp = await fetch("/v1/dashboard", { headers: { Authorization: "Bearer " + tok } });
    if (!resp.ok) throw new Error(`/v1/dashboard: HTTP ${resp.status} ${await resp.text()}`);
    const d = await resp.json();
    $("cellmax").textContent = d.small_cell_max;
    $("period").textContent = (d.period ? `Period: ${d.period.from} – ${d.period.to}.` : "") +
      (d.vocabulary ? ` Vocabulary: ${d.vocabulary}.` : "");
    headline(d.headline);
    // the county's own metrics (its definitions file), suppressed like every other cell
    $("custom").hidden = !d.custom_metrics.length;
    $("custom-definitions").textContent = d.custom_definitions || "";
    headline(d.custom_metrics, $("custom-cards"));
    // over time: weeks for a short period (up to three months), months beyond — and months
    // when there is no weekly series (an analyst's dashboard shows released months only)
    const monthly = d.by_month.categories.length > 3 || d.by_week.categories.length === 0;
    const time = monthly ? d.by_month : d.by_week;
    $("time-caption").textContent = "Behavioral-health call outcomes by " + (monthly ? "month" : "week (starting Monday)");
    Charts.stacked($("chart-time"), time.categories, time.series, { title: "outcomes over time" });
    Charts.stacked($("chart-area"), d.by_area.categories, d.by_area.series, { title: "outcomes by area" });
    Charts.bars($("chart-funnel"), d.funnel, { title: "referral funnel", series: "funnel" });
    Charts.bars($("chart-repeat"), d.repeat, { title: "repeat encounters", series: "repeat", left: 130 });
    pipeline(d.pipeline);
    await maps(tok, d.areas || []);
    Panels.draw(d); // demographics and use of force (panels.js)
    document.body.dataset.ready = "1";
  } catch (e) {
    fail(String(e && e.message || e));
  }
})();
