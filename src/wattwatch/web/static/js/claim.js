// Claim a device: claim code + site (+ area), sent to the claims API.
"use strict";
(function () {
  const form = document.getElementById("claim-form");
  if (!form) return;
  const result = document.getElementById("claim-result");
  const areaSel = document.getElementById("claim-area");
  const areaLabel = document.getElementById("claim-area-label");
  let areas = {};
  try { areas = JSON.parse(form.dataset.areas || "{}"); } catch (e) { areas = {}; }
  function fillAreas() {
    const mine = areas[form.site_id.value] || {};
    const opts = [["", "no area"]].concat(Object.entries(mine));
    areaSel.replaceChildren(...opts.map(([id, name]) => { const o = document.createElement("option"); o.value = id; o.textContent = name; return o; }));
    areaSel.hidden = areaLabel.hidden = opts.length === 1;
  }
  form.site_id.addEventListener("change", fillAreas);
  fillAreas();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { claim_code: form.claim_code.value.trim(), site_id: Number(form.site_id.value) };
    if (areaSel.value) body.area_id = Number(areaSel.value);
    const button = form.querySelector("button");
    button.disabled = true;
    WW.text(result, "Claiming…");
    const r = await WW.api("POST", "/api/v1/claims", body);
    button.disabled = false;
    if (!r.ok) { result.className = "error"; WW.text(result, "Not claimed: " + r.error); return; }
    const dev = (r.data && (r.data.device || r.data)) || {};
    result.className = "notice";
    result.replaceChildren("Claimed " + (dev.name || "the device") + ". ");
    if (dev.id) {
      const a = document.createElement("a");
      a.href = "/devices/" + dev.id;
      a.textContent = "Open its page";
      result.append(a);
    }
    form.reset();
    fillAreas();
  });
})();
