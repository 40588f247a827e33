/* evalwatch dashboard: the audit log. */
import { $, api, el, fmtTime, guarded } from "./core.js";

export const auditView = (function () {
  async function load() {
    const data = await guarded(() => api("GET", "/api/audit?limit=300"));
    if (!data) return;
    const body = $("audit-body");
    body.textContent = "";
    for (const a of data.entries) {
      const tr = el("tr");
      for (const v of [fmtTime(a.at), a.actor + (a.role ? " (" + t("role." + a.role) + ")" : ""), a.action,
                       a.target || "", a.ip || "", a.details ? JSON.stringify(a.details) : ""]) {
        tr.appendChild(el("td", "", v));
      }
      body.appendChild(tr);
    }
  }
  return { load };
})();
