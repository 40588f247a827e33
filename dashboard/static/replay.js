/* evalwatch dashboard: replay of archived footage, its incident markers and chain check. */
import { $, api, camKey, cameras, el, ev, fmtMs, fmtTime, guarded, msToZoned, ruleName, toast, zonedToMs } from "./core.js";

export const replay = (function () {
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
    b.title = (v.notes || []).join("\n"); // what anchors the check (a session seal, or the database only)
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
