/* evalwatch dashboard: the alert list and its workflow, fed by the WebSocket push. */
import { $, api, camKey, cameras, can, current, el, ev, fmtTime, guarded, ruleName, toast } from "./core.js";
import { beep } from "./sound.js";
import { wall } from "./wall.js";

/** Updates arriving within this many ms are drawn together. */
const RENDER_COALESCE_MS = 100;

export const alerts = (function () {
  const byId = new Map();
  const roomSel = $("f-room");
  const rooms = new Set();
  for (const c of cameras) {
    const k = c.site + "/" + c.room;
    if (!rooms.has(k)) { rooms.add(k); roomSel.appendChild(new Option(c.siteName + " / " + c.roomName, k)); }
  }
  const roomName = (e) => {
    const c = cameras.find((x) => x.site === e.site && x.room === e.room && x.camera === e.camera);
    return c ? c.siteName + " / " + c.roomName + " / " + (c.name || c.camera) : camKey(e);
  };

  async function load() {
    const p = new URLSearchParams();
    const st = $("f-status").value;
    if (st === "open") { p.append("status", "new"); p.append("status", "acknowledged"); }
    else if (st) p.append("status", st);
    if ($("f-rule").value) p.set("rule", $("f-rule").value);
    if (roomSel.value) { const [s, r] = roomSel.value.split("/"); p.set("site", s); p.set("room", r); }
    const data = await guarded(() => api("GET", "/api/events?" + p.toString()));
    if (!data) return;
    for (const e of data.items) byId.set(e.id, e);
    render(data.items);
  }
  for (const id of ["f-status", "f-rule", "f-room"]) $(id).addEventListener("change", load);
  $("f-refresh").addEventListener("click", load);

  function matches(e) {
    const st = $("f-status").value;
    if (st === "open" && !["new", "acknowledged"].includes(e.status)) return false;
    if (st && st !== "open" && e.status !== st) return false;
    if ($("f-rule").value && e.rule !== $("f-rule").value) return false;
    if (roomSel.value && e.site + "/" + e.room !== roomSel.value) return false;
    return true;
  }

  function render(list) {
    const body = $("alerts-body");
    body.textContent = "";
    const rows = (list || [...byId.values()].filter(matches)).sort((a, b) => (a.started_at < b.started_at ? 1 : -1));
    for (const e of rows) body.appendChild(row(e));
    $("alerts-empty").hidden = rows.length > 0;
  }

  function row(e) {
    const tr = el("tr", "st-" + e.status);
    tr.dataset.eventId = e.id;
    tr.appendChild(el("td", "", fmtTime(e.started_at)));
    const rule = el("td", "", ruleName(e.rule));
    if (e.kind) rule.appendChild(el("div", "hint", t("kind." + e.kind, e.kind)));
    if (e.origin === "agent") rule.appendChild(el("div", "hint origin-agent", t("origin.agent")));
    tr.appendChild(rule);
    tr.appendChild(el("td", "", roomName(e)));
    const seat = el("td", "", e.seat || "");
    if (e.expert_code) seat.appendChild(el("div", "hint expert", e.expert_code + (e.expert_name ? " " + e.expert_name : "")));
    tr.appendChild(seat);
    const snap = el("td");
    if (e.snapshot_url) {
      const img = el("img", "snap");
      img.src = e.snapshot_url;
      img.loading = "lazy";
      img.addEventListener("click", () => window.open(e.snapshot_url, "_blank"));
      snap.appendChild(img);
    }
    tr.appendChild(snap);
    const st = el("td", "status", t("status." + e.status));
    if (e.acknowledged_by) st.appendChild(el("div", "hint", t("alerts.acknowledged_by") + ": " + e.acknowledged_by));
    if (e.resolved_by) st.appendChild(el("div", "hint", t("alerts.resolved_by") + ": " + e.resolved_by));
    if (e.note) st.appendChild(el("div", "hint note", e.note));
    tr.appendChild(st);
    tr.appendChild(actions(e));
    return tr;
  }

  function actions(e) {
    const td = el("td");
    const box = el("div", "actions");
    td.appendChild(box);
    const act = async (path, body) => {
      const out = await guarded(() => api("POST", "/api/events/" + e.id + "/" + path, body));
      if (out) upsert(out);
    };
    if (can.handle && e.status === "new") {
      const b = el("button", "ack", t("alerts.ack"));
      b.addEventListener("click", () => act("ack"));
      box.appendChild(b);
    }
    if (can.handle && (e.status === "new" || e.status === "acknowledged")) {
      const note = el("textarea", "note-input");
      note.placeholder = t("alerts.note_placeholder");
      note.maxLength = 2000;
      if (e.status === "acknowledged") {
        box.appendChild(note);
        const r = el("button", "resolve", t("alerts.resolve"));
        r.addEventListener("click", () => act("resolve", { note: note.value, false_alarm: false }));
        box.appendChild(r);
      }
      const f = el("button", "false-alarm", t("alerts.false_alarm"));
      f.addEventListener("click", () => act("resolve", { note: note.value, false_alarm: true }));
      box.appendChild(f);
    }
    if (can.handle) {
      const j = el("button", "judge", t("credit.judge"));
      j.addEventListener("click", () => { location.hash = "experts/judge/" + e.id; });
      box.appendChild(j);
    }
    if (can.replay) {
      const g = el("button", "footage", t("alerts.footage"));
      g.addEventListener("click", () => {
        location.hash = "replay/" + camKey(e) + "/" + new Date(e.started_at).getTime();
      });
      box.appendChild(g);
    }
    return td;
  }

  // One redraw for a burst of updates: rebuilding the whole list on every message made each
  // alert cost O(alerts held) and, at 40 cameras, kept the page seconds behind the WebSocket
  // (bench/scale.py).
  let redraw = null;
  function scheduleRender() {
    if (redraw !== null) return;
    redraw = setTimeout(() => {
      redraw = null;
      if (current === "alerts") render();
      renderRecent();
    }, RENDER_COALESCE_MS);
  }

  function upsert(e) {
    const prev = byId.get(e.id) || {};
    const merged = Object.assign({ status: "new" }, prev, e);
    byId.set(e.id, merged);
    scheduleRender();
    return merged;
  }

  function renderRecent() {
    const ul = $("recent-alerts");
    ul.textContent = "";
    const open = [...byId.values()].sort((a, b) => (a.started_at < b.started_at ? 1 : -1)).slice(0, 30);
    for (const e of open) {
      const li = el("li", e.status);
      li.dataset.eventId = e.id;
      li.appendChild(el("div", "", ruleName(e.rule) + (e.seat ? " · " + e.seat : "")));
      li.appendChild(el("div", "hint", roomName(e) + " · " + fmtTime(e.started_at)));
      li.appendChild(el("div", "hint", t("status." + e.status)));
      li.addEventListener("click", () => { location.hash = "alerts"; });
      ul.appendChild(li);
    }
  }

  function onMessage(msg) {
    if (msg.type === "resync") { load(); return; }
    if (msg.type === "warning") { // an early warning (sessions/earlywarning.py): the statistics page lists it
      ev.warnings = [...(ev.warnings || []), msg];
      toast(t("warning_kind." + msg.kind) + ": " + msg.subject);
      document.dispatchEvent(new CustomEvent("evalwatch-warning", { detail: msg }));
      return;
    }
    if (msg.type !== "event") return;
    const e = msg.event;
    if (e.started_at === undefined && !byId.has(e.id)) return;
    const merged = upsert(e);
    if (e.phase === "opened") {
      ev.received.push({ id: e.id, at: Date.now() / 1000, hub_sent_at: msg.hub_sent_at, event: e });
      beep();
      wall.flash(merged);
    }
  }

  // initial list of open alerts for the side panel
  (async () => {
    const data = await guarded(() => api("GET", "/api/events?status=new&status=acknowledged&limit=100"));
    if (data) { for (const e of data.items) byId.set(e.id, e); renderRecent(); }
  })();
  return { load, onMessage, render, renderRecent, byId };
})();

// WebSocket push (reconnects with backoff)
(function connectWs(delay) {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/events");
  const state = $("ws-state");
  ws.onopen = () => { state.classList.add("ok"); state.dataset.i18nTitle = "wall.ws_connected"; state.title = t("wall.ws_connected"); delay = 1000; };
  ws.onmessage = (m) => { try { alerts.onMessage(JSON.parse(m.data)); } catch (e) { /* ignore malformed */ } };
  ws.onclose = (e) => {
    state.classList.remove("ok");
    state.dataset.i18nTitle = "wall.ws_disconnected";
    state.title = t("wall.ws_disconnected");
    if (e.code === 4401) { location.href = "/login"; return; }
    setTimeout(() => connectWs(Math.min(delay * 2, 15000)), delay);
  };
  const ping = setInterval(() => { if (ws.readyState === 1) ws.send("ping"); else if (ws.readyState > 1) clearInterval(ping); }, 25000);
})(1000);
