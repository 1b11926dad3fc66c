/* Draws the report from the JSON in #report-data; in live mode (window.autopeftLive) polls for new data.
   When done it writes #autopeft-status: plots drawn, errors seen, resources fetched (tests read it). */
(function () {
  "use strict";
  var WIDE = { hypervolume: 1, layers: 1, parallel: 1, effects: 1 };
  var GL_TYPES = { scatter3d: 1, parcoords: 1, scattergl: 1 };
  var current = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(value, column) {
    if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
    if (column === "params") return value.toLocaleString("en-US", { maximumFractionDigits: 0 });
    if (column.indexOf("memory") === 0) return (value / 1048576).toFixed(1) + " MiB";
    if (column === "% of model") return value.toFixed(3) + "%";
    if (column === "trial") return String(value);
    return value.toFixed(4);
  }

  function drawHeader(data) {
    document.getElementById("title").textContent = data.title;
    var dl = document.getElementById("summary");
    dl.innerHTML = "";
    data.summary.forEach(function (kv) { dl.appendChild(el("dt", {}, kv[0])); dl.appendChild(el("dd", {}, kv[1])); });
    var notes = document.getElementById("notes");
    notes.innerHTML = "";
    data.notes.forEach(function (n) { notes.appendChild(el("li", {}, n)); });
    var toc = document.getElementById("toc");
    toc.innerHTML = "";
    data.figures.forEach(function (f) { var a = el("a", { href: "#fig-" + f.id }, f.title); toc.appendChild(a); });
    toc.appendChild(el("a", { href: "#table-section" }, "Pareto table"));
  }

  function drawFigures(data) {
    var main = document.getElementById("figures");
    var config = { responsive: true, displaylogo: false, showLink: false, toImageButtonOptions: { format: "svg" } };
    // every box first, then the plots: a plot sizes itself to its box, so the grid must be complete
    var boxes = data.figures.map(function (f) {
      var box = document.getElementById("fig-" + f.id);
      if (!box) {
        box = el("section", { id: "fig-" + f.id, "class": "figure" + (WIDE[f.id] ? " wide" : "") });
        box.appendChild(el("h2", {}, f.title));
        box.appendChild(el("p", { "class": "muted" }, f.description));
        box.appendChild(el("div", { "class": "plot", "data-figure": f.id }));
        main.appendChild(box);
      } else {
        box.querySelector("p").textContent = f.description;
      }
      return box;
    });
    var jobs = data.figures.map(function (f, i) {
      var div = boxes[i].querySelector(".plot");
      // Plotly.react redraws in place (keeps zoom and rotation when the live page updates)
      return Plotly.react(div, f.figure.data, f.figure.layout || {}, config);
    });
    return Promise.all(jobs);
  }

  function drawTable(table) {
    var thead = document.querySelector("#pareto-table thead");
    var tbody = document.querySelector("#pareto-table tbody");
    thead.innerHTML = "";
    var tr = el("tr");
    table.columns.forEach(function (c, i) {
      var th = el("th", { "data-col": i }, c);
      th.addEventListener("click", function () { sortBy(table, i, th); });
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    fillRows(table, tbody);
  }

  function fillRows(table, tbody) {
    tbody.innerHTML = "";
    table.rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v, i) {
        var col = table.columns[i];
        var td = el("td", { "class": typeof v === "number" ? "num" : (col === "fidelity" ? "nowrap" : "") });
        if (col === "export" && String(v).indexOf("autopeft ") === 0) td.appendChild(el("code", {}, v));
        else td.textContent = fmt(v, col);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function sortBy(table, i, th) {
    var asc = !th.classList.contains("sorted-asc");
    document.querySelectorAll("#pareto-table th").forEach(function (h) { h.className = ""; });
    th.className = asc ? "sorted-asc" : "sorted-desc";
    table.rows.sort(function (a, b) {
      var x = a[i], y = b[i];
      if (typeof x === "number" && typeof y === "number") return asc ? x - y : y - x;
      return asc ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
    });
    fillRows(table, document.querySelector("#pareto-table tbody"));
  }

  function writeStatus(extraError) {
    var plots = document.querySelectorAll(".plot");
    var drawn = 0, failed = [];
    plots.forEach(function (div) {
      var gl = (div._fullData || []).some(function (t) { return GL_TYPES[t.type]; });
      var ok = div.classList.contains("js-plotly-plot") && div.querySelector("svg.main-svg") !== null &&
        (!gl || div.querySelector("canvas") !== null) && !div.querySelector(".no-webgl");
      if (ok) drawn += 1; else failed.push(div.getAttribute("data-figure"));
    });
    var errors = window.autopeftErrors.slice();
    if (extraError) errors.push(String(extraError));
    var resources = (performance.getEntriesByType("resource") || []).map(function (r) { return r.name; });
    var status = document.getElementById("autopeft-status");
    status.textContent = JSON.stringify({ plots: plots.length, drawn: drawn, failed: failed, errors: errors,
                                          resources: resources, rows: current ? current.table.rows.length : 0 });
    status.setAttribute("data-done", "1");
  }

  function render(data) {
    current = data;
    drawHeader(data);
    drawTable(data.table);
    return drawFigures(data);
  }

  function poll(live) {
    fetch(live.url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (data) {
      document.getElementById("live-state").textContent = "· live, checked " + new Date().toLocaleTimeString();
      if (!current || data.version !== current.version) return render(data);
    }).catch(function (e) {
      document.getElementById("live-state").textContent = "· live, last check failed: " + e;
    }).then(function () { setTimeout(function () { poll(live); }, live.interval * 1000); });
  }

  var data = JSON.parse(document.getElementById("report-data").textContent);
  render(data).then(function () { writeStatus(); }, function (e) { writeStatus(e); });
  if (window.autopeftLive) setTimeout(function () { poll(window.autopeftLive); }, window.autopeftLive.interval * 1000);
})();
