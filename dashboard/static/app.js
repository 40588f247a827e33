/* evalwatch dashboard: live wall (WebRTC), alerts (WebSocket push + workflow), replay, admin.
   Vanilla JS, native ES modules (no build step), no external resources.  This entry routes between
   the views; each view is a module of its own, the shared pieces are in core.js.  Every
   user-visible string comes from i18n (t(key)). */
import { $, current, setCurrent } from "./core.js";
import { showRole, showTz } from "./header.js";
import { wall } from "./wall.js";
import { alerts } from "./alerts.js";
import { replay } from "./replay.js";
import { users } from "./users.js";
import { agentsView } from "./agents.js";
import { auditView } from "./audit.js";
import { sessionsView } from "./sessions.js";
import { expertsView } from "./experts.js";
import { statsView } from "./stats.js";
import { notificationLog } from "./notices.js";

const views = ["wall", "alerts", "sessions", "experts", "stats", "replay", "users", "agents", "audit", "notifications"];
function show(view, arg) {
  const allowed = [...document.querySelectorAll("#nav button")].filter((b) => !b.hidden).map((b) => b.dataset.view);
  if (!allowed.includes(view)) view = allowed[0];
  setCurrent(view);
  for (const v of views) $("view-" + v).hidden = v !== view;
  document.querySelectorAll("#nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  if (view === "wall") wall.visible(true); else wall.visible(false);
  if (view === "alerts") alerts.load();
  if (view === "replay") replay.open(arg);
  if (view === "sessions") sessionsView.open(arg);
  if (view === "experts") expertsView.open(arg);
  if (view === "stats") statsView.open(arg);
  if (view === "users") users.load();
  if (view === "agents") agentsView.load();
  if (view === "audit") auditView.load();
  if (view === "notifications") notificationLog.load();
}
document.querySelectorAll("#nav button").forEach((b) =>
  b.addEventListener("click", () => { location.hash = b.dataset.view; }));
window.addEventListener("hashchange", route);
function route() {
  const [view, ...rest] = location.hash.replace(/^#/, "").split("/");
  show(view || "wall", rest);
}

// Language switch: every string the scripts wrote is written again in the new language.
document.addEventListener("i18n-changed", () => {
  showRole();
  showTz();
  wall.relabel();
  alerts.renderRecent();
  alerts.render();
  replay.relabel();
  sessionsView.relabel();
  if (current === "experts") expertsView.relabel();
  if (current === "stats") statsView.relabel();
  if (current === "users") users.load();
  if (current === "agents") agentsView.load();
  if (current === "audit") auditView.load();
  if (current === "notifications") notificationLog.load();
});
route();
document.body.dataset.ready = "1";
