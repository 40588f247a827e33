/* evalwatch dashboard: live wall (WebRTC), alerts (WebSocket push + workflow), replay, admin.
   Vanilla JS, no external resources. Every user-visible string comes from i18n (t(key)). */
"use strict";
(async function () {
  await window.i18n.ready;
  const $ = (id) => document.getElementById(id);
  const ev = (window.evalwatch = { received: [], beeps: 0, replay: {} });
  let me = null;
  let csrf = "";

  // ---- API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) { super(window.i18n.errorText(body)); this.status = status; this.body = body; }
  }
  async function api(method, url, body) {
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
  function toast(msg) {
    const el = $("toast");
    el.textContent = msg;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.remove("show"), 5000);
  }
  async function guarded(fn) {
    try { return await fn(); } catch (e) { toast(e.message || t("common.network_error")); return undefined; }
  }
  // Every time is shown in the hub's zone (hub.timezone, from /api/auth/me), not the browser's.
  let hubTz = "Asia/Shanghai";
  const fmtMs = (ms) => new Date(ms).toLocaleString(window.i18n.lang, { hour12: false, timeZone: hubTz });
  const fmtTime = (iso) => (iso ? fmtMs(new Date(iso).getTime()) : "");
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
  function zonedToMs(v) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(v || "");
    if (!m) return NaN;
    const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    let ms = guess - zoneOffsetMs(guess);
    ms = guess - zoneOffsetMs(ms); // second pass: exact across DST changes
    return ms;
  }
  /* epoch ms -> "YYYY-MM-DDTHH:MM:SS" wall-clock in the hub's zone (datetime-local inputs). */
  function msToZoned(ms) {
    const p = zoneParts(ms);
    return p.year + "-" + p.month + "-" + p.day + "T" + (p.hour === "24" ? "00" : p.hour) + ":" + p.minute + ":" + p.second;
  }
  const ruleName = (r) => t("rule." + r, t("rule.unknown"));
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const camKey = (o) => o.site + "/" + o.room + "/" + o.camera;

  // ---- boot -----------------------------------------------------------------------------
  me = await api("GET", "/api/auth/me");
  csrf = me.csrf;
  if (me.timezone) {
    try { new Intl.DateTimeFormat("en-US", { timeZone: me.timezone }); hubTz = me.timezone; } catch (e) { /* keep default */ }
  }
  ev.timezone = hubTz;
  ev.fmtTime = fmtTime;
  const showTz = () => { $("tz-label").textContent = t("common.times_in") + " " + hubTz; };
  showTz();
  const can = {
    wall: ["admin", "supervisor", "observer"].includes(me.role),
    handle: ["admin", "supervisor"].includes(me.role),
    replay: ["admin", "supervisor", "auditor"].includes(me.role),
    export: ["admin", "auditor"].includes(me.role),
    manage: ["admin", "supervisor"].includes(me.role),
  };
  $("me-name").textContent = me.display_name || me.username;
  const showRole = () => { $("me-role").textContent = t("role." + me.role); };
  showRole();
  document.querySelectorAll("[data-roles]").forEach((b) => {
    if (!b.dataset.roles.split(" ").includes(me.role)) b.hidden = true;
  });
  $("lang-switch").addEventListener("click", () => window.i18n.toggle());
  $("logout").addEventListener("click", async () => {
    await guarded(() => api("POST", "/api/auth/logout"));
    location.href = "/login";
  });
  const sound = $("sound-on");
  sound.checked = localStorage.getItem("evalwatch_sound") !== "off";
  sound.addEventListener("change", () => localStorage.setItem("evalwatch_sound", sound.checked ? "on" : "off"));

  const sitesDoc = await api("GET", "/api/sites");
  const cameras = [];
  for (const s of sitesDoc.sites) for (const r of s.rooms) for (const c of r.cameras) {
    cameras.push({ site: s.id, siteName: s.name, room: r.id, roomName: r.name, camera: c.id, name: c.name, seats: c.seats });
  }

  // ---- views ----------------------------------------------------------------------------
  const views = ["wall", "alerts", "sessions", "replay", "users", "audit"];
  let current = null;
  function show(view, arg) {
    const allowed = [...document.querySelectorAll("#nav button")].filter((b) => !b.hidden).map((b) => b.dataset.view);
    if (!allowed.includes(view)) view = allowed[0];
    current = view;
    for (const v of views) $("view-" + v).hidden = v !== view;
    document.querySelectorAll("#nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    if (view === "wall") wall.visible(true); else wall.visible(false);
    if (view === "alerts") alerts.load();
    if (view === "replay") replay.open(arg);
    if (view === "sessions") sessionsView.open(arg);
    if (view === "users") users.load();
    if (view === "audit") auditView.load();
  }
  document.querySelectorAll("#nav button").forEach((b) =>
    b.addEventListener("click", () => { location.hash = b.dataset.view; }));
  window.addEventListener("hashchange", route);
  function route() {
    const [view, ...rest] = location.hash.replace(/^#/, "").split("/");
    show(view || "wall", rest);
  }

  // ---- sound ----------------------------------------------------------------------------
  let audioCtx = null;
  document.addEventListener("click", () => { if (audioCtx && audioCtx.state === "suspended") audioCtx.resume(); });
  function beep() {
    if (!sound.checked) return;
    ev.beeps += 1;
    try {
      audioCtx = audioCtx || new AudioContext();
      const o = audioCtx.createOscillator();
      const g = audioCtx.createGain();
      o.type = "sine";
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.25, audioCtx.currentTime);
      g.gain.exponentialRampToValueAtTime(0.001, audioCtx.currentTime + 0.35);
      o.connect(g).connect(audioCtx.destination);
      o.start();
      o.stop(audioCtx.currentTime + 0.4);
    } catch (e) { /* no audio device: the visual cue remains */ }
  }

  // ---- live wall --------------------------------------------------------------------------
  const wall = (function () {
    const tiles = new Map();
    const grid = $("wall-grid");
    let visibleView = false;

    function waitIce(pc, ms) {
      if (pc.iceGatheringState === "complete") return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, ms);
      });
    }

    async function openStream(cam, quality, video) {
      const pc = new RTCPeerConnection({ iceServers: [] });
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.ontrack = (e) => {
        video.srcObject = e.streams[0] || new MediaStream([e.track]);
        video.play().catch(() => {});
      };
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitIce(pc, 2000);
      try {
        const ans = await api("POST", "/api/live/" + camKey(cam) + "/offer",
                              { sdp: pc.localDescription.sdp, type: "offer", quality });
        await pc.setRemoteDescription(ans);
      } catch (e) {
        pc.close();
        throw e;
      }
      return pc;
    }

    // Grid tiles show the hub's shared JPEG thumbnail of each camera (GET /api/live/thumbs, new
    // pictures only, every THUMB_MS), drawn as the tile video's poster; only the
    // enlarged tile streams over WebRTC.  One peer connection (and one hub-side re-encode) per
    // tile did not fit 60 tiles (docs/dashboard.md, "Live wall at scale").
    // Polled twice as often as the hub makes pictures (2/s): a poll returns only tiles with a
    // newer picture, and polling at the picture rate itself would alias down to ~1.6/s.
    const THUMB_MS = 250;

    function makeTile(cam) {
      const tile = { cam, online: false, lastFrame: 0, inView: false, seq: 0, gone: false, frames: 0, state: "connecting", alerts: {} };
      const root = el("div", "tile");
      root.dataset.camera = camKey(cam);
      const video = el("video");
      video.muted = true; video.playsInline = true;
      const label = el("div", "label");
      label.appendChild(el("span", "", cam.roomName + " · " + (cam.name || cam.camera)));
      const badges = el("span", "badges");
      label.appendChild(badges);
      const stat = el("div", "stat");
      const overlay = el("div", "overlay");
      root.append(video, label, stat, overlay);
      Object.assign(tile, { root, video, stat, overlay, badges });
      root.addEventListener("click", () => enlarge(cam));
      return tile;
    }

    function setState(tile, state) {
      tile.state = state;
      tile.root.classList.toggle("offline", state === "offline");
      tile.root.dataset.state = state;
      const key = { offline: "wall.offline", stalled: "wall.stalled", connecting: "wall.connecting" }[state];
      tile.overlay.hidden = !key;
      tile.overlay.textContent = key ? t(key) : "";
      if (state === "offline" || state === "stalled") disconnect(tile); // never a frozen picture
    }

    function disconnect(tile) {
      tile.video.removeAttribute("poster");
      tile.seq = 0;
      tile.lastFrame = 0;
    }

    // All tiles on screen in one request every THUMB_MS: per request the hub does the session check
    // once, not 60 times (one request per tile starved the hub's event loop at 60 tiles).
    let batchBusy = false;
    let lastBatch = 0;
    async function fetchBatch() {
      const want = [...tiles.values()].filter(shouldStream);
      lastBatch = performance.now();
      if (!want.length) return;
      batchBusy = true;
      try {
        const qs = want.map((x) => "c=" + encodeURIComponent(camKey(x.cam) + ":" + (x.seq || 0))).join("&");
        const res = await api("GET", "/api/live/thumbs?" + qs);
        for (const [key, f] of Object.entries(res.frames)) {
          const tile = tiles.get(key);
          if (!tile || !shouldStream(tile)) continue;
          tile.video.poster = "data:image/jpeg;base64," + f.jpeg;
          tile.seq = f.seq;
          tile.lastFrame = performance.now();
          tile.frames += 1;
          tile.gone = false;
          if (tile.state !== "playing") setState(tile, "playing");
        }
        for (const key of res.offline) {
          const tile = tiles.get(key);
          if (!tile) continue;
          tile.gone = true;
          if (tile.state !== "offline") setState(tile, "offline");
        }
      } catch (e) { /* transient: the next round retries */ }
      finally { batchBusy = false; }
    }

    function shouldStream(tile) {
      return visibleView && tile.inView && tile.online && !tile.root.hidden;
    }

    const io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const tile = tiles.get(e.target.dataset.camera);
        if (!tile) continue;
        tile.inView = e.isIntersecting;
        if (!tile.inView) disconnect(tile);
      }
      tick();
    });

    function build() {
      for (const cam of cameras) {
        const tile = makeTile(cam);
        tiles.set(camKey(cam), tile);
        grid.appendChild(tile.root);
        io.observe(tile.root);
        setState(tile, "connecting");
      }
      const siteSel = $("wall-site");
      const roomSel = $("wall-room");
      for (const s of sitesDoc.sites) siteSel.appendChild(new Option(s.name, s.id));
      const fillRooms = () => {
        roomSel.length = 1;
        const rooms = new Set();
        for (const c of cameras) {
          if ((!siteSel.value || c.site === siteSel.value) && !rooms.has(c.site + "/" + c.room)) {
            rooms.add(c.site + "/" + c.room);
            roomSel.appendChild(new Option((siteSel.value ? "" : c.siteName + " / ") + c.roomName, c.site + "/" + c.room));
          }
        }
      };
      fillRooms();
      siteSel.addEventListener("change", () => { fillRooms(); filter(); });
      roomSel.addEventListener("change", filter);
      filter();
    }

    function filter() {
      const site = $("wall-site").value;
      const room = $("wall-room").value;
      let n = 0;
      for (const tile of tiles.values()) {
        const show = (!site || tile.cam.site === site) && (!room || tile.cam.site + "/" + tile.cam.room === room);
        tile.root.hidden = !show;
        if (!show) disconnect(tile); else n += 1;
      }
      $("wall-count").textContent = n + " / " + tiles.size;
      $("wall-empty").hidden = n > 0;
      tick();
    }

    function tick() {
      const now = performance.now();
      for (const tile of tiles.values()) {
        if (!tile.online) {
          if (tile.state !== "offline") setState(tile, "offline");
          continue;
        }
        if (!shouldStream(tile)) continue;
        if (tile.state === "offline" && !tile.gone) setState(tile, "connecting");
        const since = tile.lastFrame ? now - tile.lastFrame : 0;
        if (since > 4000 && tile.state === "playing") setState(tile, "stalled"); // no new picture
      }
      if (!batchBusy && now - lastBatch >= THUMB_MS) fetchBatch();
    }
    setInterval(tick, 100);

    async function pollStatus() {
      try {
        const st = await api("GET", "/api/cameras/status");
        for (const c of st.cameras) {
          const tile = tiles.get(camKey(c));
          if (!tile) continue;
          tile.online = c.online;
          tile.lastStatus = c;
          renderStat(tile);
          tile.alerts = c.alerts || {};
          renderBadges(tile);
        }
        tick();
      } catch (e) { /* transient: the next poll retries */ }
    }
    function renderStat(tile) {
      const c = tile.lastStatus;
      if (!c) return;
      const age = c.last_frame_age == null ? "–" : c.last_frame_age.toFixed(1) + " " + t("wall.seconds_ago");
      tile.stat.textContent = (c.online ? t("wall.online") : t("wall.offline")) + " · " +
        c.fps.toFixed(1) + " " + t("wall.fps") + " · " + age;
    }
    function renderBadges(tile) {
      tile.badges.textContent = "";
      let total = 0;
      for (const [rule, n] of Object.entries(tile.alerts)) {
        total += n;
        const b = el("span", "badge", ruleName(rule) + " " + n);
        b.dataset.rule = rule;
        tile.badges.appendChild(b);
      }
      tile.root.classList.toggle("alerting", total > 0);
    }
    function flash(e) {
      const tile = tiles.get(camKey(e));
      if (!tile) return;
      if (e.phase === "opened") tile.alerts[e.rule] = (tile.alerts[e.rule] || 0) + 1;
      renderBadges(tile);
    }

    // enlarged view: its own full-quality stream
    let bigPc = null;
    async function enlarge(cam) {
      $("enlarged").hidden = false;
      $("enlarged-title").textContent = cam.siteName + " / " + cam.roomName + " / " + (cam.name || cam.camera);
      closeBig();
      try { bigPc = await openStream(cam, "full", $("enlarged-video")); } catch (e) { toast(e.message); }
    }
    function closeBig() { if (bigPc) { bigPc.close(); bigPc = null; } $("enlarged-video").srcObject = null; }
    $("enlarged-close").addEventListener("click", () => { closeBig(); $("enlarged").hidden = true; });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("enlarged").hidden) { closeBig(); $("enlarged").hidden = true; }
    });

    function visible(v) {
      visibleView = v;
      if (!v) for (const tile of tiles.values()) disconnect(tile);
      tick();
    }
    if (can.wall) { build(); pollStatus(); setInterval(pollStatus, 2000); }
    return { visible, flash, tiles, relabel: () => { for (const tile of tiles.values()) { setState(tile, tile.state); renderStat(tile); renderBadges(tile); } } };
  })();

  // ---- alerts -------------------------------------------------------------------------------
  const alerts = (function () {
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
      tr.appendChild(el("td", "", e.seat || ""));
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
      if (can.replay) {
        const g = el("button", "footage", t("alerts.footage"));
        g.addEventListener("click", () => {
          location.hash = "replay/" + camKey(e) + "/" + new Date(e.started_at).getTime();
        });
        box.appendChild(g);
      }
      return td;
    }

    function upsert(e) {
      const prev = byId.get(e.id) || {};
      const merged = Object.assign({ status: "new" }, prev, e);
      byId.set(e.id, merged);
      if (current === "alerts") render();
      renderRecent();
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

  // ---- replay --------------------------------------------------------------------------------
  const replay = (function () {
    const sel = $("r-camera");
    for (const c of cameras) sel.appendChild(new Option(c.siteName + " / " + c.roomName + " / " + (c.name || c.camera), camKey(c)));
    const allOptions = [...sel.options].map((o) => [o.text, o.value]);
    const toInput = (ms) => msToZoned(ms);
    const fromInput = (v) => zonedToMs(v);
    const S = { segs: [], events: [], start: 0, end: 0, idx: -1, active: $("r-video-a"), standby: $("r-video-b"),
                rate: 1, seekT0: 0, seekPending: false, verify: null, session: null, loaded: false };

    /* Replay of one session: only its cameras, only its time window. */
    function restrict(sess) {
      S.session = sess;
      sel.length = 0;
      const cams = sess ? sess.cameras.map(camKey) : null;
      for (const [text, value] of allOptions) if (!cams || cams.includes(value)) sel.appendChild(new Option(text, value));
      $("r-session").hidden = !sess;
      for (const id of ["r-from", "r-to"]) {
        $(id).min = sess ? toInput(sess.from) : "";
        $(id).max = sess ? toInput(sess.to) : "";
      }
      relabelSession();
    }
    function relabelSession() {
      if (S.session) $("r-session-text").textContent = t("replay.session_mode") + " " + S.session.code + " (" +
        fmtMs(S.session.from) + " – " + fmtMs(S.session.to) + ")";
    }
    $("r-session-leave").addEventListener("click", () => { restrict(null); location.hash = "replay"; });
    async function openSession(id, cam) {
      const sess = await guarded(() => api("GET", "/api/sessions/" + encodeURIComponent(id)));
      if (!sess) return;
      const from = new Date(sess.started_at || sess.planned_start).getTime();
      const to = sess.closed_at ? new Date(sess.closed_at).getTime()
        : (sess.started_at ? Math.max(Date.now(), from + 1000) : new Date(sess.planned_end).getTime());
      restrict({ id: sess.id, code: sess.code, cameras: sess.cameras, from, to });
      if (cam && [...sel.options].some((o) => o.value === cam)) sel.value = cam;
      $("r-from").value = toInput(from);
      $("r-to").value = toInput(to);
      load();
    }
    ev.replay = { lastSeekMs: null, seeks: [], seekTo: (ms) => seekTo(ms), state: S, currentMs: () => currentMs() };

    function open(arg) {
      if (arg && arg[0] === "session" && arg[1]) {
        openSession(arg[1], arg.length >= 5 ? arg.slice(2, 5).join("/") : null);
        return;
      }
      if (S.session && arg && arg.length >= 4 && !S.session.cameras.map(camKey).includes(arg.slice(0, 3).join("/"))) {
        restrict(null);
      }
      if (arg && arg.length >= 4) {
        const at = Number(arg[3]);
        sel.value = arg.slice(0, 3).join("/");
        $("r-from").value = toInput(at - 5 * 60000);
        $("r-to").value = toInput(at + 5 * 60000);
        load(at);
      } else if (!$("r-from").value) {
        const now = Date.now();
        $("r-from").value = toInput(now - 3600000);
        $("r-to").value = toInput(now);
      }
    }

    async function load(seekMs) {
      let start = fromInput($("r-from").value);
      let end = fromInput($("r-to").value);
      if (!sel.value || !isFinite(start) || !isFinite(end)) { toast(t("err.bad_range")); return; }
      if (S.session) { // never outside the session's window
        start = Math.max(start, S.session.from);
        end = Math.min(end, S.session.to);
        if (end <= start) { toast(t("err.bad_range")); return; }
        $("r-from").value = toInput(start);
        $("r-to").value = toInput(end);
      }
      const q = "start=" + encodeURIComponent(new Date(start).toISOString()) + "&end=" + encodeURIComponent(new Date(end).toISOString());
      const data = await guarded(() => api("GET", "/api/replay/" + sel.value + "?" + q));
      if (!data) return;
      S.start = start; S.end = end;
      S.segs = data.segments.map((s) => ({ ...s, s: new Date(s.start).getTime(), e: new Date(s.end).getTime() }));
      S.events = data.events;
      S.idx = -1;
      for (const v of [S.active, S.standby]) { v.pause(); v.removeAttribute("src"); v.load(); delete v.dataset.idx; }
      S.loaded = true;
      drawTimeline();
      relabelInfo();
      $("r-nofootage").hidden = S.segs.length > 0;
      verify(q);
      if (S.segs.length) seekTo(seekMs && isFinite(seekMs) ? seekMs : S.segs[0].s);
    }
    $("r-load").addEventListener("click", () => load());

    function relabelInfo() {
      if (!S.loaded) return;
      $("r-info").textContent = S.segs.length + " " + t("replay.segments");
      $("r-nofootage").textContent = S.segs.length ? "" : t("replay.no_footage");
    }
    function relabelVerify() { // the badge from the last answer, in the current language
      const b = $("r-verify");
      const v = S.verify;
      if (!v) { b.textContent = ""; return; }
      if (v.pending) { b.className = "badge muted"; b.textContent = t("replay.verifying"); return; }
      if (v.failed) { b.className = "badge warn"; b.textContent = t("replay.verify_unknown"); b.dataset.ok = "unknown"; return; }
      b.className = "badge " + (v.ok ? "ok" : "");
      b.textContent = v.ok ? t("replay.verify_ok") + " (" + v.segments + ")" : t("replay.verify_fail") + ": " + (v.message || "");
      b.dataset.ok = String(v.ok);
    }
    async function verify(q) {
      S.verify = { pending: true };
      relabelVerify();
      try {
        S.verify = await api("GET", "/api/replay/" + sel.value + "/verify?" + q);
      } catch (e) {
        S.verify = { failed: true };
      }
      relabelVerify();
    }

    const frac = (ms) => Math.max(0, Math.min(1, (ms - S.start) / (S.end - S.start)));
    function drawTimeline() {
      const tl = $("r-timeline");
      tl.querySelectorAll(".seg,.marker").forEach((n) => n.remove());
      for (const s of S.segs) {
        const d = el("div", "seg");
        d.style.left = frac(s.s) * 100 + "%";
        d.style.width = Math.max(0.2, (frac(s.e) - frac(s.s)) * 100) + "%";
        tl.appendChild(d);
      }
      const list = $("r-events");
      list.textContent = "";
      for (const e of S.events) {
        const at = new Date(e.started_at).getTime();
        const m = el("div", "marker " + e.status);
        m.style.left = "calc(" + frac(at) * 100 + "% - 2px)";
        m.title = ruleName(e.rule) + " " + fmtTime(e.started_at);
        m.dataset.eventId = e.id;
        m.addEventListener("click", (x) => { x.stopPropagation(); seekTo(at); });
        tl.appendChild(m);
        const li = el("li");
        const b = el("button", "marker-btn", fmtTime(e.started_at) + " · " + ruleName(e.rule) + (e.seat ? " · " + e.seat : ""));
        b.dataset.eventId = e.id;
        b.addEventListener("click", () => seekTo(at));
        li.appendChild(b);
        list.appendChild(li);
      }
    }
    $("r-timeline").addEventListener("click", (x) => {
      const r = x.currentTarget.getBoundingClientRect();
      seekTo(S.start + ((x.clientX - r.left) / r.width) * (S.end - S.start));
    });

    function segIndexFor(ms) {
      let i = S.segs.findIndex((s) => ms >= s.s && ms < s.e);
      if (i < 0) i = S.segs.findIndex((s) => s.s >= ms);
      return i;
    }

    function loadInto(video, idx) {
      if (video.dataset.idx === String(idx)) return Promise.resolve();
      video.dataset.idx = String(idx);
      video.src = S.segs[idx].url;
      video.playbackRate = S.rate;
      return new Promise((resolve) => {
        if (video.readyState >= 1) { resolve(); return; }
        video.addEventListener("loadedmetadata", () => resolve(), { once: true });
        video.addEventListener("error", () => resolve(), { once: true });
      });
    }

    function onFirstFrame(video) {
      const done = () => {
        if (!S.seekPending) return;
        S.seekPending = false;
        ev.replay.lastSeekMs = performance.now() - S.seekT0;
        ev.replay.seeks.push(ev.replay.lastSeekMs);
      };
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(done);
      else video.addEventListener("seeked", done, { once: true });
    }

    async function seekTo(ms) {
      const idx = segIndexFor(ms);
      if (idx < 0) { toast(t("replay.no_footage")); return; }
      S.seekT0 = performance.now();
      S.seekPending = true;
      const seg = S.segs[idx];
      let v = S.active;
      if (S.standby.dataset.idx === String(idx) && S.active.dataset.idx !== String(idx)) swap();
      v = S.active;
      await loadInto(v, idx);
      S.idx = idx;
      const offset = Math.max(0, (Math.max(ms, seg.s) - seg.s) / 1000);
      onFirstFrame(v);
      v.currentTime = offset;
      v.playbackRate = S.rate;
      v.play().catch(() => {});
      preloadNext();
    }

    function swap() {
      const a = S.active;
      S.active = S.standby;
      S.standby = a;
      S.active.hidden = false;
      S.standby.hidden = true;
      S.standby.pause();
    }

    function preloadNext() {
      const n = S.idx + 1;
      if (n < S.segs.length && S.standby.dataset.idx !== String(n)) {
        S.standby.preload = "auto";
        loadInto(S.standby, n);
      }
    }

    function onEnded(e) {
      if (e.target !== S.active) return;
      const n = S.idx + 1;
      if (n >= S.segs.length) return;
      if (S.standby.dataset.idx === String(n)) {
        swap();
        S.idx = n;
        S.active.currentTime = 0;
        S.active.playbackRate = S.rate;
        S.active.play().catch(() => {});
        preloadNext();
      } else {
        seekTo(S.segs[n].s);
      }
    }
    for (const v of [S.active, S.standby]) {
      v.addEventListener("ended", onEnded);
      v.addEventListener("timeupdate", () => { if (v === S.active) clock(); });
      v.addEventListener("play", () => { $("r-play").textContent = t("replay.pause"); $("r-play").dataset.i18n = "replay.pause"; });
      v.addEventListener("pause", () => { if (v === S.active) { $("r-play").textContent = t("replay.play"); $("r-play").dataset.i18n = "replay.play"; } });
    }
    function currentMs() {
      if (S.idx < 0) return null;
      return S.segs[S.idx].s + S.active.currentTime * 1000;
    }
    function clock() {
      const ms = currentMs();
      if (ms == null) return;
      $("r-clock").textContent = fmtMs(ms);
      $("r-playhead").style.left = frac(ms) * 100 + "%";
    }
    $("r-play").addEventListener("click", () => {
      if (S.idx < 0) { if (S.segs.length) seekTo(S.segs[0].s); return; }
      if (S.active.paused) S.active.play().catch(() => {}); else S.active.pause();
    });
    $("r-speed").addEventListener("change", () => {
      S.rate = Number($("r-speed").value);
      S.active.playbackRate = S.rate;
      S.standby.playbackRate = S.rate;
    });
    $("r-export").addEventListener("click", async () => {
      const start = fromInput($("r-from").value);
      const end = fromInput($("r-to").value);
      if (!sel.value || !isFinite(start) || !isFinite(end)) { toast(t("err.bad_range")); return; }
      const url = "/api/export/" + sel.value + "?start=" + encodeURIComponent(new Date(start).toISOString()) +
                  "&end=" + encodeURIComponent(new Date(end).toISOString());
      // fetch first so that a refusal (range too long, no footage) is shown instead of a JSON page
      let res;
      try { res = await fetch(url, { credentials: "same-origin" }); } catch (e) { toast(t("common.network_error")); return; }
      if (!res.ok) { let body = null; try { body = await res.json(); } catch (e) { body = null; } toast(window.i18n.errorText(body)); return; }
      const blob = await res.blob();
      const m = /filename="?([^";]+)"?/.exec(res.headers.get("content-disposition") || "");
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = m ? m[1] : "evidence.zip";
      document.body.appendChild(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    });
    function relabel() {
      relabelInfo();
      relabelVerify();
      relabelSession();
      if (S.loaded) drawTimeline();
      clock();
    }
    return { open, load, seekTo, relabel };
  })();

  // ---- users (admin) --------------------------------------------------------------------------
  const users = (function () {
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

  // ---- audit log --------------------------------------------------------------------------------
  const auditView = (function () {
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

  // ---- evaluation sessions ------------------------------------------------------------------------
  const sessionsView = (function () {
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

  // Language switch: every string the scripts wrote is written again in the new language.
  document.addEventListener("i18n-changed", () => {
    showRole();
    showTz();
    wall.relabel();
    alerts.renderRecent();
    alerts.render();
    replay.relabel();
    sessionsView.relabel();
    if (current === "users") users.load();
    if (current === "audit") auditView.load();
  });
  route();
  document.body.dataset.ready = "1";
})();
