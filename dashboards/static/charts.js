// Draws every chart on the page from the JSON spec the server embedded next to it, and keeps
// the page's state in the URL: a drag-zoom on a time chart opens the same page over the
// selected range, a click on a bar that carries a link follows it.
(function () {
  "use strict";
  var config = { displaylogo: false, responsive: true, displayModeBar: false };

  function withRange(startMs, endMs) {
    var url = new URL(window.location.href);
    url.searchParams.delete("since");
    url.searchParams.delete("refresh");
    url.searchParams.set("start", String(Math.floor(startMs / 1000)));
    url.searchParams.set("end", String(Math.ceil(endMs / 1000)));
    return url.toString();
  }

  function utcMs(text) {
    // plotly reports axis ranges as "YYYY-MM-DD HH:MM:SS.sss" in the axis' (UTC) frame.
    return Date.parse(String(text).replace(" ", "T") + "Z");
  }

  function draw(holder) {
    var source = document.getElementById(holder.id + "-spec");
    if (!source || typeof Plotly === "undefined") return;
    var spec = JSON.parse(source.textContent);
    Plotly.newPlot(holder, spec.data, spec.layout, config).then(function () {
      holder.setAttribute("data-drawn", "true");
    });
    holder.on("plotly_click", function (event) {
      var point = event.points && event.points[0];
      if (point && typeof point.customdata === "string" && point.customdata.charAt(0) === "/") {
        window.location.href = point.customdata;
      }
    });
    if (spec.zoom) {
      holder.on("plotly_relayout", function (change) {
        var start = change["xaxis.range[0]"], end = change["xaxis.range[1]"];
        if (start !== undefined && end !== undefined) {
          window.location.href = withRange(utcMs(start), utcMs(end));
        }
      });
    }
  }

  function scheduleRefresh() {
    var seconds = Number(document.body.getAttribute("data-refresh-seconds") || "0");
    if (seconds > 0) {
      window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }

  // plotly.js is 1.2 MB: only a page that has a chart loads it (once cached, it costs little).
  function withPlotly(then) {
    if (typeof Plotly !== "undefined") { then(); return; }
    var self = document.querySelector("script[data-plotly]");
    var script = document.createElement("script");
    script.src = self.getAttribute("data-plotly");
    script.onload = then;
    document.head.appendChild(script);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var charts = document.querySelectorAll("div.chart");
    if (charts.length > 0) {
      withPlotly(function () { charts.forEach(draw); });
    }
    scheduleRefresh();
  });
})();
