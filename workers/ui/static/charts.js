// couchfarm ui: the "why conflicts happen" charts, drawn with uPlot (vendored in static/vendor/)
// from the JSON the page carries in <script type="application/json" class="chart-data"> blocks.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var colours = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];
  document.querySelectorAll("script.chart-data").forEach(function (block) {
    var target = document.getElementById(block.getAttribute("data-target"));
    var chart = JSON.parse(block.textContent);
    if (!target || !chart.x.length) { return; }
    var series = [{}].concat(chart.series.map(function (s, i) {
      return { label: s.label, stroke: colours[i % colours.length], width: 2, points: { show: false } };
    }));
    var data = [chart.x].concat(chart.series.map(function (s) { return s.values; }));
    var width = Math.max(320, Math.min(target.clientWidth || 640, 900));
    new uPlot({ width: width, height: 200, series: series, scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } } }, data, target);
    target.setAttribute("data-drawn", String(chart.series.length));
  });
})();
