// Device page: newest values and a live power chart from the stream, a zoomable history
// chart that asks for the rollup that fits the range, and the on/off switch.
"use strict";
(function () {
  const root = document.getElementById("device");
  if (!root) return;
  const deviceId = root.dataset.device;
  const channels = (root.dataset.channels || "").split(",").filter(Boolean);
  // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
  const H = 3600e3, D = 24 * H;
  const RANGES = { "1h": H, "6h": 6 * H, "24h": D, "3d": 3 * D, "7d": 7 * D, "30d": 30 * D, "60d": 60 * D, "1y": 365 * D };
  const LIVE_WINDOW_MS = 10 * 60e3;
  // Which stored resolution answers a span: never more than a few thousand points a channel.
  function intervalFor(spanMs) {
    if (spanMs <= 6 * H) return "raw";
    if (spanMs <= 3 * D) return "1m";
    if (spanMs <= 60 * D) return "1h";
    return "1d";
  }
  const INTERVAL_NAMES = { raw: "raw readings", "1m": "1 min averages", "1h": "hourly averages", "1d": "daily averages" };
  const ROLLUP_METRICS = new Set(["power_w", "energy_wh"]);
  const FORMAT = {
    power_w: (v) => v.toFixed(1) + " W",
    voltage_v: (v) => v.toFixed(1) + " V",
    current_a: (v) => v.toFixed(3) + " A",
    energy_wh: (v) => (v / 1000).toFixed(3) + " kWh",
  };

  function chartWidth(el) { return Math.max(280, el.clientWidth || 600); }
  function chartHeight() { return window.innerWidth < 600 ? 220 : 300; }

  // -- newest values --------------------------------------------------------------------
  const lastSeen = document.querySelector("#last-seen time");
  function showPoint(p) {
    const row = document.querySelector('#values tr[data-channel="' + CSS.escape(p.channel) + '"]');
    if (row) {
      for (const [metric, fmt] of Object.entries(FORMAT)) {
        if (p[metric] !== undefined && p[metric] !== null) {
          WW.text(row.querySelector('[data-metric="' + metric + '"]'), fmt(p[metric]));
        }
      }
    }
    if (lastSeen && p.ts > Number(lastSeen.dataset.ts || 0)) {
      lastSeen.dataset.ts = String(p.ts);
      lastSeen.textContent = WW.ago(p.ts);
      lastSeen.title = new Date(p.ts).toISOString();
    }
    if (p.state !== undefined && p.state !== null) showState(p.state, "device reported");
  }

  // -- live chart -----------------------------------------------------------------------
  const liveEl = document.getElementById("live-chart");
  const live = {}; // channel -> {ts: [], v: []}
  let liveChart = null;
  function liveData() {
    const names = channels.filter((c) => live[c] && live[c].ts.length);
    if (!names.length) return { names, data: [[]] };
    const tables = names.map((c) => [live[c].ts.map((t) => t / 1000), live[c].v]);
    return { names, data: tables.length === 1 ? tables[0] : uPlot.join(tables) };
  }
  function drawLive() {
    const cutoff = Date.now() - LIVE_WINDOW_MS;
    for (const c of Object.keys(live)) {
      const s = live[c];
      while (s.ts.length && s.ts[0] < cutoff) { s.ts.shift(); s.v.shift(); }
    }
    const { names, data } = liveData();
    const key = names.join(",");
    if (!liveChart || liveChart._key !== key) {
      if (liveChart) liveChart.destroy();
      liveChart = new uPlot({
        width: chartWidth(liveEl), height: chartHeight(),
        series: [{}].concat(names.map((c, i) => ({ label: c + " W", stroke: PALETTE[i % PALETTE.length], width: 2 }))),
        axes: [{}, { size: 60 }],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      }, data, liveEl);
      liveChart._key = key;
    } else {
      liveChart.setData(data);
    }
    liveEl.dataset.points = String(data[0].length);
  }
  function addLive(p) {
    if (p.power_w === undefined || p.power_w === null) return;
    const s = live[p.channel] || (live[p.channel] = { ts: [], v: [] });
    if (s.ts.length && p.ts <= s.ts[s.ts.length - 1]) {
      if (p.ts < s.ts[s.ts.length - 1]) return; // late, out-of-order point: history shows it
      s.v[s.v.length - 1] = p.power_w;
      return;
    }
    s.ts.push(p.ts); s.v.push(p.power_w);
  }
  async function seedLive() {
    const now = Date.now();
    const qs = new URLSearchParams({ from: now - LIVE_WINDOW_MS, to: now + 1, interval: "raw", metrics: "power_w", limit: 20000 });
    const r = await WW.api("GET", "/api/v1/devices/" + deviceId + "/readings?" + qs);
    if (r.ok) for (const p of r.data.points) addLive(p);
    drawLive();
  }

  // -- history chart --------------------------------------------------------------------
  const histEl = document.getElementById("history-chart");
  const form = document.getElementById("history-form");
  const info = document.getElementById("history-info");
  const zoomReset = document.getElementById("zoom-reset");
  let histChart = null;
  let zoomed = null; // [from, to] while zoomed in
  let loadSeq = 0;

  function selectedRange() {
    const checked = form.querySelector('input[name="range"]:checked');
    const span = RANGES[checked ? checked.value : "24h"];
    const to = Date.now() + 1;
    return [to - span, to];
  }

  function historySeries(points, interval, metric, channel) {
    const names = channel ? [channel] : channels;
    const tables = [];
    const series = [{}];
    names.forEach((c, i) => {
      const mine = points.filter((p) => p.channel === c);
      const xs = mine.map((p) => p.ts / 1000);
      const colour = PALETTE[i % PALETTE.length];
      if (interval === "raw") {
        tables.push([xs, mine.map((p) => (p[metric] === undefined ? null : p[metric]))]);
        series.push({ label: c, stroke: colour, width: 1.5 });
      } else if (metric === "energy_wh") {
        tables.push([xs, mine.map((p) => p.energy_wh)]);
        series.push({ label: c + " Wh used", stroke: colour, width: 1.5, fill: colour + "22" });
      } else {
        tables.push([xs, mine.map((p) => p.power_w_avg)]);
        series.push({ label: c + " avg", stroke: colour, width: 1.5 });
        if (names.length === 1) {
          tables.push([xs, mine.map((p) => p.power_w_max)]);
          series.push({ label: "max", stroke: colour, width: 1, dash: [4, 4] });
          tables.push([xs, mine.map((p) => p.power_w_min)]);
          series.push({ label: "min", stroke: colour, width: 1, dash: [1, 3] });
        }
      }
    });
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    return { data, series };
  }

  async function loadHistory(from, to) {
    const seq = ++loadSeq;
    const interval = intervalFor(to - from);
    const metric = form.metric.value;
    const channel = form.channel.value;
    histEl.dataset.state = "loading";
    histEl.dataset.interval = interval;
    if (interval !== "raw" && !ROLLUP_METRICS.has(metric)) {
      if (histChart) { histChart.destroy(); histChart = null; }
      WW.text(info, "This metric is kept only as raw readings: pick a range of 6 h or less, or zoom in.");
      histEl.dataset.state = "ready";
      return;
    }
    const qs = new URLSearchParams({ from: Math.floor(from), to: Math.ceil(to), interval, limit: 100000 });
    if (channel) qs.set("channel", channel);
    if (interval === "raw") qs.set("metrics", metric);
    const r = await WW.api("GET", "/api/v1/devices/" + deviceId + "/readings?" + qs);
    if (seq !== loadSeq) return; // a newer request is under way
    if (!r.ok) {
      WW.text(info, "Could not load history: " + r.error);
      histEl.dataset.state = "error";
      return;
    }
    const points = r.data.points;
    const { data, series } = historySeries(points, interval, metric, channel);
    if (histChart) histChart.destroy();
    histChart = new uPlot({
      width: chartWidth(histEl), height: chartHeight(),
      series,
      axes: [{}, { size: 60 }],
      scales: { x: { time: true, range: () => [from / 1000, to / 1000] } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 5) return;
          const a = u.posToVal(u.select.left, "x") * 1000;
          const b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          if (b - a < 60e3) return;
          zoomed = [a, b];
          zoomReset.hidden = false;
          loadHistory(a, b);
        }],
      },
    }, data, histEl);
    const more = r.data.next ? " (more exist: zoom in to see all)" : "";
    WW.text(info, points.length + " points, " + INTERVAL_NAMES[interval] + more +
      (zoomed ? ". Zoomed in." : ". Drag across the chart to zoom in."));
    histEl.dataset.points = String(points.length);
    histEl.dataset.state = "ready";
    histEl.dataset.readyAt = String(Math.round(performance.now()));
  }

  function reload() {
    const [from, to] = zoomed || selectedRange();
    loadHistory(from, to);
  }
  form.addEventListener("change", (e) => {
    if (e.target.name === "range") { zoomed = null; zoomReset.hidden = true; }
    reload();
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); reload(); });
  zoomReset.addEventListener("click", () => { zoomed = null; zoomReset.hidden = true; reload(); });

  // -- on/off switch --------------------------------------------------------------------
  const sw = document.getElementById("switch");
  const swResult = document.getElementById("switch-result");
  function showState(state, why) {
    if (!sw) return;
    const on = Number(state) === 1;
    sw.setAttribute("aria-checked", on ? "true" : "false");
    sw.dataset.state = on ? "1" : "0";
    WW.text(sw.querySelector(".label"), on ? "On" : "Off");
    if (why) WW.text(swResult, why + " " + (on ? "on" : "off"));
  }
  if (sw) {
    sw.addEventListener("click", async () => {
      const action = sw.getAttribute("aria-checked") === "true" ? "off" : "on";
      sw.disabled = true;
      sw.setAttribute("aria-busy", "true");
      WW.text(swResult, "switching " + action + ", waiting for the device…");
      const r = await WW.api("POST", "/api/v1/devices/" + deviceId + "/commands", { action });
      sw.disabled = false;
      sw.removeAttribute("aria-busy");
      loadCommands();
      if (r.ok && r.data && r.data.ok !== false && r.data.state !== undefined && r.data.state !== null) {
        showState(r.data.state, "device reported");
      } else if (r.ok && r.data && r.data.ok === false) {
        WW.text(swResult, "the device refused: " + (r.data.error || "no reason given"));
      } else if (r.status === 504) {
        WW.text(swResult, "the device did not answer in time; its state is unchanged");
      } else {
        WW.text(swResult, "not switched: " + (r.error || "unknown error"));
      }
    });
  }

  // -- command audit trail ----------------------------------------------------------------
  async function loadCommands() {
    const table = document.getElementById("command-log");
    if (!table) return;
    const r = await WW.api("GET", "/api/v1/devices/" + deviceId + "/commands?limit=10");
    if (!r.ok) return;
    const rows = WW.listOf(r.data, "commands").slice(0, 10).map((c) => {
      const tr = document.createElement("tr");
      const when = c.requested_ms ? new Date(c.requested_ms).toLocaleString() : "–";
      let outcome = c.status || (c.ok ? "ok" : "failed");
      if (c.ok && c.state !== null && c.state !== undefined) outcome = "ok, now " + (Number(c.state) === 1 ? "on" : "off");
      if (c.latency_ms !== null && c.latency_ms !== undefined) outcome += " (" + c.latency_ms + " ms)";
      tr.append(WW.cell("td", when), WW.cell("td", c.action), WW.cell("td", outcome), WW.cell("td", c.actor || "–"));
      return tr;
    });
    table.querySelector("tbody").replaceChildren(...rows);
  }

  // -- appliances and forecast (when the AI part is there) -------------------------------
  const fmtWh = (wh) => (wh >= 1000 ? (wh / 1000).toFixed(2) + " kWh" : Math.round(wh) + " Wh");
  const hhmm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  async function loadAppliances() {
    const el = document.getElementById("appliances");
    if (!el) return;
    const nowEl = document.getElementById("appliances-now");
    const tl = document.getElementById("appliance-timeline");
    const to = Date.now(), from = to - D;
    const r = await WW.api("GET", "/api/v1/devices/" + deviceId + "/appliances?" + new URLSearchParams({ from, to }));
    if (!r.ok) { WW.text(el, "Not available: " + r.error); return; }
    const now = r.data.now;
    if (now) {
      const on = now.on.length ? now.on.join(", ") : "none of the known appliances";
      WW.text(nowEl, "On at " + hhmm(now.ts) + " (" + now.delay_min + " min ago): " + on);
    } else {
      WW.text(nowEl, "No recent readings: nothing to say about now.");
    }
    const apps = r.data.appliances || [];
    if (!apps.length) { WW.text(el, "The model knows no appliances yet."); return; }
    const table = document.createElement("table");
    const head = document.createElement("tr");
    ["Appliance", "Last 24 h", "Runs", "On for"].forEach((h) => head.append(WW.cell("th", h)));
    table.append(head);
    apps.forEach((a) => {
      const tr = document.createElement("tr");
      tr.append(WW.cell("td", a.name), WW.cell("td", fmtWh(a.energy_wh)), WW.cell("td", a.runs), WW.cell("td", a.on_minutes + " min"));
      table.append(tr);
    });
    el.className = "";
    el.replaceChildren(table);
    // one row per appliance, a bar for each run across the 24 h
    const rows = apps.map((a, i) => {
      const row = document.createElement("div");
      row.className = "tl-row";
      const label = document.createElement("span");
      label.className = "tl-name";
      label.textContent = a.name;
      const track = document.createElement("div");
      track.className = "tl-track";
      r.data.timeline.filter((t) => t.appliance === a.name).forEach((t) => {
        const bar = document.createElement("span");
        bar.className = "tl-bar";
        bar.style.left = (100 * (t.start - from) / D).toFixed(2) + "%";
        bar.style.width = Math.max(0.4, 100 * (t.end - t.start) / D).toFixed(2) + "%";
        bar.style.background = PALETTE[i % PALETTE.length];
        bar.title = a.name + " " + hhmm(t.start) + "–" + hhmm(t.end) + ", " + fmtWh(t.energy_wh);
        track.append(bar);
      });
      row.append(label, track);
      return row;
    });
    const axis = document.createElement("div");
    axis.className = "tl-row tl-axis";
    const ends = document.createElement("div");
    ends.className = "tl-ends";
    ends.append(WW.cell("span", "24 h ago (" + hhmm(from) + ")"), WW.cell("span", "now"));
    axis.append(WW.cell("span", ""), ends);
    tl.replaceChildren(...rows, axis);
    tl.hidden = false;
  }
  let fcChart = null;
  async function loadForecast() {
    const el = document.getElementById("forecast-chart");
    if (!el) return;
    const fcInfo = document.getElementById("forecast-info");
    const checked = document.querySelector('#forecast-form input[name="horizon"]:checked');
    const horizon = checked ? checked.value : "24h";
    const r = await WW.api("GET", "/api/v1/devices/" + deviceId + "/forecast?" + new URLSearchParams({ horizon }));
    if (fcChart) { fcChart.destroy(); fcChart = null; }
    el.replaceChildren();
    if (!r.ok) { WW.text(fcInfo, "Not available: " + r.error); return; }
    const cur = r.data.currency ? " " + r.data.currency : "";
    if (horizon === "month") {
      const m = r.data.month;
      let msg = "This month: " + fmtWh(m.energy_so_far_wh) + " so far; expected " + fmtWh(m.energy_wh) +
        " (80 %: " + fmtWh(m.energy_lo_wh) + "–" + fmtWh(m.energy_hi_wh) + ")";
      if (m.bill !== undefined) msg += ", bill " + m.bill.toFixed(2) + cur + " (" + m.bill_lo.toFixed(2) + "–" + m.bill_hi.toFixed(2) + ")";
      WW.text(fcInfo, msg + ".");
      return;
    }
    const pts = r.data.points || [];
    const total = pts.reduce((s, p) => s + p.energy_wh, 0);
    const cost = pts.every((p) => typeof p.cost === "number") ? pts.reduce((s, p) => s + p.cost, 0) : null;
    WW.text(fcInfo, (horizon === "24h" ? "Next 24 h: " : "Next 7 days: ") + fmtWh(total) +
      (cost !== null ? ", about " + cost.toFixed(2) + cur : "") + ". Shaded: 80 % interval.");
    const unit = horizon === "24h" ? "Wh per hour" : "Wh per day";
    fcChart = new uPlot({
      width: chartWidth(el), height: chartHeight(),
      series: [
        {},
        { label: "expected (" + unit + ")", stroke: PALETTE[0], width: 2 },
        { label: "low", stroke: "rgba(0,114,178,.35)", width: 1 },
        { label: "high", stroke: "rgba(0,114,178,.35)", width: 1 },
      ],
      bands: [{ series: [3, 2], fill: "rgba(0,114,178,.15)" }],
      axes: [{}, { size: 60 }],
    }, [pts.map((p) => p.ts / 1000), pts.map((p) => p.energy_wh), pts.map((p) => p.lo), pts.map((p) => p.hi)], el);
  }
  const fcForm = document.getElementById("forecast-form");
  if (fcForm) fcForm.addEventListener("change", loadForecast);

  // -- go ---------------------------------------------------------------------------------
  const wanted = new URLSearchParams(location.search).get("range");
  const radio = wanted && form.querySelector('input[name="range"][value="' + CSS.escape(wanted) + '"]');
  if (radio) radio.checked = true;
  const liveState = document.getElementById("live-state");
  WW.stream({ device_id: deviceId }, {
    readings: (d) => {
      for (const p of d.points) { showPoint(p); addLive(p); }
      drawLive();
      WW.showStatus(deviceId, true);
    },
    "device.status": (d) => WW.showStatus(deviceId, d.online),
    "command.result": (d) => {
      const r = d.result || d;
      if (r.ok !== false && r.state !== undefined && r.state !== null) showState(r.state, "device reported");
    },
  }, (s) => {
    root.dataset.live = s;
    WW.text(liveState, s === "live" ? "· live" : "· reconnecting…");
  });
  reload();
  seedLive();
  loadAppliances();
  loadForecast();
  loadCommands();
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (histChart) histChart.setSize({ width: chartWidth(histEl), height: chartHeight() });
      if (liveChart) liveChart.setSize({ width: chartWidth(liveEl), height: chartHeight() });
      if (fcChart) fcChart.setSize({ width: chartWidth(document.getElementById("forecast-chart")), height: chartHeight() });
    }, 150);
  });
})();
