// Admin: API keys (list, create — shown once — and revoke) and users' roles, over the API.
"use strict";
(function () {
  const keys = document.getElementById("api-keys");
  const keyForm = document.getElementById("key-form");
  const keyResult = document.getElementById("key-result");

  async function loadKeys() {
    const r = await WW.api("GET", "/api/v1/api-keys");
    const body = keys.querySelector("tbody");
    if (!r.ok) { body.replaceChildren(); WW.text(keyResult, "Could not list keys: " + r.error); return; }
    const rows = WW.listOf(r.data, "keys").filter((k) => !k.revoked);
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = WW.cell("td", "No API keys.", "muted");
      td.colSpan = 4;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...rows.map((k) => {
      const tr = document.createElement("tr");
      tr.dataset.key = k.id;
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Revoke";
      b.setAttribute("aria-label", "Revoke " + k.name);
      b.addEventListener("click", async () => {
        const res = await WW.api("DELETE", "/api/v1/api-keys/" + k.id);
        WW.text(keyResult, res.ok ? "Revoked " + k.name + "." : "Not revoked: " + res.error);
        loadKeys();
      });
      td.append(b);
      tr.append(WW.cell("td", k.name), WW.cell("td", k.scope || "–"),
        WW.cell("td", k.created_ms ? new Date(k.created_ms).toLocaleDateString() : "–"), td);
      return tr;
    }));
  }

  if (keys && keyForm) {
    keyForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { name: keyForm.name.value.trim() };
      if (keyForm.scope.value) body.scope = keyForm.scope.value;
      if (keyForm.expires_days.value) body.expires_days = Number(keyForm.expires_days.value);
      const r = await WW.api("POST", "/api/v1/api-keys", body);
      if (!r.ok) { keyResult.className = "error"; WW.text(keyResult, "Not created: " + r.error); return; }
      keyResult.className = "notice";
      const code = document.createElement("code");
      code.id = "new-key";
      code.textContent = r.data.key;
      keyResult.replaceChildren("Copy the key now, it is shown only once: ", code);
      keyForm.reset();
      loadKeys();
    });
    loadKeys();
  }

  const status = document.getElementById("users-status");
  document.querySelectorAll("select[data-user-role]").forEach((sel) => {
    let before = sel.value;
    sel.addEventListener("change", async () => {
      const r = await WW.api("PATCH", "/api/v1/users/" + sel.dataset.userRole, { role: sel.value });
      if (r.ok) { before = sel.value; WW.text(status, "Role changed to " + sel.value + "."); }
      else { sel.value = before; WW.text(status, "Role not changed: " + r.error); }
    });
  });
})();
