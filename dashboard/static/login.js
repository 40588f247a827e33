"use strict";
(async function () {
  await window.i18n.ready;
  const form = document.getElementById("login-form");
  const err = document.getElementById("login-error");
  document.getElementById("lang-switch").addEventListener("click", () => window.i18n.toggle());
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    let res;
    try {
      res = await fetch("/api/auth/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          username: document.getElementById("username").value,
          password: document.getElementById("password").value,
        }),
      });
    } catch (e) {
      err.textContent = t("common.network_error");
      return;
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.ok && body && body.password_change_required) {
      // A seeded account: choose a new password first (the API refuses everything else).
      pending = { username: body.username, csrf: body.csrf,
                  old: document.getElementById("password").value };
      form.hidden = true;
      change.hidden = false;
      document.getElementById("new-password").focus();
      return;
    }
    if (res.ok) {
      location.href = "/";
      return;
    }
    err.textContent = window.i18n.errorText(body);
  });
  const change = document.getElementById("change-form");
  const cerr = document.getElementById("change-error");
  let pending = null;
  change.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    cerr.textContent = "";
    const pw = document.getElementById("new-password").value;
    if (pw !== document.getElementById("new-password-again").value) {
      cerr.textContent = t("login.mismatch");
      return;
    }
    try {
      let res = await fetch("/api/auth/password", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": pending.csrf },
        body: JSON.stringify({ old_password: pending.old, new_password: pw }),
      });
      if (res.ok) {  // the change ended every session: log in again with the new password
        res = await fetch("/api/auth/login", {
          method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ username: pending.username, password: pw }),
        });
      }
      if (res.ok) { location.href = "/"; return; }
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      cerr.textContent = window.i18n.errorText(body);
    } catch (e) {
      cerr.textContent = t("common.network_error");
    }
  });
})();
