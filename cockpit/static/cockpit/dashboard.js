// The dashboard's two charts, drawn from the same numbers as its tables (json_script "cockpit-chart-data").
// Chart.js is served by the service itself (cockpit/vendor): the admin works offline.
(function () {
  "use strict";

  function draw(canvasId, series) {
    var canvas = document.getElementById(canvasId);
    if (!canvas || typeof Chart === "undefined") {
      return;
    }
    var style = getComputedStyle(document.documentElement);
    var text = style.getPropertyValue("--body-quiet-color").trim() || "#666";
    var grid = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
    new Chart(canvas, {
      data: {
        labels: series.labels,
        datasets: [
          {type: "bar", label: "SMS", data: series.sms, backgroundColor: "#79aec8", yAxisID: "y", order: 2},
          {type: "bar", label: "Approved", data: series.approved, backgroundColor: "#417690", yAxisID: "y", order: 2},
          {type: "bar", label: "Failed", data: series.failed, backgroundColor: "#ba2121", yAxisID: "y", order: 2},
          {type: "line", label: "Conversion %", data: series.conversion, borderColor: "#e08a00",
           backgroundColor: "#e08a00", yAxisID: "share", spanGaps: false, pointRadius: 3, order: 1}
        ]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,  // drawn at once: the screenshots see the finished chart
        interaction: {mode: "index", intersect: false},
        plugins: {legend: {labels: {color: text, boxWidth: 12}}},
        scales: {
          x: {ticks: {color: text, maxRotation: 0, autoSkip: true}, grid: {display: false}},
          y: {beginAtZero: true, ticks: {color: text, precision: 0}, grid: {color: grid},
              title: {display: true, text: "count", color: text}},
          share: {position: "right", min: 0, max: 100, ticks: {color: text, callback: function (v) { return v + " %"; }},
                  grid: {display: false}, title: {display: true, text: "conversion", color: text}}
        }
      }
    });
  }

  function start() {
    var data = JSON.parse(document.getElementById("cockpit-chart-data").textContent);
    draw("cockpit-chart-hourly", data.hourly);
    draw("cockpit-chart-daily", data.daily);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
