/* evalwatch dashboard: user accounts (admin). */
import { $, api, el, fmtTime, guarded, toast } from "./core.js";

export const users = (function () {
  async function load() {
    const data = await guarded(() => api("GET", "/api/users"));
    if (!data) return;
    const body = $("users-body");
    body.textContent = "";
    for (const u of data.users) {
      const tr = el("tr");
      tr.appendChild(el("td", "", u.username));
      tr.appendChild(el("td", "", u.display_name || ""));
      const roleTd = el("td");
      const sel = el("select");
      for (const r of ["admin", "supervisor", "auditor", "observer"]) sel.appendChild(new Option(t("role." + r), r));
      sel.value = u.role;
      roleTd.appendChild(sel);
      tr.appendChild(roleTd);
      const actTd = el("td");
      const active = el("input");
      active.type = "checkbox";
      active.checked = u.active;
      actTd.appendChild(active);
      tr.appendChild(actTd);
      const lockTd = el("td", "", u.locked_until && new Date(u.locked_until) > new Date() ? fmtTime(u.locked_until) : "");
      tr.appendChild(lockTd);
      const btns = el("td");
      const save = el("button", "", t("users.save"));
      save.addEventListener("click", async () => {
        const out = await guarded(() => api("PATCH", "/api/users/" + encodeURIComponent(u.username),
                                            { role: sel.value, active: active.checked }));
        if (out) toast(t("users.saved"));
      });
      const unlock = el("button", "", t("users.unlock"));
      unlock.addEventListener("click", async () => {
        const out = await guarded(() => api("PATCH", "/api/users/" + encodeURIComponent(u.username), { unlock: true }));
        if (out) load();
      });
      btns.append(save, unlock);
      tr.appendChild(btns);
      body.appendChild(tr);
    }
  }
  $("user-form").addEventListener("submit", async (x) => {
    x.preventDefault();
    const out = await guarded(() => api("POST", "/api/users", {
      username: $("u-name").value, display_name: $("u-display").value || null,
      role: $("u-role").value, password: $("u-pass").value }));
    if (out) { $("user-form").reset(); load(); }
  });
  return { load };
})();
