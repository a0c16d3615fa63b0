// Reports: build the links for the chosen site, period and start day.
"use strict";
(function () {
  const form = document.getElementById("report-form");
  if (!form) return;
  const start = document.getElementById("report-start");
  if (!start.value) {
    const d = new Date();
    d.setDate(1);
    d.setMonth(d.getMonth() - 1);
    start.value = d.toISOString().slice(0, 10);
  }
  function update() {
    const base = "/api/v1/sites/" + encodeURIComponent(form.site.value) + "/reports/" +
      encodeURIComponent(form.period.value) + "?start=" + encodeURIComponent(start.value) + "&format=";
    for (const fmt of ["html", "pdf", "csv"]) document.getElementById("report-" + fmt).href = base + fmt;
  }
  form.addEventListener("change", update);
  form.addEventListener("submit", (e) => { e.preventDefault(); update(); });
  update();
})();
