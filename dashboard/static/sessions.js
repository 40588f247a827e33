/* evalwatch dashboard: evaluation sessions (list, detail, seal, new session with seating). */
import { $, api, camKey, cameras, can, el, fmtTime, guarded, msToZoned, toast, zonedToMs } from "./core.js";

export const sessionsView = (function () {
  const byId = new Map();
  let selected = null;      // session dict shown in the detail panel
  let sealCheck = null;     // {ok, problems, key_id} of the selected session
  let seating = null;       // last /api/seats/assign answer (the form's seat list)
  const roomsOf = (s) => [...new Set(s.cameras.map((c) => c.site + "/" + c.room))];
  const roomLabel = (key) => {
    const [site, room] = key.split("/");
    const c = cameras.find((x) => x.site === site && x.room === room);
    return c ? c.siteName + " / " + c.roomName : key;
  };
  const statusText = (st) => t("session_status." + st, st);

  // ---- list
  async function load() {
    const st = $("s-status").value;
    const data = await guarded(() => api("GET", "/api/sessions" + (st ? "?status=" + st : "")));
    if (!data) return;
    byId.clear();
    for (const s of data.sessions) byId.set(s.id, s);
    renderList();
    if (selected && byId.has(selected.id)) select(byId.get(selected.id), false);
  }
  function renderList() {
    const body = $("sessions-body");
    body.textContent = "";
    for (const s of byId.values()) {
      const tr = el("tr");
      tr.dataset.sessionId = s.id;
      tr.classList.toggle("selected", !!selected && selected.id === s.id);
      tr.appendChild(el("td", "", s.code));
      tr.appendChild(el("td", "", s.project));
      tr.appendChild(el("td", "", s.bids.join(", ")));
      tr.appendChild(el("td", "", fmtTime(s.planned_start) + " – " + fmtTime(s.planned_end)));
      tr.appendChild(el("td", "", roomsOf(s).map(roomLabel).join("; ")));
      tr.appendChild(el("td", "status st-" + s.status, statusText(s.status)));
      tr.addEventListener("click", () => { location.hash = "sessions/" + s.id; });
      body.appendChild(tr);
    }
    $("sessions-empty").hidden = byId.size > 0;
  }
  $("s-status").addEventListener("change", load);
  $("s-refresh").addEventListener("click", load);

  // ---- detail
  async function select(s, fetchSeal) {
    selected = s;
    renderList();
    renderDetail();
    if (fetchSeal && s.status === "closed" && can.replay) {
      sealCheck = null;
      renderSeal();
      sealCheck = await guarded(() => api("GET", "/api/sessions/" + s.id + "/seal")) || { failed: true };
      if (selected && selected.id === s.id) renderSeal();
    }
  }
  async function openId(id) {
    const s = await guarded(() => api("GET", "/api/sessions/" + encodeURIComponent(id)));
    if (s) { byId.set(s.id, s); select(s, true); }
  }
  function kv(body, key, value) {
    const tr = el("tr");
    tr.appendChild(el("td", "", t(key)));
    tr.appendChild(el("td", "", value == null || value === "" ? "–" : String(value)));
    body.appendChild(tr);
  }
  function renderDetail() {
    const s = selected;
    $("session-detail").hidden = !s;
    if (!s) return;
    $("session-detail").dataset.sessionId = s.id;
    $("session-detail").dataset.status = s.status;
    $("sd-title").textContent = s.code + " · " + s.project;
    const info = $("sd-info");
    info.textContent = "";
    kv(info, "sessions.status", statusText(s.status));
    kv(info, "sessions.bids", s.bids.join(", "));
    kv(info, "sessions.planned", fmtTime(s.planned_start) + " – " + fmtTime(s.planned_end));
    kv(info, "sessions.rooms", roomsOf(s).map(roomLabel).join("; "));
    kv(info, "sessions.created", fmtTime(s.created_at) + " · " + s.created_by);
    kv(info, "sessions.started", s.started_at ? fmtTime(s.started_at) + " · " + s.started_by : "");
    kv(info, "sessions.closed", s.closed_at ? fmtTime(s.closed_at) + " · " + s.closed_by : "");
    kv(info, "sessions.seed", s.seating_seed);
    $("sd-start").hidden = !can.manage || s.status !== "scheduled";
    $("sd-close").hidden = !can.manage || s.status !== "running";
    const camSel = $("sd-camera");
    const prev = camSel.value;
    camSel.length = 0;
    for (const c of s.cameras) {
      const info2 = cameras.find((x) => camKey(x) === camKey(c));
      camSel.appendChild(new Option(info2 ? info2.siteName + " / " + info2.roomName + " / " + (info2.name || c.camera) : camKey(c), camKey(c)));
    }
    if ([...camSel.options].some((o) => o.value === prev)) camSel.value = prev;
    const canReplay = can.replay && s.status !== "scheduled";
    $("sd-replay").hidden = !canReplay;
    camSel.parentElement.hidden = !canReplay;
    const lang = window.i18n.lang === "en" ? "en" : "zh";
    const closed = s.status === "closed";
    for (const [id, fmt] of [["sd-report-html", "html"], ["sd-report-pdf", "pdf"]]) {
      $(id).hidden = !can.replay || !closed;
      $(id).href = "/api/sessions/" + s.id + "/report?format=" + fmt + "&lang=" + lang;
    }
    $("sd-export").hidden = !can.export || !closed;
    $("sd-export").href = "/api/sessions/" + s.id + "/export";
    const seats = $("sd-seats");
    seats.textContent = "";
    for (const x of s.seats) seats.appendChild(seatRow(x.site + "/" + x.room, x.seat, x.expert, x.bid));
    renderSeal();
  }
  function seatRow(room, seat, expert, bid) {
    const tr = el("tr");
    for (const v of [roomLabel(room), seat, expert, bid]) tr.appendChild(el("td", "", v));
    return tr;
  }
  function renderSeal() {
    const s = selected;
    const box = $("sd-seal-box");
    box.hidden = !s || s.status !== "closed";
    if (box.hidden) return;
    $("sd-key").textContent = s.key_id || "";
    const b = $("sd-seal-status");
    if (!can.replay) { b.hidden = true; } else if (!sealCheck) {
      b.className = "badge muted"; b.textContent = t("sessions.seal_checking"); b.dataset.ok = "";
    } else if (sealCheck.failed) {
      b.className = "badge warn"; b.textContent = t("replay.verify_unknown"); b.dataset.ok = "unknown";
    } else {
      b.className = "badge " + (sealCheck.ok ? "ok" : "");
      b.textContent = sealCheck.ok ? t("sessions.seal_ok") : t("sessions.seal_bad") + ": " + sealCheck.problems.join("; ");
      b.dataset.ok = String(sealCheck.ok);
    }
    const body = $("sd-heads");
    body.textContent = "";
    for (const h of s.heads) {
      const tr = el("tr");
      tr.appendChild(el("td", "", h.site + "/" + h.room + "/" + h.camera));
      tr.appendChild(el("td", "", String(h.first_seq)));
      tr.appendChild(el("td", "", String(h.head_seq)));
      const hash = el("td"); hash.appendChild(el("code", "", h.head_hash)); tr.appendChild(hash);
      const sig = el("td"); sig.appendChild(el("code", "", h.signature)); tr.appendChild(sig);
      tr.appendChild(el("td", "", fmtTime(h.sealed_at)));
      body.appendChild(tr);
    }
  }
  async function transition(what) {
    if (!selected) return;
    const id = selected.id;
    const out = await guarded(() => api("POST", "/api/sessions/" + id + "/" + what));
    if (out) {
      byId.set(out.id, out);
      toast(what === "start" ? t("sessions.started_ok") : t("sessions.closed_ok"));
      select(out, true);
    }
  }
  $("sd-start").addEventListener("click", () => transition("start"));
  $("sd-close").addEventListener("click", () => {
    if (window.confirm(t("sessions.close_confirm"))) transition("close");
  });
  $("sd-replay").addEventListener("click", () => {
    if (selected) location.hash = "replay/session/" + selected.id + "/" + $("sd-camera").value;
  });

  // ---- create form
  const roomBox = $("sf-rooms");
  const roomKeys = [];
  for (const c of cameras) {
    const k = c.site + "/" + c.room;
    if (roomKeys.includes(k)) continue;
    roomKeys.push(k);
    const lab = el("label");
    const cb = el("input");
    cb.type = "checkbox";
    cb.value = k;
    cb.addEventListener("change", invalidateSeating);
    lab.append(cb, document.createTextNode(" " + roomLabel(k)));
    roomBox.appendChild(lab);
  }
  for (const id of ["sf-bids", "sf-experts"]) $(id).addEventListener("input", invalidateSeating);
  let errorOf = null; // renders the form's error in the current language
  function formError(key) { errorOf = key ? () => t(key) : null; showFormError(); }
  function formApiError(e) { errorOf = () => (e.body ? window.i18n.errorText(e.body) : e.message); showFormError(); }
  function showFormError() { $("sf-error").textContent = errorOf ? errorOf() : ""; }
  function invalidateSeating() {
    seating = null;
    $("sf-seating").hidden = true;
    $("sf-create").disabled = true;
  }
  function bidsOf() {
    return [...new Set($("sf-bids").value.split(/[,，;；\s]+/).map((x) => x.trim()).filter(Boolean))];
  }
  function chosenRooms() {
    return [...roomBox.querySelectorAll("input:checked")].map((cb) => { const [site, room] = cb.value.split("/"); return { site, room }; });
  }
  $("s-new").addEventListener("click", () => {
    $("session-form").hidden = false;
    if (!$("sf-date").value) $("sf-date").value = msToZoned(Date.now()).slice(0, 10);
    formError(null);
    $("sf-code").focus();
  });
  $("sf-cancel").addEventListener("click", () => { $("session-form").hidden = true; invalidateSeating(); formError(null); });
  $("sf-assign").addEventListener("click", async () => {
    formError(null);
    const bids = bidsOf();
    const n = Number($("sf-experts").value);
    const rooms = chosenRooms();
    if (!bids.length) { formError("sessions.need_bids"); return; }
    if (!rooms.length) { formError("sessions.need_rooms"); return; }
    if (!Number.isInteger(n) || n < 1 || n > 200) { formError("sessions.need_experts"); return; }
    const body = { rooms, bids: bids.map((b) => ({ id: b, experts: Array.from({ length: n }, (_, i) => b + "-" + (i + 1)) })) };
    try {
      seating = await api("POST", "/api/seats/assign", body);
    } catch (e) {
      invalidateSeating();
      formApiError(e);
      return;
    }
    renderSeating();
  });
  function renderSeating() {
    $("sf-seating").hidden = !seating;
    $("sf-create").disabled = !seating;
    if (!seating) return;
    $("sf-seed").textContent = String(seating.seed);
    $("sf-warnings").textContent = seating.warnings.length ? t("sessions.seating_warning") + " " + seating.warnings.join("; ") : "";
    const body = $("sf-seats");
    body.textContent = "";
    const rows = [...seating.assignments].sort((a, b) => (a.room + a.seat < b.room + b.seat ? -1 : 1));
    for (const a of rows) body.appendChild(seatRow(a.room, a.seat, a.expert, a.bid));
  }
  $("session-form").addEventListener("submit", async (x) => {
    x.preventDefault();
    formError(null);
    if (!seating) { formError("sessions.need_seating"); return; }
    const date = $("sf-date").value;
    const start = zonedToMs(date + "T" + $("sf-start").value);
    let end = zonedToMs(date + "T" + $("sf-end").value);
    if (!isFinite(start) || !isFinite(end)) { formError("sessions.need_times"); return; }
    if (end <= start) { formError("sessions.end_before_start"); return; }
    const spec = {
      code: $("sf-code").value.trim(), project: $("sf-project").value.trim(), bids: bidsOf(),
      planned_start: new Date(start).toISOString(), planned_end: new Date(end).toISOString(),
      rooms: chosenRooms(), seating: { seed: seating.seed, assignments: seating.assignments },
    };
    let out;
    try { out = await api("POST", "/api/sessions", spec); } catch (e) { formApiError(e); return; }
    $("session-form").hidden = true;
    $("session-form").reset();
    invalidateSeating();
    toast(t("sessions.created_ok"));
    byId.set(out.id, out);
    location.hash = "sessions/" + out.id;
  });

  function open(arg) {
    load();
    if (arg && arg[0]) openId(arg[0]);
  }
  function relabel() {
    for (const lab of roomBox.querySelectorAll("label")) lab.lastChild.textContent = " " + roomLabel(lab.firstChild.value);
    renderList();
    renderDetail();
    renderSeating();
    showFormError();
  }
  return { open, load, relabel, byId };
})();
