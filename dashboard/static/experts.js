/* evalwatch dashboard: the expert register and credit records.  Routes:
   #experts (the register; admins import and edit), #experts/<code> (the expert page: every
   credit record with its revision trail), #experts/judge/<eventId> (confirm an alert as a
   violation or dismiss it; supervisors and admins).  Observers get codes only: the API sends
   them no names. */
import { $, api, can, el, fmtTime, guarded, me, ruleName, toast } from "./core.js";

export const expertsView = (function () {
  let arg = [];
  let categories = null;

  async function cats() {
    if (!categories) categories = (await guarded(() => api("GET", "/api/credit/categories")))?.categories || [];
    return categories;
  }

  function open(a) {
    arg = a || [];
    $("ex-import").hidden = me.role !== "admin";
    $("ex-feed").hidden = !["admin", "supervisor", "auditor"].includes(me.role);
    if (arg[0] === "judge" && arg[1]) return judgeForm(+arg[1]);
    if (arg[0]) return page(decodeURIComponent(arg[0]));
    return list();
  }

  function panel() {
    const p = $("ex-panel");
    p.textContent = "";
    return p;
  }

  async function list() {
    const data = await guarded(() => api("GET", "/api/experts"));
    if (!data) return;
    const p = panel();
    const table = el("table", "experts");
    const head = el("tr");
    for (const k of ["experts.code", "experts.name", "experts.phone", "experts.active", "experts.violations"]) {
      head.appendChild(el("th", "", t(k)));
    }
    table.appendChild(head);
    for (const x of data.experts) {
      const tr = el("tr");
      const a = el("a", "", x.code);
      a.href = "#experts/" + encodeURIComponent(x.code);
      const td = el("td");
      td.appendChild(a);
      tr.appendChild(td);
      for (const v of [x.name ?? t("experts.hidden"), x.phone ?? "", x.active ? t("common.yes") : t("common.no"),
                       String(x.violations)]) {
        tr.appendChild(el("td", "", v));
      }
      table.appendChild(tr);
    }
    p.appendChild(table);
    if (!data.experts.length) p.appendChild(el("p", "empty", t("experts.none")));
  }

  function revisionRows(rec) {
    const ul = el("ul", "revisions");
    for (const v of rec.revisions) {
      const li = el("li", "", "#" + v.rev + " " + fmtTime(v.at) + " " + v.actor + " · " + t("credit_action." + v.action)
        + " · " + t("decision." + v.decision) + (v.category ? " · " + v.category : "")
        + (v.changed.length ? " (" + v.changed.join(", ") + ")" : "") + (v.reason ? " — " + v.reason : ""));
      ul.appendChild(li);
    }
    return ul;
  }

  function reviseForm(rec) {
    const f = el("form", "revise");
    const what = el("select");
    for (const k of ["statement", "appeal_open", "appeal_upheld", "appeal_overturned", "note"]) {
      const o = el("option", "", t("credit_revise." + k));
      o.value = k;
      what.appendChild(o);
    }
    const text = el("textarea");
    text.maxLength = 4000;
    text.placeholder = t("credit.text_placeholder");
    const btn = el("button", "", t("credit.save"));
    btn.type = "submit";
    f.append(what, text, btn);
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = text.value.trim();
      const body = what.value === "statement" ? { statement: v } : what.value === "note" ? { note: v }
        : { appeal: what.value.replace("appeal_", ""), reason: v };
      const out = await guarded(() => api("POST", "/api/credit/" + rec.id + "/revise", body));
      if (out) { toast(t("credit.saved")); page(arg[0]); }
    });
    return f;
  }

  async function page(code) {
    const data = await guarded(() => api("GET", "/api/experts/" + encodeURIComponent(code)));
    if (!data) return;
    const p = panel();
    const x = data.expert;
    p.appendChild(el("h2", "", x.code + (x.name ? " " + x.name : "")));
    p.appendChild(el("p", "", t("experts.violations") + ": " + x.violations
      + (x.phone ? " · " + t("experts.phone") + ": " + x.phone : "")));
    if (!data.records.length) p.appendChild(el("p", "", t("credit.none")));
    for (const r of data.records) {
      const box = el("div", "credit-record dec-" + r.decision);
      box.appendChild(el("h3", "", fmtTime(r.occurred_at) + " · " + ruleName(r.rule) + " · "
        + t("decision." + r.decision) + (r.category ? " · " + r.category : "")));
      box.appendChild(el("p", "", r.site + "/" + r.room + "/" + r.camera + " " + (r.seat || "")
        + (r.session_code ? " · " + r.session_code : "") + " · #" + r.event_id));
      if (r.note) box.appendChild(el("p", "", t("credit.note") + ": " + r.note));
      if (r.statement) box.appendChild(el("p", "", t("credit.statement") + ": " + r.statement));
      if (r.appeal) box.appendChild(el("p", "", t("credit.appeal") + ": " + t("appeal." + r.appeal)));
      const segs = (r.evidence?.segments || []).map((g) => g.seq).join(", ");
      if (r.evidence) box.appendChild(el("p", "hint", t("credit.evidence") + ": " + r.evidence.camera + " "
        + fmtTime(r.evidence.footage_start) + " – " + fmtTime(r.evidence.footage_end) + " · seq " + (segs || "-")));
      box.appendChild(revisionRows(r));
      if (can.handle) box.appendChild(reviseForm(r));
      p.appendChild(box);
    }
  }

  async function judgeForm(eventId) {
    const evt = await guarded(() => api("GET", "/api/events/" + eventId));
    if (!evt) return;
    const p = panel();
    p.appendChild(el("h2", "", t("credit.judge_title") + " #" + eventId));
    p.appendChild(el("p", "", fmtTime(evt.started_at) + " · " + ruleName(evt.rule) + " · " + evt.site + "/" + evt.room
      + "/" + (evt.seat || "-") + " · " + t("experts.code") + ": " + (evt.expert_code || "-")
      + (evt.expert_name ? " " + evt.expert_name : "")));
    const f = el("form", "judge");
    const dec = el("select");
    dec.id = "cj-decision";
    for (const d of ["violation", "dismissed"]) {
      const o = el("option", "", t("decision." + d));
      o.value = d;
      dec.appendChild(o);
    }
    const cat = el("select");
    cat.id = "cj-category";
    for (const c of await cats()) {
      const o = el("option", "", c);
      o.value = c;
      cat.appendChild(o);
    }
    const note = el("textarea");
    note.id = "cj-note";
    note.maxLength = 2000;
    note.placeholder = t("credit.text_placeholder");
    const btn = el("button", "", t("credit.save"));
    btn.type = "submit";
    f.append(dec, cat, note, btn);
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { decision: dec.value, note: note.value };
      if (dec.value === "violation") body.category = cat.value;
      const out = await guarded(() => api("POST", "/api/events/" + eventId + "/credit", body));
      if (!out) return;
      toast(t("credit.saved"));
      location.hash = out.expert_code ? "experts/" + encodeURIComponent(out.expert_code) : "experts";
    });
    p.appendChild(f);
  }

  async function importFile() {
    const file = $("ex-file").files[0];
    if (!file) return;
    const res = await fetch("/api/experts/import?filename=" + encodeURIComponent(file.name), {
      method: "POST", credentials: "same-origin", body: file,
      headers: { "X-CSRF-Token": me.csrf, "Content-Type": file.type || "application/octet-stream" },
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    const out = $("ex-result");
    out.textContent = "";
    if (!res.ok) { out.textContent = window.i18n.errorText(data); return; }
    out.appendChild(el("p", "", t("experts.imported").replace("{created}", data.created)
      .replace("{updated}", data.updated).replace("{errors}", data.errors.length)));
    const ul = el("ul", "import-errors");
    for (const e of data.errors) ul.appendChild(el("li", "", t("experts.line") + " " + e.line + ": " + e.problem));
    out.appendChild(ul);
    list();
  }

  $("ex-import-btn").addEventListener("click", importFile);
  return { open, relabel: () => open(arg) };
})();
