/* The co-responder's encounter form: finds the CAD incident (/v1/intake/incidents), fills
   its choices from /v1/intake/options and submits to /v1/intake/encounters (amendments to
   /v1/intake/encounters/<id>/amendments).

   Offline tolerance: every change is kept as a draft in localStorage; a submitted form goes
   to an outbox (localStorage) first and leaves it only when the hub answered. A network
   failure, a 5xx or a 503 keeps it there and retries (growing delays, and when the browser
   comes back online); an expired token keeps it until the user signs in again. The
   client-generated submission_id makes every retry safe: the hub appends a form once.
   Field errors (422) are shown next to their fields and in a summary that links to them.

   The token comes from the URL fragment (#token=...) or the sign-in box, and is kept in
   sessionStorage. Tests read <body data-ready> ("1" when the form is usable) and
   #status[data-state] (sent, duplicate, queued, invalid, error). */
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const DRAFT = "hub.intake.draft", OUTBOX = "hub.intake.outbox", TOKEN = "hub.intake.token";
  let options = null, retryTimer = null, lastReceipt = null, amendingId = null;

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map(x => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  function token() { return sessionStorage.getItem(TOKEN); }
  function load(key, fallback) { try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; } }
  function save(key, value) { localStorage.setItem(key, JSON.stringify(value)); }
  function status(state, text) { const s = $("status"); s.dataset.state = state; s.textContent = text; }
  function api(path, init = {}) {
    return fetch(path, { ...init, headers: { ...(init.headers || {}), Authorization: "Bearer " + token(),
      "Content-Type": "application/json" } });
  }
  function option(select, value, label) {
    const o = document.createElement("option"); o.value = value; o.textContent = label ?? value.replaceAll("_", " ");
    select.appendChild(o);
  }
  function checkbox(box, name, value, label) {
    const l = document.createElement("label"); l.className = "check";
    const i = document.createElement("input"); i.type = "checkbox"; i.name = name; i.value = value;
    l.append(i, " " + (label ?? value.replaceAll("_", " "))); box.appendChild(l);
  }
  const MODES = { co_response: "ride-along (co-response)", follow_up: "follow-up", phone: "phone", clinician_only: "clinician only" };

  function fillOptions(o) {
    for (const m of o.modes) option($("mode"), m, MODES[m]);
    for (const v of o.outcomes) option($("outcome"), v);
    option($("use_of_force"), "", "— choose —");
    for (const v of o.use_of_force) option($("use_of_force"), v, v === "none" ? "none" : v.replaceAll("_", " "));
    for (const s of o.person_systems) option($("person-system"), s);
    for (const d of o.destinations) option($("referral-destination"), d.name, `${d.display} (${d.channel === "fhir" ? "FHIR" : "HL7 v2"})`);
    for (const s of o.services) { option($("referral-service_type"), s); checkbox($("services_offered"), "services_offered", s); }
    for (const u of o.urgencies) option($("referral-urgency"), u);
    for (const d of o.destinations) checkbox($("consent-recipients"), "consent-recipients", d.name, d.display);
    customFields(o.custom_fields || []);
  }

  // --- the county's custom fields: one labelled input per declared field ----------------------
  function customFields(fields) {
    const box = $("custom-fields");
    $("fs-custom").hidden = fields.length === 0;
    for (const f of fields) {
      const div = document.createElement("div"); div.className = "field";
      const label = document.createElement("label"); label.htmlFor = "custom-" + f.name; label.textContent = f.label;
      let input;
      if (f.type === "enum" || f.type === "boolean") {
        input = document.createElement("select");
        option(input, "", "— not recorded —");
        if (f.type === "enum") for (const v of f.values) option(input, v);
        else { option(input, "true", "yes"); option(input, "false", "no"); }
      } else {
        input = document.createElement("input");
        input.type = f.type === "date" ? "date" : "number";
        if (f.type === "integer") { input.step = "1"; input.inputMode = "numeric";
          if (f.min !== null) input.min = f.min; if (f.max !== null) input.max = f.max; }
      }
      input.id = "custom-" + f.name; input.dataset.custom = f.name; input.dataset.type = f.type;
      const err = document.createElement("p"); err.className = "error"; err.id = "err-custom-" + f.name; err.hidden = true;
      div.append(label, input);
      if (f.sensitive) { const h = document.createElement("p"); h.className = "hint"; h.id = "hint-custom-" + f.name;
        h.textContent = "Kept sealed, like the note."; input.setAttribute("aria-describedby", h.id); div.appendChild(h); }
      div.appendChild(err); box.appendChild(div);
    }
  }
  function customValues() {
    const out = {};
    for (const el of document.querySelectorAll("[data-custom]")) {
      const v = el.value.trim();
      if (v === "") continue;
      const t = el.dataset.type;
      out[el.dataset.custom] = t === "integer" ? (/^-?\d+$/.test(v) ? Number(v) : v) : t === "boolean" ? v === "true" : v;
    }
    return out;
  }

  // --- the form's values <-> the JSON body ------------------------------------------------
  const localToIso = v => v ? new Date(v).toISOString() : null;
  const isoToLocal = v => { if (!v) return ""; const d = new Date(v); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); };
  const checked = name => [...document.querySelectorAll(`input[name="${name}"]:checked`)].map(i => i.value);
  const val = id => { const v = $(id).value.trim(); return v === "" ? null : v; };

  function body() {
    const b = {
      encounter_at: localToIso($("encounter_at").value), mode: $("mode").value, outcome: $("outcome").value,
      use_of_force: $("use_of_force").value || null, services_offered: checked("services_offered"),
      officer_released_at: localToIso($("officer_released_at").value), note: val("note"),
      person: null, referral: null, consent: null, custom: customValues(),
    };
    if ($("has-person").checked) b.person = { system: $("person-system").value, identifier: val("person-identifier"),
      role: $("person-role").value, given_name: val("person-given_name"), family_name: val("person-family_name"),
      birth_date: val("person-birth_date"), gender: val("person-gender"), race: val("person-race"),
      ethnicity: val("person-ethnicity"), age_band: val("person-age_band") };
    if ($("has-referral").checked) b.referral = { destination: $("referral-destination").value,
      service_type: $("referral-service_type").value, urgency: $("referral-urgency").value,
      reason: val("referral-reason"), substance_use: $("referral-substance_use").checked };
    if ($("has-consent").checked) b.consent = { general: $("consent-general").checked, part2: $("consent-part2").checked,
      recipients: checked("consent-recipients"),
      expires_at: val("consent-expires_at") ? new Date(val("consent-expires_at") + "T23:59:59").toISOString() : null };
    return b;
  }
  function selectedIncident() { const r = document.querySelector('input[name="incident_id"]:checked'); return r ? r.value : null; }

  function fill(d) {
    const set = (id, v) => { if (v !== undefined && v !== null) $(id).value = v; };
    set("encounter_at", isoToLocal(d.encounter_at)); set("mode", d.mode); set("outcome", d.outcome);
    set("use_of_force", d.use_of_force); set("officer_released_at", isoToLocal(d.officer_released_at)); set("note", d.note);
    for (const i of document.querySelectorAll('input[name="services_offered"]')) i.checked = (d.services_offered || []).includes(i.value);
    $("has-person").checked = !!d.person;
    if (d.person) for (const k of ["system", "identifier", "role", "given_name", "family_name", "birth_date", "gender", "race", "ethnicity", "age_band"]) set("person-" + k, d.person[k]);
    $("has-referral").checked = !!d.referral;
    if (d.referral) { for (const k of ["destination", "service_type", "urgency", "reason"]) set("referral-" + k, d.referral[k]);
      $("referral-substance_use").checked = !!d.referral.substance_use; }
    $("has-consent").checked = !!d.consent;
    if (d.consent) { $("consent-general").checked = !!d.consent.general; $("consent-part2").checked = !!d.consent.part2;
      for (const i of document.querySelectorAll('input[name="consent-recipients"]')) i.checked = d.consent.recipients.includes(i.value);
      if (d.consent.expires_at) set("consent-expires_at", d.consent.expires_at.slice(0, 10)); }
    for (const el of document.querySelectorAll("[data-custom]")) {
      const v = (d.custom || {})[el.dataset.custom];
      el.value = v === undefined || v === null ? "" : String(v);
    }
    if (d.incident) showIncidents([d.incident], d.incident.incident_id);
    toggles();
  }
  function toggles() {
    $("person-fields").hidden = !$("has-person").checked;
    $("referral-fields").hidden = !$("has-referral").checked;
    $("consent-fields").hidden = !$("has-consent").checked;
    $("reason-field").hidden = amendingId === null;
    $("amending").hidden = amendingId === null;
    $("amending-id").textContent = amendingId || "";
    $("fs-incident").disabled = amendingId !== null;
    $("submit").textContent = amendingId === null ? "Submit form" : "Submit amendment";
  }

  // --- draft and outbox --------------------------------------------------------------------
  let draftId = null;
  function saveDraft() {
    const incident = document.querySelector('input[name="incident_id"]:checked');
    save(DRAFT, { id: draftId, amending: amendingId, reason: $("reason").value, form: body(),
      incident: incident ? JSON.parse(incident.dataset.incident) : null });
  }
  function clearDraft() { localStorage.removeItem(DRAFT); }
  function showOutbox() {
    const n = load(OUTBOX, []).length;
    $("outbox").hidden = n === 0;
    $("outbox").textContent = n ? `${n} form(s) waiting to be sent; they are retried automatically.` : "";
  }

  async function sendOne(item) {
    const path = item.kind === "amendment"
      ? `/v1/intake/encounters/${item.submission_id}/amendments` : "/v1/intake/encounters";
    let resp;
    try { resp = await api(path, { method: "POST", body: JSON.stringify(item.body) }); }
    catch { return { retry: true, message: "no connection to the hub" }; }
    let data = {};
    try { data = await resp.json(); } catch { /* not JSON: e.g. a proxy's error page */ }
    if (resp.status === 201 || resp.status === 200) return { done: true, data, duplicate: resp.status === 200 };
    if (resp.status === 401) return { retry: true, signin: true, message: "your sign-in expired: sign in again (the form is kept)" };
    if (resp.status >= 500 || resp.status === 429) return { retry: true, message: data.detail || `the hub answered ${resp.status}` };
    return { failed: true, status: resp.status, data };
  }

  async function flush() {
    clearTimeout(retryTimer);
    const box = load(OUTBOX, []);
    for (const item of [...box]) {
      if (!token()) { needSignin(); break; }
      const r = await sendOne(item);
      const rest = load(OUTBOX, []).filter(i => i.key !== item.key);
      if (r.retry) {
        item.tries = (item.tries || 0) + 1;
        save(OUTBOX, load(OUTBOX, []).map(i => i.key === item.key ? item : i));
        status("queued", `Not sent yet — ${r.message}. Kept on this device; retrying.`);
        if (r.signin) needSignin();
        else retryTimer = setTimeout(flush, Math.min(30000, 1000 * 2 ** Math.min(item.tries, 5)));
        break;
      }
      save(OUTBOX, rest);
      if (item.key === draftId) {
        if (r.done) sent(item, r.data, r.duplicate);
        else rejected(r);
      }
    }
    showOutbox();
  }

  function sent(item, receipt, duplicate) {
    lastReceipt = receipt; clearDraft();
    const ref = receipt.referral;
    const refText = !ref ? "" : ref.status === "held_for_consent"
      ? " The referral is held: 42 CFR Part 2 needs a consent naming the destination."
      : " The referral goes to the EHR.";
    const what = receipt.revision ? `Amendment ${receipt.revision}` : "Form";
    status(duplicate ? "duplicate" : "sent", `${what} recorded for incident ${receipt.incident_id}` +
      (duplicate ? " (already received: nothing recorded twice)." : ".") + refText);
    $("status").dataset.referral = ref ? ref.status : "";
    $("amend").hidden = false;
    document.body.dataset.submitted = receipt.submission_id;
  }
  function rejected(r) {
    if (r.status === 422 && r.data.errors) { showErrors(r.data.errors); status("invalid", "The form has errors: nothing was recorded."); }
    else status("error", `Not recorded: ${r.data.detail || "the hub answered " + r.status}.`);
  }

  function clearErrors() {
    for (const p of document.querySelectorAll(".error")) { p.hidden = true; p.textContent = ""; }
    for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    $("summary").hidden = true; $("summary-list").textContent = "";
  }
  function showErrors(errors) {
    clearErrors();
    for (const e of errors) {
      const key = e.field.replace(/^body\./, "").replaceAll(".", "-").replace(/-\d+$/, "");
      const p = $("err-" + key) || $("err-" + key.split("-")[0]);
      const control = $(key) || $(key.split("-")[0]);
      if (p) { p.hidden = false; p.textContent = (p.textContent ? p.textContent + " " : "") + e.message; }
      if (control && control.tagName !== "DIV") { control.setAttribute("aria-invalid", "true"); if (p) control.setAttribute("aria-describedby", p.id); }
      const li = document.createElement("li"); const a = document.createElement("a");
      a.href = "#" + (control ? control.id : "form"); a.textContent = `${e.field}: ${e.message}`;
      a.addEventListener("click", ev => { ev.preventDefault(); (control || $("form")).focus(); });
      li.appendChild(a); $("summary-list").appendChild(li);
    }
    $("summary").hidden = false; $("summary").focus();
  }

  function submit(ev) {
    ev.preventDefault(); clearErrors();
    let item;
    if (amendingId) {
      item = { key: draftId, kind: "amendment", submission_id: amendingId,
        body: { ...body(), amendment_id: draftId, reason: $("reason").value.trim() } };
    } else {
      const incident = selectedIncident();
      if (!incident) { showErrors([{ field: "incident_id", message: "choose the CAD incident this form is about" }]); return; }
      item = { key: draftId, kind: "submission", body: { ...body(), submission_id: draftId, incident_id: incident } };
    }
    saveDraft();
    const box = load(OUTBOX, []).filter(i => i.key !== item.key);
    box.push(item); save(OUTBOX, box);
    status("queued", "Sending…");
    flush();
  }

  // --- incident search ---------------------------------------------------------------------
  function showIncidents(list, selected) {
    const box = $("results"); box.textContent = "";
    if (!list.length) { const p = document.createElement("p"); p.className = "none"; p.textContent = "No incidents found."; box.appendChild(p); return; }
    for (const [n, inc] of list.entries()) {
      const l = document.createElement("label");
      const i = document.createElement("input"); i.type = "radio"; i.name = "incident_id"; i.value = inc.incident_id;
      i.id = "incident-" + n;
      i.dataset.incident = JSON.stringify(inc); i.checked = inc.incident_id === selected;
      i.addEventListener("change", saveDraft);
      const when = inc.received_at ? new Date(inc.received_at).toLocaleString() : "";
      const area = [inc.district, inc.beat].filter(Boolean).join(" / ");
      l.append(i, ` ${inc.incident_id} — ${when} — ${(inc.call_category || "").replaceAll("_", " ")}` +
        (inc.behavioral_health ? " (behavioral health)" : "") + (area ? ` — ${area}` : ""));
      box.appendChild(l);
    }
  }
  async function search() {
    const q = new URLSearchParams();
    if (val("search-q")) q.set("q", val("search-q"));
    if (val("search-date")) { q.set("from", val("search-date")); q.set("to", val("search-date")); }
    if (val("search-area")) q.set("area", val("search-area"));
    try {
      const r = await api("/v1/intake/incidents?" + q);
      if (r.status === 401) { needSignin(); return; }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      showIncidents((await r.json()).incidents, selectedIncident());
    } catch (e) { status("error", `Could not search incidents (${e.message}); the draft is kept.`); }
  }

  // --- sign-in and start -------------------------------------------------------------------
  function needSignin() { $("signin").hidden = false; }
  async function signin() {
    const t = $("token").value.trim(); if (!t) return;
    sessionStorage.setItem(TOKEN, t); $("token").value = ""; $("signin").hidden = true;
    await start();
  }
  function newForm() {
    amendingId = null; draftId = uuid(); $("form").reset(); $("results").textContent = "";
    $("encounter_at").value = isoToLocal(new Date().toISOString());  // forms are filled right after the call
    $("amend").hidden = true; clearErrors(); status("idle", ""); toggles(); saveDraft();
    $("search-q").focus();
  }
  function amend() {
    if (!lastReceipt) return;
    amendingId = lastReceipt.submission_id; draftId = uuid(); toggles(); saveDraft();
    status("idle", ""); $("reason").focus();
  }

  async function start() {
    const r = await api("/v1/intake/options").catch(() => null);
    if (r === null) { status("queued", "The hub cannot be reached; the form works offline and sends when it can."); }
    else if (r.status === 401) { needSignin(); status("error", "Sign in to use the form."); return; }
    else if (!r.ok) { status("error", `The intake is not available (HTTP ${r.status}).`); return; }
    else { options = await r.json(); save("hub.intake.options", options); }
    options = options || load("hub.intake.options", null);
    if (!options) return;
    $("who").textContent = `Signed in as ${options.sub}, program ${options.program}.`;
    if (!$("mode").options.length) fillOptions(options);
    $("form").hidden = false;
    const draft = load(DRAFT, null);
    if (draft && draft.id) { draftId = draft.id; amendingId = draft.amending || null; $("reason").value = draft.reason || "";
      fill({ ...draft.form, incident: draft.incident }); }
    else newForm();
    toggles(); showOutbox();
    document.body.dataset.ready = "1";
    flush();
  }

  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) { sessionStorage.setItem(TOKEN, decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  $("form").addEventListener("submit", submit);
  $("form").addEventListener("input", saveDraft);
  $("form").addEventListener("change", () => { toggles(); saveDraft(); });
  $("search-button").addEventListener("click", search);
  $("search-q").addEventListener("keydown", e => { if (e.key === "Enter") { e.preventDefault(); search(); } });
  $("signin-button").addEventListener("click", signin);
  $("new-form").addEventListener("click", newForm);
  $("amend").addEventListener("click", amend);
  window.addEventListener("online", flush);
  if (token()) start(); else { needSignin(); document.body.dataset.ready = "signin"; }
})();
