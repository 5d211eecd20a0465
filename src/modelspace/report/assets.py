"""The report page's style sheet and script, inlined into every page (no CDN, no web fonts)."""

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; --hit: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
header { background: var(--soft); border-bottom: 1px solid var(--line); padding: 18px 0 10px; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 34px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.lead, .muted { color: var(--muted); }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
.facts { display: flex; flex-wrap: wrap; gap: 8px 22px; margin: 10px 0 6px; }
.facts div b { display: block; font-size: 18px; }
.facts div span { color: var(--muted); font-size: 12px; }
.facts a { color: inherit; text-decoration: none; display: block; }
.facts a.fail b { color: #cf222e; text-decoration: underline; }
p.conclusion { font-size: 15px; }
p.warn, th.blind { color: #9a6700; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: 4px;
             background: #fff; }
figure.zoomable img { cursor: zoom-in; }
figure.zoomed { overflow: auto; max-height: 85vh; border: 1px solid var(--line); }
figure.zoomed img { max-width: none; cursor: zoom-out; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 18px; align-items: start; }
.tabs { display: flex; flex-wrap: wrap; gap: 4px; margin: 6px 0 10px; }
.tabs button { font: inherit; font-size: 13px; padding: 3px 10px; border: 1px solid var(--line); border-radius: 14px;
               background: #fff; color: var(--ink); cursor: pointer; }
.tabs button[aria-selected="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ref td { color: var(--muted); }
td .v { color: var(--muted); font-variant-numeric: tabular-nums; margin-left: 4px; }
td.hit { color: var(--hit); font-weight: 600; }
td.hit::before { content: "✓ "; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px; border: 1px solid;
         font-variant-numeric: tabular-nums; margin-left: 6px; }
.badge.high { color: var(--hit); } .badge.medium { color: #9a6700; } .badge.low { color: #cf222e; }
tr.conf td { border-bottom: 2px solid var(--line); }
details.target { border-bottom: 1px solid var(--line); padding: 3px 0; }
details.target summary { cursor: pointer; }
details.target summary .muted { margin-left: 8px; font-size: 12px; }
.tablewrap { overflow-x: auto; }
input[type=search] { font: inherit; padding: 4px 8px; width: 280px; border: 1px solid var(--line); border-radius: 4px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
pre { background: var(--soft); padding: 8px 10px; border-radius: 4px; overflow-x: auto; }
#tip { position: fixed; pointer-events: none; background: rgba(31,35,40,.92); color: #fff; font-size: 12px;
       padding: 3px 7px; border-radius: 4px; display: none; z-index: 10; white-space: nowrap; }
.pair-select select { font: inherit; margin: 0 14px 0 4px; padding: 2px 6px; max-width: 360px; }
footer { margin: 40px 0 30px; color: var(--muted); font-size: 12px; }
"""

# Tabs, zoom, the target filter, the pair of estimators compared and the tooltips of the heatmap and the model-space map. The
# tooltips read the figure's data from a JSON <script> block and the axes box (in fractions of the
# image) that the figure was drawn with, so what they show is the matrix itself, not the pixels.
JS = """
(function () {
  "use strict";
  var parsed = {};
  function data(id) {
    if (!(id in parsed)) { parsed[id] = JSON.parse(document.getElementById(id).textContent); }
    return parsed[id];
  }
  document.querySelectorAll(".tabbed").forEach(function (group) {
    var buttons = group.querySelectorAll(":scope > .tabs button");
    var panels = group.querySelectorAll(":scope > .panel");
    function show(i) {
      buttons.forEach(function (b, k) { b.setAttribute("aria-selected", k === i ? "true" : "false"); });
      panels.forEach(function (p, k) { p.hidden = k !== i; });
    }
    buttons.forEach(function (b, k) { b.addEventListener("click", function () { show(k); }); });
    show(0);
  });
  document.querySelectorAll("figure.zoomable img").forEach(function (img) {
    img.addEventListener("click", function () { img.parentNode.classList.toggle("zoomed"); });
  });
  var filter = document.getElementById("target-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var q = filter.value.trim().toLowerCase();
      document.querySelectorAll("details.target").forEach(function (d) {
        d.hidden = q !== "" && d.dataset.name.toLowerCase().indexOf(q) < 0;
      });
    });
  }
  // Two estimators compared: their matrices and trees are the Model space figures, shown again (the
  // page holds each PNG once); the difference matrix and the curves are drawn per pair.
  var pairA = document.getElementById("pair-a"), pairB = document.getElementById("pair-b");
  if (pairA && pairB) {
    var agreement = data(pairA.dataset.agreement).pairs;
    var copy = function (side, k) {
      document.querySelectorAll('img[data-copy][data-side="' + side + '"]').forEach(function (img) {
        var from = document.querySelector('img[data-figure="' + img.dataset.copy + "-" + k + '"]');
        if (!from) { return; }
        img.src = from.src;
        img.alt = from.alt;
        img.dataset.hover = from.dataset.hover || "";
      });
    };
    var showPair = function () {
      var a = parseInt(pairA.value, 10), b = parseInt(pairB.value, 10), found = false;
      copy("a", a);
      copy("b", b);
      var r = agreement[Math.min(a, b) + "-" + Math.max(a, b)];
      document.getElementById("pair-agreement").textContent = a === b ? "Choose two different estimators." :
        "Agreement of the two trees (Pearson correlation of their cophenetic distances over the " + r.n +
        " models both hold; 1 = the same hierarchy): " + (r.r === null ? "n/a" : r.r.toFixed(2)) + ".";
      document.querySelectorAll(".pair-panel").forEach(function (p) {
        p.hidden = p.dataset.pair !== a + "-" + b;
        found = found || !p.hidden;
      });
      document.getElementById("pair-missing").hidden = found || a === b;
    };
    pairA.addEventListener("change", showPair);
    pairB.addEventListener("change", showPair);
    showPair();
  }
  var tip = document.getElementById("tip");
  function place(ev, text) {
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = (ev.clientX + 14) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  }
  function hide() { tip.style.display = "none"; }
  function inBox(img, ev, box) {
    var r = img.getBoundingClientRect();  // the border box: the picture starts inside the border
    var x0 = r.left + img.clientLeft, y0 = r.top + img.clientTop, w = img.clientWidth, h = img.clientHeight;
    var u = ((ev.clientX - x0) / w - box.left) / box.width;
    var v = ((ev.clientY - y0) / h - box.top) / box.height;
    return { u: u, v: v, w: w * box.width, h: h * box.height };
  }
  document.querySelectorAll("img[data-hover]").forEach(function (img) {
    img.addEventListener("mouseleave", hide);
    img.addEventListener("mousemove", function (ev) {
      if (!img.dataset.hover) { hide(); return; }
      var d = data(img.dataset.hover);  // read at each move: a compared estimator's figure changes with the pair
      var p = inBox(img, ev, d.box);
      if (p.u < 0 || p.u >= 1 || p.v < 0 || p.v >= 1) { hide(); return; }
      if (d.kind === "matrix") {
        var n = d.labels.length, i = Math.floor(p.v * n), j = Math.floor(p.u * n);
        var value = d.symmetric ? d.values[Math.min(i, j)][Math.abs(j - i)] : d.values[i][j];  // upper triangle
        place(ev, d.labels[i] + " \\u2194 " + d.labels[j] + ": " + (value / d.scale).toFixed(3));
      } else {
        var sx = d.box.xlim[1] - d.box.xlim[0], sy = d.box.ylim[1] - d.box.ylim[0];
        var best = -1, bestD = 14 * 14;
        for (var k = 0; k < d.labels.length; k++) {
          var dx = ((d.x[k] - d.box.xlim[0]) / sx - p.u) * p.w;
          var dy = ((d.box.ylim[1] - d.y[k]) / sy - p.v) * p.h;
          if (dx * dx + dy * dy < bestD) { bestD = dx * dx + dy * dy; best = k; }
        }
        if (best < 0) { hide(); } else { place(ev, d.labels[best] + d.notes[best]); }
      }
    });
  });
})();
"""
