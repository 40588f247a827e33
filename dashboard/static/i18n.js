/* evalwatch UI strings: zh-CN by default, English on request (stored in localStorage).
   Elements carry data-i18n (text), data-i18n-title, data-i18n-placeholder; scripts call t(key). */
"use strict";
(function () {
  const LANGS = ["zh-CN", "en"];
  let dict = {};
  let lang = localStorage.getItem("evalwatch_lang");
  if (!LANGS.includes(lang)) lang = "zh-CN";

  function t(key, fallback) {
    if (Object.prototype.hasOwnProperty.call(dict, key)) return dict[key];
    return fallback !== undefined ? fallback : key;
  }

  function apply(root) {
    const r = root || document;
    r.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    r.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    r.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    document.documentElement.lang = lang;
  }

  /* The CJK web font (app.css "evalwatch-cjk", for screens without a CJK font) is in before any
     text is laid out: Chromium kept the boxes of text laid out while it was still loading until
     that text changed (docs/dashboard.md).  Fetched with the strings; waited for at most 3 s. */
  const cjkFont = Promise.race([
    document.fonts.load('16px "evalwatch-cjk"', "\u4e2d").catch(() => null),
    new Promise((resolve) => setTimeout(resolve, 3000)),
  ]);

  async function load(l) {
    const res = await fetch("/api/i18n/" + encodeURIComponent(l), { credentials: "same-origin" });
    dict = await res.json();
    await cjkFont;
    lang = l;
    apply();
    document.dispatchEvent(new CustomEvent("i18n-changed", { detail: { lang: l } }));
  }

  function toggle() {
    const next = lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem("evalwatch_lang", next);
    return load(next);
  }

  /* The message to show for a failed API response body {detail, code}. */
  function errorText(body) {
    if (body && body.code && Object.prototype.hasOwnProperty.call(dict, body.code)) {
      // "specific": the server's detail says what exactly is wrong (field, room, expert...)
      return body.specific && body.detail ? dict[body.code] + " " + String(body.detail) : dict[body.code];
    }
    if (body && body.detail) return String(body.detail);
    return t("common.network_error");
  }

  /* The keys of the dictionary that start with prefix (a family: "audit_action."). */
  function keys(prefix) { return Object.keys(dict).filter((k) => k.startsWith(prefix)); }

  window.i18n = { t, apply, load, toggle, errorText, keys, get lang() { return lang; }, ready: load(lang) };
  window.t = t;
})();
