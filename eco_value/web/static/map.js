/* eco-value console map: result tiles, zone outlines, parcel explain chain, drawn land units. No CDN. */
(function () {
  "use strict";
  var el = document.getElementById("map");
  var run = el.dataset.run;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  // canvas, not one SVG element per parcel: thousands of parcel outlines stay fast to draw and to click
  var map = L.map("map", { zoomSnap: 0.5, preferCanvas: true });
  window.ecoValueMap = map;   // for tests and the browser console
  var tiles = null, townships = null, parcels = null, drawing = null, drawn = null, selected = null;
  var panel = document.getElementById("panel");

  function fmt(v, d) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: d || 0, maximumFractionDigits: d || 0 });
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; });
  }
  function getJSON(url, opts) {
    return fetch(url, opts || { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.statusText); return j; });
    });
  }

  // --- result layers with legends ---------------------------------------------------------------
  var sel = document.getElementById("layer"), legend = document.getElementById("legend"), layerInfo = {};
  function showLayer(key) {
    if (tiles) map.removeLayer(tiles);
    var info = layerInfo[key];
    tiles = L.tileLayer("/tiles/" + run + "/" + key + "/{z}/{x}/{y}.png", { opacity: 0.85, maxNativeZoom: 14, maxZoom: 18 }).addTo(map);
    tiles.bringToBack();
    legend.innerHTML = '<div><b>' + esc(info.title) + '</b> (' + esc(info.unit) + ')</div>' +
      '<div class="bar" style="background:linear-gradient(to right,' + info.colors.join(",") + ')"></div>' +
      '<div class="ends"><span id="legend-min">' + fmt(info.min) + '</span><span>' + esc(info.unit) + '</span><span id="legend-max">' + fmt(info.max) + '</span></div>';
    legend.dataset.layer = key;
  }
  getJSON("/api/runs/" + run + "/layers").then(function (list) {
    list.forEach(function (l) {
      layerInfo[l.key] = l;
      var o = document.createElement("option"); o.value = l.key; o.textContent = l.title + " (" + l.unit + ")"; sel.appendChild(o);
    });
    if (list.length) showLayer(list[0].key);
    else legend.textContent = "this run's rasters are not on disk";
  });
  sel.addEventListener("change", function () { showLayer(sel.value); });

  // --- zones ----------------------------------------------------------------------------------------
  getJSON("/api/runs/" + run + "/zones/townships.geojson").then(function (gj) {
    townships = L.geoJSON(gj, { style: { color: "#222", weight: 2, fill: false }, interactive: false }).addTo(map);
    map.fitBounds(townships.getBounds());
    return getJSON("/api/runs/" + run + "/zones/parcels.geojson");
  }).then(function (gj) {
    parcels = L.geoJSON(gj, {
      style: { color: "#ffffff", weight: 0.6, fillOpacity: 0.01 },
      onEachFeature: function (f, layer) {
        layer.on("click", function () { if (!drawing) explainParcel(f.properties.zone_id, layer, f.properties); });
      }
    }).addTo(map);
    el.dataset.ready = "1";
  }).catch(function (e) { panel.innerHTML = '<p class="bad">' + esc(e.message) + '</p>'; });
  document.getElementById("show-townships").addEventListener("change", function (e) { if (townships) { e.target.checked ? townships.addTo(map) : map.removeLayer(townships); } });
  document.getElementById("show-parcels").addEventListener("change", function (e) { if (parcels) { e.target.checked ? parcels.addTo(map) : map.removeLayer(parcels); } });

  // --- explain chain of a parcel ------------------------------------------------------------------
  function params(ps) {
    return ps.map(function (p) {
      return "<li><code>" + esc(p.name) + "</code> = " + esc(p.value) + " " + esc(p.unit) + " <i>[" + esc(p.source) + "]</i>" + (p.verified ? "" : " (unverified)") + "</li>";
    }).join("");
  }
  function explainParcel(id, layer, props) {
    if (selected) selected.setStyle({ color: "#ffffff", weight: 0.6 });
    selected = layer; layer.setStyle({ color: "#ff3b30", weight: 3 });
    panel.innerHTML = "<p>explaining parcel " + esc(id) + " …</p>";
    getJSON("/api/runs/" + run + "/explain?parcel=" + encodeURIComponent(id)).then(function (d) {
      var c = d.carbon, w = d.water_conservation, h = [];
      h.push('<div class="chain" id="explain"><h3>Parcel <span id="parcel-id">' + esc(id) + "</span></h3>");
      h.push("<p>holder " + esc(d.target.holder_id) + " (" + esc(d.target.holder_type) + "); " + d.pixels + " pixel(s) of " + fmt(d.pixel_area_m2) + " m², exact coverage at the edges; rules " + esc(d.rules.name) + " <code>" + esc(d.rules.hash.slice(0, 12)) + "</code></p>");
      h.push('<div id="parcel-tenure"></div>');
      if (d.inputs_changed_since_run.length) h.push('<p class="bad">inputs changed since the run: ' + esc(d.inputs_changed_since_run.join(", ")) + "</p>");
      h.push("<h4>Carbon sink (stock difference)</h4>");
      c.terms.forEach(function (t) {
        h.push('<div class="term"><b>' + esc(t.what) + "</b>: <code>" + esc(t.equation) + "</code><br>inputs <code>" + esc(JSON.stringify(t.inputs)) + "</code><ul>" + params(t.parameters) + "</ul>→ " + fmt(t.result_tc_per_yr, 4) + " t C/yr</div>");
      });
      h.push('<p>sum ' + fmt(c.sum_tc_per_yr, 4) + " t C/yr × " + esc(c.co2_per_c.value) + " <i>[" + esc(c.co2_per_c.source) + ']</i> = <b id="explain-sink">' + fmt(c.net_sink_tco2e_per_yr, 3) + "</b> t CO₂e/yr; stored: <span id=\"stored-sink\">" + fmt(c.stored_net_sink_tco2e_per_yr, 3) + "</span></p>");
      h.push("<h4>Water conservation</h4>");
      w.terms.forEach(function (t) {
        h.push('<div class="term">' + esc(t.class) + ": <code>" + esc(t.equation) + "</code><ul>" + params(t.parameters) + "</ul>→ " + fmt(t.result_m3, 1) + " m³</div>");
      });
      h.push("<p>" + fmt(w.quantity_m3, 1) + " m³ × " + esc(w.price.value) + " CNY/m³ <i>[" + esc(w.price.source) + "]</i> × CPI " + fmt(w.price_index_factor, 4) + " = <b>" + fmt(w.value_cny, 2) + " CNY</b></p>");
      if (d.services_stored) {
        h.push('<h4>All services stored for this parcel</h4><table id="parcel-services">');
        Object.keys(d.services_stored).forEach(function (k) { var v = d.services_stored[k]; h.push("<tr><td>" + esc(k) + '</td><td class="n">' + fmt(v.quantity, 2) + "</td><td>" + esc(v.unit) + '</td><td class="n">' + fmt(v.value_cny, 0) + " CNY</td></tr>"); });
        h.push("</table>");
      }
      h.push("</div>");
      panel.innerHTML = h.join("");
      showTenure(id);
    }).catch(function (e) { panel.innerHTML = '<p class="bad">' + esc(e.message) + "</p>"; });
  }
  // the parcel's forest tenure (林权) from the store, when it holds a record
  function showTenure(id) {
    getJSON("/api/runs/" + run + "/parcel?parcel=" + encodeURIComponent(id)).then(function (p) {
      var el = document.getElementById("parcel-tenure");
      if (!el || !p.tenure) return;
      var t = p.tenure;
      el.innerHTML = '<h4>Forest tenure 林权</h4><table id="tenure"><tr><td>certificate 不动产权证号</td><td>' + esc(t.tenure_certificate || "–") +
        "</td></tr><tr><td>right holder 林地使用权人</td><td>" + esc(t.tenure_holder || "–") +
        "</td></tr><tr><td>use right 使用期限</td><td>" + esc(t.use_right_start || "–") + " – " + esc(t.use_right_end || "–") +
        '</td></tr><tr><td>certified area (亩)</td><td class="n">' + fmt(t.tenure_area_mu, 2) + "</td></tr></table>";
    }).catch(function () { /* the chain is shown; tenure is optional */ });
  }

  // --- drawing a land unit ------------------------------------------------------------------------
  var hint = document.getElementById("draw-hint"), finishBtn = document.getElementById("draw-finish");
  function startDraw(kind) {
    clearDraw(); drawing = { kind: kind, pts: [], shape: null };
    map.getContainer().style.cursor = "crosshair";
    hint.textContent = kind === "rect" ? "click two opposite corners" : "click the corners, then press finish";
  }
  function clearDraw() {
    if (drawing && drawing.shape) map.removeLayer(drawing.shape);
    if (drawn) map.removeLayer(drawn);
    drawing = null; drawn = null; finishBtn.disabled = true; hint.textContent = ""; map.getContainer().style.cursor = "";
  }
  function ring(d) {
    if (d.kind === "rect") {
      var a = d.pts[0], b = d.pts[1];
      return [[a.lng, a.lat], [b.lng, a.lat], [b.lng, b.lat], [a.lng, b.lat], [a.lng, a.lat]];
    }
    var r = d.pts.map(function (p) { return [p.lng, p.lat]; }); r.push(r[0]); return r;
  }
  map.on("click", function (e) {
    if (!drawing) return;
    drawing.pts.push(e.latlng);
    if (drawing.shape) map.removeLayer(drawing.shape);
    if (drawing.kind === "rect") {
      if (drawing.pts.length === 2) { finish(); return; }
      drawing.shape = L.circleMarker(e.latlng, { radius: 4 }).addTo(map);
    } else {
      drawing.shape = L.polyline(drawing.pts, { color: "#ff9500" }).addTo(map);
      finishBtn.disabled = drawing.pts.length < 3;
    }
  });
  function finish() {
    var d = drawing; if (!d) return;
    if (d.shape) map.removeLayer(d.shape);
    var coords = ring(d);
    drawing = null; finishBtn.disabled = true; map.getContainer().style.cursor = ""; hint.textContent = "";
    drawn = L.polygon(coords.map(function (c) { return [c[1], c[0]]; }), { color: "#ff9500", weight: 2 }).addTo(map);
    valueUnit({ type: "Polygon", coordinates: [coords] });
  }
  function valueUnit(geom) {
    panel.innerHTML = "<p>valuing the drawn unit …</p>";
    getJSON("/api/runs/" + run + "/value-unit", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ geometry: geom })
    }).then(function (d) {
      var h = ['<div id="unit-result"><h3>Land unit of <span id="unit-area">' + fmt(d.area_ha, 1) + "</span> ha</h3>",
        '<p>GEP <b id="unit-gep">' + fmt(d.gep_total_cny / 1e4, 1) + "</b> 万元/yr (market-realisable " + fmt(d.market_realisable_cny / 1e4, 1) + ", public good " + fmt(d.public_good_cny / 1e4, 1) + ")</p>",
        "<p>carbon stock " + fmt(d.carbon.stock_tc) + " t C; net sink " + fmt(d.carbon.net_sink_tco2e_per_yr, 1) + " t CO₂e/yr</p>",
        d.clipped_to_region ? '<p class="note">clipped to the run\'s region: ' + esc(JSON.stringify(d.clipped_to_region)) + "</p>" : "",
        "<table><tr><th>service</th><th class=n>quantity</th><th>unit</th><th class=n>万元/yr</th></tr>"];
      Object.keys(d.by_service).sort(function (a, b) { return d.by_service[b].value_cny - d.by_service[a].value_cny; }).forEach(function (k) {
        var v = d.by_service[k]; h.push("<tr><td>" + esc(k) + '</td><td class="n">' + fmt(v.quantity, 1) + "</td><td>" + esc(v.unit) + '</td><td class="n">' + fmt(v.value_cny / 1e4, 2) + "</td></tr>");
      });
      h.push('</table><p class="note">stored as policy result <code>' + esc(d.policy_result_id) + "</code> (<code>eco-value explain --policy</code>)</p></div>");
      panel.innerHTML = h.join("");
    }).catch(function (e) { panel.innerHTML = '<p class="bad" id="unit-error">' + esc(e.message) + "</p>"; });
  }
  document.getElementById("draw-rect").addEventListener("click", function () { startDraw("rect"); });
  document.getElementById("draw-poly").addEventListener("click", function () { startDraw("poly"); });
  finishBtn.addEventListener("click", finish);
  document.getElementById("draw-clear").addEventListener("click", clearDraw);
})();
