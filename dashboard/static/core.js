/* evalwatch dashboard, shared by every view module: the API client, the toast, times in the hub's
   zone, DOM helpers, and who the page runs as (me, can, cameras).  Its top level waits for the
   UI strings and the boot requests, so a module that imports it starts with all of that ready.
   Every user-visible string comes from i18n (t(key), a global of i18n.js). */
await window.i18n.ready;
export const $ = (id) => document.getElementById(id);
export const ev = (window.evalwatch = { received: [], beeps: 0, replay: {} });
let csrf = "";

// ---- API ------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, body) { super(window.i18n.errorText(body)); this.status = status; this.body = body; }
}
export async function api(method, url, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, credentials: "same-origin",
                             body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, null);
  }
  if (res.status === 401 && url !== "/api/auth/login") { location.href = "/login"; throw new ApiError(401, null); }
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}
let toastTimer = null;
export function toast(msg) {
  const el = $("toast");
  el.textContent = msg;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 5000);
}
export async function guarded(fn) {
  try { return await fn(); } catch (e) { toast(e.message || t("common.network_error")); return undefined; }
}
// Every time is shown in the hub's zone (hub.timezone, from /api/auth/me), not the browser's.
export let hubTz = "Asia/Shanghai";
export const fmtMs = (ms) => new Date(ms).toLocaleString(window.i18n.lang, { hour12: false, timeZone: hubTz });
export const fmtTime = (iso) => (iso ? fmtMs(new Date(iso).getTime()) : "");
function zoneParts(ms) { // wall-clock fields of the instant ms in the hub's zone
  const f = new Intl.DateTimeFormat("en-US", { timeZone: hubTz, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const p = {};
  for (const x of f.formatToParts(new Date(ms))) p[x.type] = x.value;
  return p;
}
function zoneOffsetMs(ms) {
  const p = zoneParts(ms);
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
}
/* "YYYY-MM-DDTHH:MM[:SS]" read as wall-clock time in the hub's zone -> epoch ms (NaN if invalid). */
export function zonedToMs(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(v || "");
  if (!m) return NaN;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let ms = guess - zoneOffsetMs(guess);
  ms = guess - zoneOffsetMs(ms); // second pass: exact across DST changes
  return ms;
}
/* epoch ms -> "YYYY-MM-DDTHH:MM:SS" wall-clock in the hub's zone (datetime-local inputs). */
export function msToZoned(ms) {
  const p = zoneParts(ms);
  return p.year + "-" + p.month + "-" + p.day + "T" + (p.hour === "24" ? "00" : p.hour) + ":" + p.minute + ":" + p.second;
}
export const ruleName = (r) => t("rule." + r, t("rule.unknown"));
export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
export const camKey = (o) => o.site + "/" + o.room + "/" + o.camera;

// ---- boot -----------------------------------------------------------------------------
export const me = await api("GET", "/api/auth/me");
csrf = me.csrf;
if (me.timezone) {
  try { new Intl.DateTimeFormat("en-US", { timeZone: me.timezone }); hubTz = me.timezone; } catch (e) { /* keep default */ }
}
ev.timezone = hubTz;
ev.fmtTime = fmtTime;
export const can = {
  wall: ["admin", "supervisor", "observer"].includes(me.role),
  handle: ["admin", "supervisor"].includes(me.role),
  replay: ["admin", "supervisor", "auditor"].includes(me.role),
  export: ["admin", "auditor"].includes(me.role),
  manage: ["admin", "supervisor"].includes(me.role),
};

export const sitesDoc = await api("GET", "/api/sites");
export const cameras = [];
for (const s of sitesDoc.sites) for (const r of s.rooms) for (const c of r.cameras) {
  cameras.push({ site: s.id, siteName: s.name, room: r.id, roomName: r.name, camera: c.id, name: c.name, seats: c.seats });
}

/* The view on screen (set by app.js when the route changes). */
export let current = null;
export function setCurrent(view) { current = view; }
