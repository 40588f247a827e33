/* evalwatch dashboard: statistics and early warnings (#stats).  Charts are drawn by ECharts,
   vendored in /static/vendor/ (see its PROVENANCE.md; loaded on first use, no CDN); the data come
   from /api/stats/* for the chosen dates (hub time zone) and site.  Early warnings: the list from
   /api/warnings, new ones arrive on the alert WebSocket as {"type": "warning"} (alerts.js).
   Observers get expert codes only: the API sends them no names. */
import { $, api, can, el, ev, fmtTime, guarded, me, msToZoned, ruleName, sitesDoc, toast } from "./core.js";

/* Series colours (tests look for these pixels in the canvases). */
export const COLORS = { incidents: "#3b82f6", confirmed: "#ef4444", dismissed: "#22c55e", median: "#f59e0b",
                        p90: "#fb923c", coverage: "#a855f7", offline: "#ec4899" };
const CHARTS = ["day", "site", "room", "rule", "judge", "ack", "coverage", "offline"];

export const statsView = (function () {
  let echartsReady = null;
  const charts = {};
  let data = null;
  let warnings = [];
  let filled = false;

  function loadECharts() {
    if (window.echarts) return Promise.resolve(window.echarts);
    if (!echartsReady) {
      echartsReady = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = "/static/vendor/echarts.min.js";
        s.onload = () => resolve(window.echarts);
        s.onerror = () => reject(new Error("echarts"));
        document.head.appendChild(s);
      });
    }
    return echartsReady;
  }

  /* The day (YYYY-MM-DD) of epoch ms in the hub's zone: the API's dates are the hub's days. */
  function isoDay(ms) { return msToZoned(ms).slice(0, 10); }

  function fillForm() {
    if (filled) return;
    filled = true;
    const now = Date.now();
    $("st-to").value = isoDay(now);
    $("st-from").value = isoDay(now - 29 * 86400e3);
    $("st-month").value = isoDay(now).slice(0, 7);
    const sel = $("st-site");
    for (const s of sitesDoc.sites) {
      const o = el("option", "", s.name ? s.id + " " + s.name : s.id);
      o.value = s.id;
      sel.appendChild(o);
    }
    $("st-refresh").addEventListener("click", load);
    $("st-month").addEventListener("change", reportLinks);
    sel.addEventListener("change", reportLinks);
    $("st-run").addEventListener("click", runNow);
    $("st-run").hidden = !can.handle;
    $("st-report").hidden = !["admin", "supervisor", "auditor"].includes(me.role);
    reportLinks();
  }

  function reportLinks() {
    const site = $("st-site").value || sitesDoc.sites[0]?.id || "";
    const q = "site=" + encodeURIComponent(site) + "&month=" + encodeURIComponent($("st-month").value);
    $("st-report-html").href = "/api/reports/monthly?" + q + "&format=html";
    $("st-report-pdf").href = "/api/reports/monthly?" + q + "&format=pdf";
  }

  function query() {
    const p = new URLSearchParams();
    if ($("st-from").value) p.set("from", $("st-from").value);
    if ($("st-to").value) p.set("to", $("st-to").value);
    if ($("st-site").value) p.set("site", $("st-site").value);
    return p.toString();
  }

  async function load() {
    const q = query();
    const got = await guarded(() => Promise.all(
      ["incidents", "judgements", "ack", "cameras", "experts"].map((k) => api("GET", "/api/stats/" + k + "?" + q))));
    if (!got) return;
    const [incidents, judgements, ack, cameras, experts] = got;
    data = { incidents: incidents.incidents, judgements: judgements.rules, ack: ack.rules, cameras: cameras.cameras,
             experts: experts.experts, range: incidents.range };
    await loadWarnings();
    await draw();
  }

  async function loadWarnings() {
    const w = await guarded(() => api("GET", "/api/warnings?limit=100"));
    if (w) warnings = w.warnings;
    renderWarnings();
  }

  async function runNow() {
    const r = await guarded(() => api("POST", "/api/warnings/run"));
    if (r) { toast(t("stats.run_done").replace("{n}", String(r.raised.length))); await loadWarnings(); }
  }

  function warningText(w) {
    const v = w.unit === "percent" ? w.value.toFixed(1) + "%" : String(w.value);
    const th = w.unit === "percent" ? w.threshold.toFixed(1) + "%" : String(w.threshold);
    let who = w.subject;
    if (w.kind === "false_alarm_rate") who = ruleName(w.rule);
    if (w.kind === "expert_violations" || w.kind === "concurrent_flags") {
      who = w.expert_codes.map((c) => (w.expert_names && w.expert_names[c] ? c + " " + w.expert_names[c] : c)).join(" + ");
      if (w.bid) who += " (" + t("sessions.bid") + " " + w.bid + ")";
    }
    return t("warning." + w.kind).replace("{who}", who).replace("{value}", v).replace("{threshold}", th)
      .replace("{days}", String(w.window_days));
  }

  function renderWarnings() {
    const body = $("st-warnings");
    body.textContent = "";
    $("st-warnings-empty").hidden = warnings.length > 0;
    for (const w of warnings) {
      const tr = el("tr", "warning st-" + w.status);
      tr.dataset.warningId = String(w.id);
      tr.appendChild(el("td", "", fmtTime(w.raised_at)));
      tr.appendChild(el("td", "kind", t("warning_kind." + w.kind)));
      tr.appendChild(el("td", "text", warningText(w)));
      tr.appendChild(el("td", "", t("warning_status." + w.status) + (w.acknowledged_by ? " · " + w.acknowledged_by : "")));
      const td = el("td");
      if (can.handle && w.status === "open") {
        const b = el("button", "ack", t("alerts.ack"));
        b.type = "button";
        b.addEventListener("click", async () => {
          if (await guarded(() => api("POST", "/api/warnings/" + w.id + "/ack"))) await loadWarnings();
        });
        td.appendChild(b);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  const pageFont = () => getComputedStyle(document.body).fontFamily;

  function bar(keys, series, opts = {}) {
    return {
      animation: false,
      backgroundColor: "transparent",
      // the page's font stack, so a screen without a CJK font draws Chinese names with the one
      // the page loaded (app.css "evalwatch-cjk"); canvas text has no fallback of its own
      textStyle: { color: "#e6edf3", fontFamily: pageFont() },
      tooltip: { trigger: "axis" },
      legend: series.length > 1 ? { top: 0, textStyle: { color: "#e6edf3", fontFamily: pageFont() } } : undefined,
      grid: { left: 48, right: 16, top: 40, bottom: 64 },
      // names (rules) are the bars' meaning: every one is shown, wrapped to its slot
      // (opts.labelWidth); keys (dates, codes) may rotate and drop the ones that overlap
      xAxis: { type: "category", data: keys,
               axisLabel: opts.labelWidth
                 ? { color: "#8b98a5", interval: 0, width: opts.labelWidth, overflow: "break", lineHeight: 14 }
                 : { color: "#8b98a5", interval: 0, hideOverlap: true, rotate: keys.length > 4 ? 30 : 0 } },
      yAxis: { type: "value", max: opts.max, axisLabel: { color: "#8b98a5" }, splitLine: { lineStyle: { color: "#263241" } } },
      series: series.map((s) => ({ type: "bar", barMaxWidth: 36, ...s })),
    };
  }

  function chart(key) {
    const node = $("chart-" + key);
    if (!charts[key]) charts[key] = window.echarts.init(node, null, { renderer: "canvas" });
    return charts[key];
  }

  async function draw() {
    try { await loadECharts(); } catch (e) { toast(t("stats.no_echarts")); return; }
    if (!data) return;
    await document.fonts.ready;  // a web font the page's text needed is in before the canvas draws
    const d = data;
    // an empty chart says why it is empty (over its dimmed axes: .chart.nodata in app.css)
    const empty = (key, n, why = "stats.empty") => {
      const node = $("chart-" + key);
      node.classList.toggle("nodata", n === 0);
      node.dataset.empty = t(why);
    };
    // width of one category's slot in a chart's plot area (the grid's left + right margins: 64 px)
    const slot = (key, n) => ({ labelWidth: Math.max(48, Math.floor(($("chart-" + key).clientWidth - 64) / Math.max(1, n)) - 8) });
    chart("day").setOption(bar(d.incidents.by_day.map((c) => c.key.slice(5)),
      [{ name: t("stats.incidents"), data: d.incidents.by_day.map((c) => c.count), color: COLORS.incidents }]), true);
    chart("site").setOption(bar(d.incidents.by_site.map((c) => c.key),
      [{ name: t("stats.incidents"), data: d.incidents.by_site.map((c) => c.count), color: COLORS.incidents }]), true);
    chart("room").setOption(bar(d.incidents.by_room.map((c) => c.key),
      [{ name: t("stats.incidents"), data: d.incidents.by_room.map((c) => c.count), color: COLORS.incidents }]), true);
    chart("rule").setOption(bar(d.incidents.by_rule.map((c) => ruleName(c.key)),
      [{ name: t("stats.incidents"), data: d.incidents.by_rule.map((c) => c.count), color: COLORS.incidents }],
      slot("rule", d.incidents.by_rule.length)), true);
    chart("judge").setOption(bar(d.judgements.map((j) => ruleName(j.rule) + (j.false_alarm_rate === null ? "" : " (" + j.false_alarm_rate.toFixed(0) + "%)")), [
      { name: t("stats.confirmed"), stack: "j", data: d.judgements.map((j) => j.confirmed), color: COLORS.confirmed },
      { name: t("stats.dismissed"), stack: "j", data: d.judgements.map((j) => j.dismissed), color: COLORS.dismissed },
    ], slot("judge", d.judgements.length)), true);
    chart("ack").setOption(bar(d.ack.map((a) => ruleName(a.rule)), [
      { name: t("stats.median_s"), data: d.ack.map((a) => a.median_s), color: COLORS.median },
      { name: t("stats.p90_s"), data: d.ack.map((a) => a.p90_s), color: COLORS.p90 },
    ], slot("ack", d.ack.length)), true);
    chart("coverage").setOption(bar(d.cameras.map((c) => c.camera), [
      { name: t("stats.coverage"), data: d.cameras.map((c) => c.coverage_percent), color: COLORS.coverage },
    ], { max: 100 }), true);
    chart("offline").setOption(bar(d.cameras.map((c) => c.camera), [
      { name: t("stats.offline_s"), data: d.cameras.map((c) => c.offline_s), color: COLORS.offline },
    ]), true);
    empty("day", d.incidents.total); empty("site", d.incidents.by_site.length); empty("room", d.incidents.by_room.length);
    empty("rule", d.incidents.by_rule.length); empty("judge", d.judgements.length, "stats.empty_judged");
    empty("ack", d.ack.filter((a) => a.median_s !== null).length, "stats.empty_ack");
    empty("coverage", d.cameras.length, "stats.empty_sessions"); empty("offline", d.cameras.length, "stats.empty_sessions");
    const body = $("st-experts");
    body.textContent = "";
    for (const x of d.experts) {
      const tr = el("tr");
      const a = el("a", "", x.code);
      a.href = "#experts/" + encodeURIComponent(x.code);
      const td = el("td");
      td.appendChild(a);
      tr.appendChild(td);
      tr.appendChild(el("td", "", x.name ?? t("experts.hidden")));
      tr.appendChild(el("td", "", String(x.violations)));
      body.appendChild(tr);
    }
    $("st-experts-empty").hidden = d.experts.length > 0;
    ev.stats = { rendered: (ev.stats?.rendered || 0) + 1, colors: COLORS };
  }

  function open() {
    fillForm();
    load();
  }

  // the rule names are wrapped to their bars' width at draw time: a new width draws again
  let redraw = null;
  function resize() {
    for (const k of CHARTS) if (charts[k]) charts[k].resize();
    clearTimeout(redraw);
    redraw = setTimeout(() => { if (data && !$("view-stats").hidden) draw(); }, 200);
  }
  window.addEventListener("resize", resize);

  /* A warning pushed on the WebSocket (alerts.js dispatches "evalwatch-warning"). */
  function onWarning(w) {
    warnings = [w, ...warnings.filter((x) => x.id !== w.id)];
    if (filled) renderWarnings();
  }
  document.addEventListener("evalwatch-warning", (e) => onWarning(e.detail));

  return { open, relabel: () => { if (data) { renderWarnings(); draw(); } }, onWarning };
})();
