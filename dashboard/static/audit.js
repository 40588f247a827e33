/* evalwatch dashboard: the audit log (admin, auditor) — filtered by user, action, target (prefix)
   and time (the hub's zone), newest first, 200 at a time ("older entries" fetches the next 200). */
import { $, api, el, fmtTime, guarded, toast, zonedToMs } from "./core.js";

export const auditView = (function () {
  const PAGE = 200;
  const actionName = (a) => t("audit_action." + a, a);
  let lastId = null;  // the oldest row shown: the next page starts below it
  let shown = 0;

  function fillActions() {  // translated names, sorted by them; the value stays the code
    const sel = $("au-action");
    const keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    const codes = window.i18n.keys("audit_action.").map((k) => k.slice("audit_action.".length));
    codes.sort((a, b) => actionName(a).localeCompare(actionName(b), window.i18n.lang));
    for (const c of codes) sel.appendChild(new Option(actionName(c), c));
    sel.value = keep;
  }

  function filters() {  // the toolbar's filters as query parameters
    const q = new URLSearchParams();
    for (const [param, id] of [["actor", "au-actor"], ["action", "au-action"], ["target", "au-target"]]) {
      const v = $(id).value.trim();
      if (v) q.set(param, v);
    }
    for (const [param, id] of [["since", "au-since"], ["until", "au-until"]]) {
      const ms = zonedToMs($(id).value);
      if (Number.isFinite(ms)) q.set(param, new Date(ms).toISOString());
    }
    return q;
  }

  function query(older) {
    const q = filters();
    q.set("limit", String(PAGE));
    if (older && lastId !== null) q.set("before_id", String(lastId));
    return "/api/audit?" + q.toString();
  }

  // The export takes the filters of the moment (the whole answer, up to 100,000 rows); a refusal
  // (too many rows, a bad range) is a toast, not a page of JSON.
  $("au-export").addEventListener("click", async (x) => {
    x.preventDefault();
    const q = filters();
    q.set("lang", window.i18n.lang);
    const res = await fetch("/api/audit/export?" + q.toString(), { credentials: "same-origin" });
    if (!res.ok) {
      toast(window.i18n.errorText(await res.json().catch(() => null)));
      return;
    }
    const name = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
    const a = el("a");
    a.href = URL.createObjectURL(await res.blob());
    a.download = name ? name[1] : "audit.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  });

  function row(a) {
    const tr = el("tr");
    tr.dataset.action = a.action;
    const action = el("td", "", actionName(a.action));
    action.title = a.action;
    for (const v of [fmtTime(a.at), a.actor + (a.role ? " (" + t("role." + a.role) + ")" : "")]) {
      tr.appendChild(el("td", "", v));
    }
    tr.appendChild(action);
    for (const v of [a.target || "", a.ip || "", a.details ? JSON.stringify(a.details) : ""]) {
      tr.appendChild(el("td", "", v));
    }
    return tr;
  }

  async function load(older = false) {
    fillActions();
    const data = await guarded(() => api("GET", query(older)));
    if (!data) return;
    const body = $("audit-body");
    if (!older) { body.textContent = ""; shown = 0; }
    for (const a of data.entries) body.appendChild(row(a));
    shown += data.entries.length;
    if (data.entries.length) lastId = data.entries[data.entries.length - 1].id;
    $("audit-empty").hidden = shown > 0;
    $("au-older").hidden = !data.more;
    $("au-count").textContent = shown ? t("audit.shown").replace("{n}", String(shown)) : "";
  }

  $("au-form").addEventListener("submit", (x) => { x.preventDefault(); load(false); });
  $("au-older").addEventListener("click", () => load(true));
  return { load: () => load(false) };
})();
