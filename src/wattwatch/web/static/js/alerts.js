// Alerts: open alerts with an Acknowledge button, and the history of past ones.
"use strict";
(function () {
  const root = document.getElementById("alerts");
  if (!root) return;
  const canAck = root.dataset.ack === "1";
  let names = {};
  try { names = JSON.parse(root.dataset.names || "{}"); } catch (e) { names = {}; }
  const status = document.getElementById("alerts-status");

  function row(a, withAction) {
    const tr = document.createElement("tr");
    tr.dataset.alert = a.id;
    tr.dataset.state = a.state;
    const device = a.device_id ? names[a.device_id] || "#" + a.device_id : a.target || "–";
    tr.append(
      WW.cell("td", a.severity, "sev sev-" + a.severity),
      WW.cell("td", a.message || a.kind),
      WW.cell("td", device),
      WW.cell("td", a.raised_ms ? new Date(a.raised_ms).toLocaleString() : "–"),
      WW.cell("td", a.state, "state"),
    );
    if (withAction) {
      const td = document.createElement("td");
      if (canAck && a.state === "active") {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Acknowledge";
        b.setAttribute("aria-label", "Acknowledge: " + (a.message || a.kind));
        b.addEventListener("click", () => ack(a.id, b));
        td.append(b);
      }
      tr.append(td);
    } else {
      tr.append(WW.cell("td", a.acknowledged_by || ""));
    }
    return tr;
  }

  async function fetchState(state) {
    const r = await WW.api("GET", "/api/v1/alerts?state=" + state);
    return r.ok ? WW.listOf(r.data, "alerts") : [];
  }

  async function load() {
    const [active, acked, cleared] = await Promise.all(["active", "acknowledged", "cleared"].map(fetchState));
    const open = active.concat(acked.filter((a) => !a.cleared_ms));
    const past = acked.concat(cleared).sort((a, b) => (b.updated_ms || b.raised_ms || 0) - (a.updated_ms || a.raised_ms || 0));
    const openBody = document.getElementById("open-alerts");
    const pastBody = document.getElementById("past-alerts");
    openBody.replaceChildren(...(open.length ? open.map((a) => row(a, true)) : [emptyRow("No open alerts.")]));
    pastBody.replaceChildren(...(past.length ? past.slice(0, 200).map((a) => row(a, false)) : [emptyRow("Nothing yet.")]));
    root.dataset.loaded = "1";
  }
  function emptyRow(msg) {
    const tr = document.createElement("tr");
    const td = WW.cell("td", msg, "muted");
    td.colSpan = 6;
    tr.append(td);
    return tr;
  }

  async function ack(id, button) {
    button.disabled = true;
    const r = await WW.api("POST", "/api/v1/alerts/" + id + "/ack");
    WW.text(status, r.ok ? "Alert acknowledged." : "Not acknowledged: " + r.error);
    button.disabled = false;
    await load();
  }

  WW.stream({}, { "alert.raised": load, "alert.updated": load, "alert.cleared": load, "alert.acknowledged": load });
  load();
  setInterval(load, 30000); // also without stream events from the alert engine
})();
