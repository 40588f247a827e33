"use strict";
/* A dependency-free rendering of the OpenAPI document (no CDN-hosted Swagger UI). */
(async function () {
  await window.i18n.ready;
  const res = await fetch("/api/openapi.json", { credentials: "same-origin" });
  const spec = await res.json();
  const root = document.getElementById("docs");
  Object.keys(spec.paths).sort().forEach((path) => {
    const ops = spec.paths[path];
    Object.keys(ops).forEach((method) => {
      const op = ops[method];
      const div = document.createElement("div");
      div.className = "op";
      const h = document.createElement("h3");
      h.textContent = method.toUpperCase() + " " + path;
      div.appendChild(h);
      const p = document.createElement("pre");
      p.textContent = (op.summary || "") + "\n" + (op.description || "");
      div.appendChild(p);
      root.appendChild(div);
    });
  });
})();
