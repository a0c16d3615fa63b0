// Shared helpers of the wattwatch dashboard: API calls with the session's CSRF token,
// the live stream, number and time formatting. No framework, no build step.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(url, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: null, error: "the server cannot be reached" };
    }
    let data = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) data = await res.json().catch(() => null);
    if (res.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(location.pathname));
    }
    const error = !res.ok ? (data && data.error && data.error.message) || res.statusText : null;
    return { ok: res.ok, status: res.status, data, error };
  }

  function listOf(data, ...keys) {
    if (Array.isArray(data)) return data;
    for (const k of keys.concat(["items", "results", "points"])) {
      if (data && Array.isArray(data[k])) return data[k];
    }
    return [];
  }

  function fmtPower(w) {
    if (w === null || w === undefined || Number.isNaN(w)) return "–";
    const a = Math.abs(w);
    if (a >= 10000) return (w / 1000).toFixed(1) + " kW";
    if (a >= 1000) return (w / 1000).toFixed(2) + " kW";
    return a >= 10 ? w.toFixed(0) + " W" : w.toFixed(1) + " W";
  }

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(ms).toLocaleString();
  }

  function refreshTimes() {
    document.querySelectorAll("time.ago[data-ts]").forEach((el) => {
      const ts = Number(el.dataset.ts);
      if (ts) el.textContent = ago(ts);
    });
  }
  refreshTimes();
  setInterval(refreshTimes, 5000);

  // The live stream: one EventSource; `onState` hears "live", "reconnecting"; events by type.
  function stream(params, handlers, onState) {
    const qs = new URLSearchParams(params || {}).toString();
    const es = new EventSource("/api/v1/stream" + (qs ? "?" + qs : ""));
    es.addEventListener("hello", () => onState && onState("live"));
    es.onerror = () => onState && onState("reconnecting");
    for (const [type, fn] of Object.entries(handlers)) {
      es.addEventListener(type, (e) => {
        let data = null;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        fn(data);
      });
    }
    window.addEventListener("pagehide", () => es.close());
    return es;
  }

  function text(el, value) { if (el) el.textContent = value; }

  // Online/offline badges: shape and word, not colour alone.
  function showStatus(deviceId, online) {
    document.querySelectorAll('[data-status="' + deviceId + '"]').forEach((el) => {
      el.className = "status " + (online ? "on" : "off");
      el.replaceChildren();
      const dot = document.createElement("span");
      dot.setAttribute("aria-hidden", "true");
      dot.textContent = online ? "●" : "○";
      el.append(dot, online ? " online" : " offline");
    });
  }

  function cell(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value === null || value === undefined ? "–" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  window.WW = { api, listOf, fmtPower, ago, stream, text, cell, refreshTimes, csrf, showStatus };
})();
