// Overview: power now per device and site from the live stream; active alerts when present.
"use strict";
(function () {
  const root = document.getElementById("overview");
  if (!root) return;
  const latest = {}; // "device:channel" -> watts
  document.querySelectorAll("[data-device-power]").forEach((el) => {
    const dev = el.dataset.devicePower;
    let chans = {};
    try { chans = JSON.parse(el.dataset.channels || "{}"); } catch (e) { chans = {}; }
    for (const [ch, p] of Object.entries(chans)) {
      if (p && p.power_w !== null && p.power_w !== undefined) latest[dev + ":" + ch] = p.power_w;
    }
  });

  function sum(keys) {
    let total = null;
    for (const k of keys) if (k in latest) total = (total || 0) + latest[k];
    return total;
  }

  function redraw(deviceId) {
    const el = document.querySelector('[data-device-power="' + deviceId + '"]');
    if (el) {
      const keys = Object.keys(latest).filter((k) => k.startsWith(deviceId + ":"));
      WW.text(el, WW.fmtPower(sum(keys)));
    }
    document.querySelectorAll("[data-counted]").forEach((site) => {
      const keys = (site.dataset.counted || "").split(" ").filter(Boolean);
      if (!keys.some((k) => k.startsWith(deviceId + ":"))) return;
      WW.text(site.querySelector("[data-site-power]"), WW.fmtPower(sum(keys)));
    });
    WW.showStatus(deviceId, true);
  }

  const state = document.getElementById("live-state");
  WW.stream({}, {
    readings: (d) => {
      for (const p of d.points) {
        if (p.power_w !== undefined && p.power_w !== null) latest[d.device_id + ":" + p.channel] = p.power_w;
      }
      redraw(d.device_id);
    },
    "device.status": (d) => WW.showStatus(d.device_id, d.online),
    "alert.raised": () => loadAlerts(),
    "alert.cleared": () => loadAlerts(),
    "alert.acknowledged": () => loadAlerts(),
  }, (s) => {
    root.dataset.live = s;
    WW.text(state, s === "live" ? "Live: values update as devices report." : "Live stream interrupted; reconnecting…");
  });

  async function loadAlerts() {
    const list = document.getElementById("alert-list");
    if (!list) return;
    const r = await WW.api("GET", "/api/v1/alerts?state=active");
    if (!r.ok) { WW.text(document.getElementById("alert-count"), "?"); return; }
    const alerts = WW.listOf(r.data, "alerts");
    WW.text(document.getElementById("alert-count"), String(alerts.length));
    list.replaceChildren(...alerts.slice(0, 5).map((a) => {
      const li = document.createElement("li");
      li.append(WW.cell("span", a.severity, "sev sev-" + a.severity), " ", a.message || a.kind || "alert");
      return li;
    }));
  }
  loadAlerts();
})();
