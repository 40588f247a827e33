/* evalwatch dashboard: site agents (admin): enrolment codes, what each agent reports in its
   heartbeats (flagged: clock off by more than 2 s, spool over 80 %, silent; refreshed every 5 s
   while on screen), credentials. */
import { $, api, current, el, fmtTime, guarded, sitesDoc } from "./core.js";

export const agentsView = (function () {
  const siteSel = $("ag-site");
  for (const s of sitesDoc.sites) siteSel.appendChild(new Option(s.name ? s.id + " " + s.name : s.id, s.id));

  function num(v, digits) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }

  async function load() {
    const data = await guarded(() => api("GET", "/api/agents"));
    if (!data) return;
    const body = $("agents-body");
    body.textContent = "";
    for (const a of data.agents) {
      const tr = el("tr");
      tr.dataset.flags = a.flags.join(" ");
      const flags = el("td", "badges");
      for (const f of a.flags) flags.appendChild(el("span", "badge", t("agentflag." + f)));
      if (!a.flags.length) flags.appendChild(el("span", "badge ok", t("agentflag.ok")));
      const cams = a.cameras.map((c) => c.room + "/" + c.camera + ": " + (c.connection || "-")).join(", ");
      for (const v of [a.site, a.host || "", a.credential_id || t("agents.token"), a.version || "", a.os || "",
                       num(a.cpu_load, 2), num(a.spool_percent, 1), num(a.clock_offset_s, 2), cams,
                       fmtTime(a.last_seen)]) {
        tr.appendChild(el("td", "", v));
      }
      tr.appendChild(flags);
      body.appendChild(tr);
    }
    $("agents-empty").hidden = data.agents.length > 0;
    const cbody = $("agent-creds-body");
    cbody.textContent = "";
    for (const c of data.credentials) {
      const tr = el("tr");
      for (const v of [c.site, c.id, fmtTime(c.created_at), c.enrolled_ip || "",
                       c.revoked_at ? fmtTime(c.revoked_at) + " (" + (c.revoked_by || "") + ")" : ""]) {
        tr.appendChild(el("td", "", v));
      }
      const td = el("td");
      if (!c.revoked_at) {
        const b = el("button", "", t("agents.revoke"));
        b.addEventListener("click", async () => {
          if (!confirm(t("agents.revoke_confirm"))) return;
          const out = await guarded(() => api("POST", "/api/sites/" + encodeURIComponent(c.site) + "/revoke-agent",
                                              { id: c.id }));
          if (out) load();
        });
        td.appendChild(b);
      }
      tr.appendChild(td);
      cbody.appendChild(tr);
    }
    $("agent-creds-empty").hidden = data.credentials.length > 0;
  }
  $("ag-code-form").addEventListener("submit", async (x) => {
    x.preventDefault();
    const hours = parseFloat($("ag-hours").value);
    const out = await guarded(() => api("POST", "/api/sites/" + encodeURIComponent(siteSel.value) + "/enroll-codes",
                                        { hours: Number.isFinite(hours) ? hours : null }));
    if (!out) return;
    $("ag-code").textContent = out.code;
    $("ag-code-until").textContent = fmtTime(out.expires_at);
    $("ag-code-box").hidden = false;
  });
  $("ag-refresh").addEventListener("click", load);
  // Heartbeats arrive every few seconds: keep the list current while the view is on screen.
  setInterval(() => { if (current === "agents" && !document.hidden) load(); }, 5000);
  return { load };
})();
