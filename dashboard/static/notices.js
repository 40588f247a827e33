/* evalwatch dashboard: notices in the room (on the enlarged camera: send a preset or free text
   to the room's display, see whether the room PC showed it) and the notifications' delivery log
   (docs/notifications.md). */
import { $, api, el, fmtTime, guarded, toast } from "./core.js";

export const roomNotices = (function () {
  let room = null; // {site, room}
  let timer = null;

  function render(data) {
    const sel = $("notice-preset");
    if (sel.options.length <= 1) {
      for (const [id, text] of Object.entries(data.presets)) sel.appendChild(new Option(text, id));
    }
    const list = $("notice-list");
    list.textContent = "";
    for (const n of data.notices.slice(0, 5)) {
      const li = el("li");
      li.dataset.status = n.status;
      li.appendChild(el("span", "when", fmtTime(n.created_at)));
      li.appendChild(el("span", "text", n.text));
      let status = t("noticestate." + n.status);
      if (n.status === "shown") status += " " + fmtTime(n.shown_at);
      if (n.status === "not_shown" && n.reason) status += ": " + n.reason;
      li.appendChild(el("span", "badge notice-" + n.status, status));
      list.appendChild(li);
    }
  }

  async function refresh() {
    if (!room) return;
    const data = await guarded(() => api("GET", `/api/rooms/${room.site}/${room.room}/notices`));
    if (data) render(data);
  }

  function open(site, roomId) {
    room = { site, room: roomId };
    $("notice-text").value = "";
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, 2000);
  }

  function close() { room = null; clearInterval(timer); timer = null; }

  $("notice-send").addEventListener("click", async () => {
    if (!room) return;
    const preset = $("notice-preset").value;
    const text = $("notice-text").value.trim();
    const body = text ? { text } : { preset };
    if (!text && !preset) { toast(t("notice.empty")); return; }
    const sent = await guarded(() => api("POST", `/api/rooms/${room.site}/${room.room}/notices`, body));
    if (sent) { $("notice-text").value = ""; toast(t("notice.sent")); refresh(); }
  });
  return { open, close };
})();

export const notificationLog = (function () {
  async function load() {
    const status = $("nl-status").value;
    const data = await guarded(() => api("GET", "/api/notifications/log?limit=300" + (status ? "&status=" + status : "")));
    if (!data) return;
    const body = $("nl-body");
    body.textContent = "";
    for (const e of data.entries) {
      const tr = el("tr");
      tr.dataset.status = e.status;
      for (const v of [fmtTime(e.at), e.site, t("channel." + e.channel), e.target,
                       t("nsource." + e.source) + " " + e.ref, String(e.attempt)]) {
        tr.appendChild(el("td", "", v));
      }
      const st = el("td");
      st.appendChild(el("span", "badge notify-" + e.status, t("nstatus." + e.status)));
      tr.appendChild(st);
      tr.appendChild(el("td", "", e.http_status === null ? "" : String(e.http_status)));
      tr.appendChild(el("td", "", e.error || (e.next_at ? t("nlog.next") + " " + fmtTime(e.next_at) : "")));
      body.appendChild(tr);
    }
    // nothing delivered yet (no site has `notify`), or nothing with the chosen result
    $("nl-empty").textContent = t(status ? "nlog.none_filtered" : "nlog.none");
    $("nl-empty").hidden = data.entries.length > 0;
  }
  $("nl-status").addEventListener("change", load);
  $("nl-reload").addEventListener("click", load);
  return { load };
})();
