/* evalwatch dashboard: the live wall (WebRTC tiles, camera status, enlarge). */
import { $, api, camKey, cameras, can, el, me, ruleName, sitesDoc, toast } from "./core.js";
import { roomNotices } from "./notices.js";

export const wall = (function () {
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
    if (["admin", "supervisor"].includes(me.role)) roomNotices.open(cam.site, cam.room);
    try { bigPc = await openStream(cam, "full", $("enlarged-video")); } catch (e) { toast(e.message); }
  }
  function closeBig() {
    if (bigPc) { bigPc.close(); bigPc = null; }
    $("enlarged-video").srcObject = null;
    roomNotices.close();
  }
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
