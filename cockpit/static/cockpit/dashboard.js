// The dashboard's two charts, drawn from the same numbers as its tables (json_script "cockpit-chart-data").
// Chart.js is served by the service itself (cockpit/vendor): the admin works offline.
(function () {
  "use strict";

  // The same colours as the channels' swatches in the tables (cockpit.css).
  var CHANNEL_COLOURS = {sms: "#79aec8", whatsapp: "#25a366", voice: "#8e6bbf"};
  // What each part of the sends bar is called in the legend.
  var SENDS_LABELS = {sms: "SMS sent", whatsapp: "WhatsApp sent", voice: "Calls made"};

  function draw(canvasId, series) {
    var canvas = document.getElementById(canvasId);
    if (!canvas || typeof Chart === "undefined") {
      return;
    }
    var style = getComputedStyle(document.documentElement);
    var text = style.getPropertyValue("--body-quiet-color").trim() || "#666";
    var grid = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
    // The sends bar is stacked by channel (only the channels that sent something in the chart's window);
    // approvals and failures stand beside it, each a stack of one.
    var channels = series.channels.length ? series.channels : [{key: "sms", label: "SMS", sms: series.sms}];
    var sends = channels.map(function (channel) {
      return {type: "bar", label: SENDS_LABELS[channel.key] || channel.label, data: channel.sms,
              backgroundColor: CHANNEL_COLOURS[channel.key] || "#999", yAxisID: "y", stack: "sends", order: 2};
    });
    new Chart(canvas, {
      data: {
        labels: series.labels,
        datasets: sends.concat([
          {type: "bar", label: "Approved", data: series.approved, backgroundColor: "#417690", yAxisID: "y",
           stack: "approved", order: 2},
          {type: "bar", label: "Failed", data: series.failed, backgroundColor: "#ba2121", yAxisID: "y",
           stack: "failed", order: 2},
          {type: "line", label: "Conversion %", data: series.conversion, borderColor: "#e08a00",
           backgroundColor: "#e08a00", yAxisID: "share", spanGaps: false, pointRadius: 3, order: 1}
        ])
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,  // drawn at once: the screenshots see the finished chart
        interaction: {mode: "index", intersect: false},
        plugins: {legend: {labels: {color: text, boxWidth: 12}}},
        scales: {
          x: {stacked: true, ticks: {color: text, maxRotation: 0, autoSkip: true}, grid: {display: false}},
          y: {stacked: true, beginAtZero: true, ticks: {color: text, precision: 0}, grid: {color: grid},
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
