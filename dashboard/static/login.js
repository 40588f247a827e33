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
    if (res.ok) {
      location.href = "/";
      return;
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    err.textContent = window.i18n.errorText(body);
  });
})();
