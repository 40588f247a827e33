/* evalwatch dashboard: the header (who is signed in, the hub's time zone, language, logout) and
   the navigation buttons the role may not use, hidden. */
import { $, api, guarded, hubTz, me } from "./core.js";

export const showTz = () => { $("tz-label").textContent = t("common.times_in") + " " + hubTz; };
showTz();
$("me-name").textContent = me.display_name || me.username;
export const showRole = () => { $("me-role").textContent = t("role." + me.role); };
showRole();
document.querySelectorAll("[data-roles]").forEach((b) => {
  if (!b.dataset.roles.split(" ").includes(me.role)) b.hidden = true;
});
$("lang-switch").addEventListener("click", () => window.i18n.toggle());
$("logout").addEventListener("click", async () => {
  await guarded(() => api("POST", "/api/auth/logout"));
  location.href = "/login";
});
