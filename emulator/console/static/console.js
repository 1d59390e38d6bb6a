// lookout-emulator console: progressive enhancement for server-rendered pages. No framework, no build.
"use strict";

// Forms that destroy something ask first.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Image selection for bulk actions: a bulk form submits the source-refs of the ticked tiles.
function selectedRefs() {
  return [...document.querySelectorAll(".tile .pick:checked")].map((box) => box.value);
}
function refreshSelection() {
  const count = selectedRefs().length;
  document.querySelectorAll(".tile").forEach((tile) => {
    const box = tile.querySelector(".pick");
    if (box) tile.classList.toggle("selected", box.checked);
  });
  document.querySelectorAll("[data-selected-count]").forEach((el) => { el.textContent = count; });
  document.querySelectorAll("form[data-bulk] button").forEach((b) => { b.disabled = count === 0; });
}
document.addEventListener("change", (event) => {
  if (event.target.matches(".pick")) refreshSelection();
  if (event.target.matches("[data-select-all]")) {
    document.querySelectorAll(".tile .pick").forEach((box) => { box.checked = event.target.checked; });
    refreshSelection();
  }
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.bulk || event.defaultPrevented) return;
  form.querySelectorAll("input[name=ref]").forEach((input) => input.remove());
  for (const ref of selectedRefs()) {
    const input = document.createElement("input");
    Object.assign(input, { type: "hidden", name: "ref", value: ref });
    form.appendChild(input);
  }
});

// Upload from the computer: drag and drop or pick many files; sent in small batches with progress.
const BATCH_FILES = 8;
function sendBatch(url, files, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const body = new FormData();
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    files.forEach((file) => body.append("file", file, file.name));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let reply = {};
      try { reply = JSON.parse(xhr.responseText); } catch (_) { reply = { error: xhr.statusText }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(reply); else reject(new Error(reply.error || xhr.statusText));
    };
    xhr.onerror = () => reject(new Error("The upload was interrupted."));
    xhr.send(body);
  });
}
async function uploadAll(zone, files) {
  const bar = zone.querySelector(".progress > div");
  const text = zone.querySelector("[data-upload-status]");
  const fields = {};
  (zone.closest("form") || zone).querySelectorAll("input[name], select[name], textarea[name]").forEach((el) => {
    if (el.type !== "file" && !(el.type === "radio" && !el.checked) && el.value) fields[el.name] = el.value;
  });
  const perRequest = Number(zone.dataset.batch || BATCH_FILES) || files.length;
  const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
  let done = 0, added = 0, last = {};
  const controls = [...(zone.closest("form") || zone).querySelectorAll("button, input, select")];
  controls.forEach((el) => { el.disabled = true; });
  text.textContent = `Uploading ${files.length} images…`;
  try {
    for (let i = 0; i < files.length; i += perRequest) {
      const batch = files.slice(i, i + perRequest);
      const size = batch.reduce((sum, f) => sum + f.size, 0);
      last = await sendBatch(zone.dataset.upload, batch, fields, (share) => {
        bar.style.width = `${Math.round(((done + share * size) / total) * 100)}%`;
      });
      done += size;
      added += last.added || 0;
      text.textContent = `Uploaded ${Math.min(i + perRequest, files.length)} of ${files.length} images`;
    }
    bar.style.width = "100%";
    const next = new URL(last.redirect || window.location.href, window.location.href);
    if (!next.searchParams.has("notice")) {
      next.searchParams.set("notice", `Uploaded ${added} image${added === 1 ? "" : "s"}.`);
    }
    window.location.assign(next.href);
  } catch (error) {
    text.textContent = `Upload failed: ${error.message}`;
    text.classList.add("error-text");
    controls.forEach((el) => { el.disabled = false; });
  }
}
document.querySelectorAll("[data-upload]").forEach((zone) => {
  const input = zone.querySelector("input[type=file]");
  const start = (files) => { if (files.length) uploadAll(zone, [...files]); };
  input.addEventListener("change", () => { if (!zone.dataset.uploadOnSubmit) start(input.files); });
  const form = zone.closest("form");
  if (form && zone.dataset.uploadOnSubmit) {
    form.addEventListener("submit", (event) => {  // without files the form posts as usual
      if (input.files.length) { event.preventDefault(); start(input.files); }
    });
  }
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (zone.dataset.uploadOnSubmit) { input.files = e.dataTransfer.files; } else { start(e.dataTransfer.files); }
  });
});

// Live status: poll a small JSON endpoint, fill in [data-field] elements, reload once it settles.
document.querySelectorAll("[data-poll]").forEach((panel) => {
  const tick = async () => {
    let state;
    try {
      state = await (await fetch(panel.dataset.poll, { headers: { Accept: "application/json" } })).json();
    } catch (_) { return setTimeout(tick, 3000); }
    for (const [name, value] of Object.entries(state)) {
      panel.querySelectorAll(`[data-field="${name}"]`).forEach((el) => {
        if (el.classList.contains("bar")) el.firstElementChild.style.width = `${Math.round((value || 0) * 100)}%`;
        else if (el.hasAttribute("data-elapsed-since")) { el.dataset.elapsedSince = value ?? ""; showElapsed(el); }
        else el.textContent = value ?? "";
      });
    }
    if (!state.settled) return setTimeout(tick, 1000);
    const page = new URL(window.location.href);  // show the settled page, without the old message
    page.searchParams.delete("notice");
    window.location.replace(page.href);
  };
  setTimeout(tick, 1000);
});

refreshSelection();

// Elapsed time of a running job, counted in the page between status polls.
function showElapsed(el) {
  const since = Number(el.dataset.elapsedSince);
  if (!since) return;
  const seconds = Math.max(0, Math.floor(Date.now() / 1000 - since));
  const minutes = Math.floor(seconds / 60);
  el.textContent = `${minutes}:${String(seconds % 60).padStart(2, "0")} elapsed`;
}
document.querySelectorAll("[data-elapsed-since]").forEach((el) => {
  showElapsed(el);
  setInterval(() => showElapsed(el), 1000);
});

// Image grids: which overlay the thumbnails show and how strongly; "incorrect only".
document.querySelectorAll("[data-layer-controls]").forEach((controls) => {
  const grid = controls.closest(".panel").querySelector(".grid");
  if (!grid) return;
  const checked = controls.querySelector("input[name=grid-layer]:checked");
  if (checked) grid.dataset.layer = checked.value;
  controls.addEventListener("change", (event) => {
    if (event.target.name === "grid-layer") grid.dataset.layer = event.target.value;
  });
  const opacity = controls.querySelector("[data-layer-opacity]");
  const apply = () => grid.style.setProperty("--layer-opacity", opacity.value / 100);
  opacity.addEventListener("input", apply);
  apply();
});
function refreshIncorrectOnly(box) {
  const grid = document.querySelector(box.dataset.incorrectOnly);
  grid.classList.toggle("incorrect-only", box.checked);
  const empty = document.getElementById("no-incorrect");
  if (empty) empty.hidden = !(box.checked && !grid.querySelector(".tile[data-correct=false]"));
}
document.querySelectorAll("[data-incorrect-only]").forEach((box) => {
  box.addEventListener("change", () => refreshIncorrectOnly(box));
  refreshIncorrectOnly(box);
});

// Threshold what-if: recompute the test results at another threshold, in the page only.
function ratios(tp, fp, fn) {  // engine/metrics.py's conventions: nothing to find and nothing flagged is perfect
  if (tp + fp + fn === 0) return [1, 1, 1];
  const p = tp + fp ? tp / (tp + fp) : 0, r = tp + fn ? tp / (tp + fn) : 0;
  return [p, r, p + r ? (2 * p * r) / (p + r) : 0];
}
const percent = (value) => `${(value * 100).toFixed(1)}%`;
document.querySelectorAll("#threshold-view").forEach((view) => {
  const slider = view.querySelector("#threshold-slider");
  const tiles = [...document.querySelectorAll("#result-grid .tile[data-score]")];
  const modelThreshold = Number(view.dataset.threshold);
  const line = view.querySelector("#whatif-line");
  const badge = (label) => `<span class="badge ${label}">${label}</span>`;
  const update = () => {
    const t = Number(slider.value);
    let tp = 0, fp = 0, fn = 0, correct = 0;
    for (const tile of tiles) {
      const predicted = Number(tile.dataset.score) >= t ? "anomaly" : "normal";
      const actual = tile.dataset.actual;
      const right = predicted === actual;
      correct += right;
      if (predicted === "anomaly" && actual === "anomaly") tp += 1;
      else if (predicted === "anomaly") fp += 1;
      else if (actual === "anomaly") fn += 1;
      tile.dataset.correct = String(right);
      const verdict = tile.querySelector("[data-verdict]");
      verdict.className = `badge ${right ? "correct" : "incorrect"}`;
      verdict.textContent = right ? "Correct" : "Incorrect";
      tile.querySelector("[data-predicted]").innerHTML = badge(predicted);
    }
    const [p, r, f] = ratios(tp, fp, fn);
    view.querySelector("#whatif-precision").textContent = percent(p);
    view.querySelector("#whatif-recall").textContent = percent(r);
    view.querySelector("#whatif-f1").textContent = percent(f);
    view.querySelector("#whatif-correct").textContent = correct;
    view.querySelector("#whatif-incorrect").textContent = tiles.length - correct;
    view.querySelector("#threshold-value").textContent = t.toFixed(2);
    const moved = Math.abs(t - modelThreshold) > 1e-9;
    view.querySelectorAll("#whatif-metrics .metric").forEach((m) => m.classList.toggle("changed", moved));
    for (const [id, value] of [["correct-count", correct], ["incorrect-count", tiles.length - correct]]) {
      const el = document.getElementById(id);
      if (el) el.textContent = value;
    }
    const chart = line.ownerSVGElement.dataset;
    line.setAttribute("x1", Number(chart.x0) + t * Number(chart.width));
    line.setAttribute("x2", Number(chart.x0) + t * Number(chart.width));
    const box = document.querySelector("[data-incorrect-only]");
    if (box) refreshIncorrectOnly(box);
  };
  slider.addEventListener("input", update);
  view.querySelector("#threshold-reset").addEventListener("click", () => { slider.value = modelThreshold; update(); });
  update();
});

// Image detail view: zoom (wheel, buttons, keys) around a point, pan by dragging, overlay and opacity.
document.querySelectorAll("#viewer").forEach((viewer) => {
  const stage = viewer.querySelector("#stage");
  const image = viewer.querySelector("#detail-image");
  const level = document.getElementById("zoom-level");
  const view = { scale: 1, x: 0, y: 0 };
  const MIN = 0.05, MAX = 32;
  const apply = () => {
    stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    viewer.dataset.zoom = view.scale.toFixed(4);
    viewer.classList.toggle("pixelated", view.scale >= 2);
    if (level) level.textContent = `${Math.round(view.scale * 100)}%`;
  };
  const zoomAt = (factor, cx, cy) => {
    const scale = Math.min(MAX, Math.max(MIN, view.scale * factor));
    view.x = cx - ((cx - view.x) * scale) / view.scale;
    view.y = cy - ((cy - view.y) * scale) / view.scale;
    view.scale = scale;
    apply();
  };
  const centre = () => [viewer.clientWidth / 2, viewer.clientHeight / 2];
  const fit = () => {
    const w = image.naturalWidth || 1, h = image.naturalHeight || 1;
    view.scale = Math.min(viewer.clientWidth / w, viewer.clientHeight / h);
    view.x = (viewer.clientWidth - w * view.scale) / 2;
    view.y = (viewer.clientHeight - h * view.scale) / 2;
    apply();
  };
  const actual = () => { const [cx, cy] = centre(); zoomAt(1 / view.scale, cx, cy); };
  const ready = () => {
    stage.style.width = `${image.naturalWidth}px`;
    stage.style.height = `${image.naturalHeight}px`;
    stage.querySelectorAll("img, canvas, svg").forEach((layer) => {
      layer.style.width = `${image.naturalWidth}px`;
      layer.style.height = `${image.naturalHeight}px`;
    });
    const size = document.getElementById("image-size");
    if (size) size.textContent = `${image.naturalWidth} × ${image.naturalHeight} pixels.`;
    fit();
    viewer.dataset.ready = "1";
    viewer.dispatchEvent(new Event("viewer-ready"));
  };
  if (image.complete && image.naturalWidth) ready(); else image.addEventListener("load", ready);
  viewer.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewer.getBoundingClientRect();
    zoomAt(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  viewer.addEventListener("pointerdown", (event) => {
    if (viewer.dataset.drawing === "1") return;  // the mask editor's tool has the pointer
    drag = { x: event.clientX - view.x, y: event.clientY - view.y };
    viewer.setPointerCapture(event.pointerId);
    viewer.classList.add("dragging");
  });
  viewer.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view.x = event.clientX - drag.x;
    view.y = event.clientY - drag.y;
    apply();
  });
  const stop = () => { drag = null; viewer.classList.remove("dragging"); };
  viewer.addEventListener("pointerup", stop);
  viewer.addEventListener("pointercancel", stop);
  const actions = { in: () => zoomAt(1.5, ...centre()), out: () => zoomAt(1 / 1.5, ...centre()), fit, actual };
  document.querySelectorAll("[data-zoom]").forEach((button) => {
    button.addEventListener("click", () => actions[button.dataset.zoom]());
  });
  viewer.addEventListener("keydown", (event) => {
    const key = { "+": "in", "=": "in", "-": "out", 0: "fit", 1: "actual" }[event.key];
    if (key) { event.preventDefault(); actions[key](); }
  });
  const layers = [...stage.querySelectorAll("img.layer")];
  const showLayer = (kind) => layers.forEach((layer) => { layer.hidden = layer.dataset.layer !== kind; });
  const chosen = document.querySelector("input[name=layer]:checked");
  showLayer(chosen ? chosen.value : "none");
  document.querySelectorAll("input[name=layer]").forEach((radio) => {
    radio.addEventListener("change", () => showLayer(radio.value));
  });
  const opacity = document.getElementById("overlay-opacity");
  if (opacity) {
    const setOpacity = () => stage.style.setProperty("--layer-opacity", opacity.value / 100);
    opacity.addEventListener("input", setOpacity);
    setOpacity();
  }
});

// Image detail view: the arrow keys go to the previous and next image (unless typing in a field).
document.addEventListener("keydown", (event) => {
  if (event.target.matches("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
  const link = document.getElementById({ ArrowLeft: "previous-image", ArrowRight: "next-image" }[event.key]);
  if (link) window.location.assign(link.href);
});

// Mask editor: a label map (one byte per image pixel: 0 = no anomaly, k = the k-th label) painted with
// brush, eraser, polygon and fill, shown as a canvas over the image in the detail view's zoom and pan.
// Saving sends it as an RGB PNG in the labels' own colours on white, the form Ground Truth masks have.
function hexToRgb(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }
function labelColour(index) {  // well-separated hues (golden angle), mid lightness: visible on dark and light parts
  const hue = (index * 137.508 + 10) % 360, s = 0.8, l = 0.45;
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return `#${[0, 8, 4].map((n) => f(n).toString(16).padStart(2, "0")).join("")}`.toUpperCase();
}
document.querySelectorAll("#mask-editor").forEach((editor) => {
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("detail-image");
  const canvas = document.getElementById("mask-canvas");
  const svg = document.getElementById("polygon-preview");
  const outline = svg.querySelector("polyline");
  const message = document.getElementById("editor-message");
  const sizeInput = document.getElementById("brush-size");
  const list = document.getElementById("label-list");
  const maxLabels = Number(editor.dataset.maxLabels);
  const reserved = editor.dataset.reserved.split(",");
  const labels = JSON.parse(document.getElementById("mask-labels").textContent);
  const MAX_UNDO = 100;
  let w = 0, h = 0, map = new Uint8Array(0), active = 0, tool = "brush", spaceHeld = false, dirty = false;
  let undo = [], redo = [], polygon = [], last = null;

  const say = (text, error = false) => {
    message.hidden = !text;
    message.textContent = text;
    message.className = `flash ${error ? "error" : "notice"}`;
  };
  const setDrawing = () => {
    viewer.dataset.drawing = tool !== "pan" && !spaceHeld ? "1" : "";
  };
  const chooseTool = (name) => {
    tool = name;
    document.querySelectorAll("input[name=tool]").forEach((radio) => { radio.checked = radio.value === name; });
    if (name !== "polygon") cancelPolygon();
    setDrawing();
  };
  const showSize = () => { document.getElementById("brush-size-value").textContent = `${sizeInput.value} px`; };

  // ---- the label map and its picture
  let frame = 0;
  const render = () => {
    frame = 0;
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(w, h);
    const colours = labels.map((label) => hexToRgb(label.colour));
    const counts = new Array(labels.length).fill(0);
    for (let i = 0; i < map.length; i += 1) {
      const k = map[i];
      if (!k) continue;
      const [r, g, b] = colours[k - 1];
      pixels.data.set([r, g, b, 255], i * 4);
      counts[k - 1] += 1;
    }
    ctx.putImageData(pixels, 0, 0);
    editor.dataset.painted = counts.reduce((a, b) => a + b, 0);
    list.querySelectorAll("[data-pixels]").forEach((el, i) => { el.textContent = `${counts[i] || 0} px`; });
  };
  const scheduleRender = () => { if (!frame) frame = requestAnimationFrame(render); };
  const remember = () => {
    undo.push(map.slice());
    if (undo.length > MAX_UNDO) undo.shift();
    redo = [];
    dirty = true;
    refreshHistory();
  };
  const refreshHistory = () => {
    document.getElementById("undo").disabled = !undo.length;
    document.getElementById("redo").disabled = !redo.length;
  };
  const step = (from, to) => {
    if (!from.length) return;
    to.push(map);
    map = from.pop();
    dirty = true;
    refreshHistory();
    render();
  };

  // ---- tools, in image pixels
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (w / box.width), (event.clientY - box.top) * (h / box.height)];
  };
  const dab = (cx, cy, value) => {
    const r = Number(sizeInput.value) / 2;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(w - 1, Math.floor(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(h - 1, Math.floor(cy + r));
    const r2 = Math.max(r * r, 0.25);
    for (let y = y0; y <= y1; y += 1) {
      for (let x = x0; x <= x1; x += 1) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r2) map[y * w + x] = value;
      }
    }
  };
  const stroke = (from, to, value) => {
    const steps = Math.max(1, Math.ceil(Math.hypot(to[0] - from[0], to[1] - from[1])));
    for (let s = 0; s <= steps; s += 1) dab(from[0] + ((to[0] - from[0]) * s) / steps, from[1] + ((to[1] - from[1]) * s) / steps, value);
  };
  const flood = ([fx, fy], value) => {
    const x = Math.floor(fx), y = Math.floor(fy);
    if (x < 0 || y < 0 || x >= w || y >= h) return false;
    const target = map[y * w + x];
    if (target === value) return false;
    const todo = [y * w + x];
    while (todo.length) {
      const i = todo.pop();
      if (map[i] !== target) continue;
      map[i] = value;
      const px = i % w;
      if (px > 0) todo.push(i - 1);
      if (px < w - 1) todo.push(i + 1);
      if (i >= w) todo.push(i - w);
      if (i < w * (h - 1)) todo.push(i + w);
    }
    return true;
  };
  const fillPolygon = (points, value) => {  // even-odd rule, sampled at pixel centres
    for (let y = 0; y < h; y += 1) {
      const cy = y + 0.5, crossings = [];
      points.forEach(([ax, ay], i) => {
        const [bx, by] = points[(i + 1) % points.length];
        if ((ay <= cy) !== (by <= cy)) crossings.push(ax + ((cy - ay) * (bx - ax)) / (by - ay));
      });
      crossings.sort((a, b) => a - b);
      for (let c = 0; c + 1 < crossings.length; c += 2) {
        const from = Math.max(0, Math.ceil(crossings[c] - 0.5)), to = Math.min(w - 1, Math.floor(crossings[c + 1] - 0.5));
        for (let x = from; x <= to; x += 1) map[y * w + x] = value;
      }
    }
  };
  const showPolygon = (cursor) => {
    const points = cursor ? [...polygon, cursor] : polygon;
    outline.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
    outline.setAttribute("stroke", labels[active] ? labels[active].colour : "#fff");
  };
  const closePolygon = () => {
    if (polygon.length >= 3 && labels[active]) {
      remember();
      fillPolygon(polygon, active + 1);
      render();
    }
    cancelPolygon();
  };
  function cancelPolygon() { polygon = []; showPolygon(null); }

  viewer.addEventListener("pointerdown", (event) => {
    if (viewer.dataset.drawing !== "1" || event.button !== 0 || !w) return;
    const point = at(event);
    if (tool === "polygon") {
      const near = polygon.length >= 3 && Math.hypot(point[0] - polygon[0][0], point[1] - polygon[0][1]) * (canvas.getBoundingClientRect().width / w) < 8;
      if (near) closePolygon(); else { polygon.push(point); showPolygon(null); }
      return;
    }
    if (!labels[active] && tool !== "eraser") return say("Add an anomaly label first.", true);
    if (tool === "fill") {
      const before = map.slice();
      if (flood(point, active + 1)) { undo.push(before); redo = []; dirty = true; refreshHistory(); render(); }
      return;
    }
    remember();
    last = point;
    stroke(point, point, tool === "eraser" ? 0 : active + 1);
    viewer.setPointerCapture(event.pointerId);
    scheduleRender();
  });
  viewer.addEventListener("pointermove", (event) => {
    if (tool === "polygon" && polygon.length) { showPolygon(at(event)); return; }
    if (!last) return;
    const point = at(event);
    stroke(last, point, tool === "eraser" ? 0 : active + 1);
    last = point;
    scheduleRender();
  });
  const endStroke = () => { if (last) { last = null; render(); } };
  viewer.addEventListener("pointerup", endStroke);
  viewer.addEventListener("pointercancel", endStroke);
  viewer.addEventListener("dblclick", () => { if (tool === "polygon") closePolygon(); });

  // ---- labels: choose, rename, recolour, add
  const problem = (name, colour, except) => {
    if (!name.trim() || name.trim().toUpperCase() === "BACKGROUND") return "A label needs a name other than BACKGROUND.";
    if (labels.some((l, i) => i !== except && l.name === name.trim())) return `There is already a label named ${name.trim()}.`;
    if (reserved.includes(colour.toUpperCase())) return "White and black mean no anomaly; choose another colour.";
    if (labels.some((l, i) => i !== except && l.colour === colour.toUpperCase())) return "Each label needs its own colour.";
    return "";
  };
  const showLabels = () => {
    list.replaceChildren(...labels.map((label, i) => {
      const item = document.createElement("li");
      item.className = i === active ? "active" : "";
      item.innerHTML = `<input type="radio" name="active-label" aria-label="draw with label ${i + 1}">
        <input type="text" aria-label="name of label ${i + 1}"><input type="color" aria-label="colour of label ${i + 1}">
        ${i < 9 ? `<kbd>${i + 1}</kbd>` : ""}<span class="pixels" data-pixels></span>`;
      const [radio, name, colour] = item.querySelectorAll("input");
      radio.checked = i === active;
      name.value = label.name;
      colour.value = label.colour.toLowerCase();
      radio.addEventListener("change", () => { active = i; showLabels(); });
      name.addEventListener("change", () => {
        const why = problem(name.value, label.colour, i);
        if (why) { say(why, true); name.value = label.name; return; }
        label.name = name.value.trim();
        dirty = true;
        say("");
      });
      colour.addEventListener("change", () => {
        const why = problem(label.name, colour.value, i);
        if (why) { say(why, true); colour.value = label.colour.toLowerCase(); return; }
        label.colour = colour.value.toUpperCase();
        dirty = true;
        say("");
        render();
      });
      return item;
    }));
    document.getElementById("add-label-button").disabled = labels.length >= maxLabels;
    if (w) render();
  };
  const addLabel = (name) => {
    if (labels.length >= maxLabels) return say(`An image may have at most ${maxLabels} anomaly labels.`, true);
    let index = labels.length, colour = labelColour(index);
    while (problem("x", colour, -1)) colour = labelColour((index += 1));
    const why = problem(name, colour, -1);
    if (why) return say(why, true);
    labels.push({ name: name.trim(), colour });
    active = labels.length - 1;
    say("");
    showLabels();
  };
  document.getElementById("add-label").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = document.getElementById("new-label-name");
    addLabel(field.value);
    if (labels[active] && labels[active].name === field.value.trim()) field.value = "";
  });

  // ---- save
  const save = async (next) => {
    const out = document.createElement("canvas");
    Object.assign(out, { width: w, height: h });
    const ctx = out.getContext("2d");
    const pixels = ctx.createImageData(w, h);
    const colours = labels.map((label) => hexToRgb(label.colour));
    for (let i = 0; i < map.length; i += 1) pixels.data.set([...(map[i] ? colours[map[i] - 1] : [255, 255, 255]), 255], i * 4);
    ctx.putImageData(pixels, 0, 0);
    const png = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
    const body = new FormData();
    body.append("ref", editor.dataset.ref);
    body.append("labels", JSON.stringify(labels));
    body.append("mask", png, "mask.png");
    say("Saving…");
    try {
      const reply = await fetch(editor.dataset.save, { method: "POST", body, headers: { Accept: "application/json" } });
      const answer = await reply.json();
      if (!reply.ok) return say(`Not saved: ${answer.error}`, true);
      dirty = false;
      const names = Object.keys(answer.labels);
      say(names.length ? `Saved the mask (${names.join(", ")}).` : "Saved: the image has no mask now.");
      editor.dataset.saved = String(Number(editor.dataset.saved || 0) + 1);
      if (next) window.location.assign(next);
    } catch (error) {
      say(`Not saved: ${error.message}`, true);
    }
  };
  document.getElementById("save-mask").addEventListener("click", () => save(null));
  const saveNext = document.getElementById("save-next");
  if (saveNext) saveNext.addEventListener("click", () => save(saveNext.dataset.next));
  window.addEventListener("beforeunload", (event) => { if (dirty) event.preventDefault(); });

  // ---- tools and keys
  document.querySelectorAll("input[name=tool]").forEach((radio) => radio.addEventListener("change", () => chooseTool(radio.value)));
  sizeInput.addEventListener("input", showSize);
  document.getElementById("undo").addEventListener("click", () => step(undo, redo));
  document.getElementById("redo").addEventListener("click", () => step(redo, undo));
  const TOOL_KEYS = { b: "brush", e: "eraser", p: "polygon", f: "fill", h: "pan" };
  document.addEventListener("keydown", (event) => {
    const typing = event.target.matches("input[type=text], input:not([type]), textarea");
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "s") { event.preventDefault(); save(null); return; }
    if (typing) return;
    if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); step(...(event.shiftKey ? [redo, undo] : [undo, redo])); return; }
    if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); step(redo, undo); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (key === " ") { event.preventDefault(); spaceHeld = true; setDrawing(); return; }
    if (TOOL_KEYS[key]) { chooseTool(TOOL_KEYS[key]); return; }
    if (/^[1-9]$/.test(key) && labels[Number(key) - 1]) {
      event.stopPropagation();  // not the viewer's "1 = actual pixels"
      active = Number(key) - 1;
      showLabels();
      return;
    }
    if (key === "[" || key === "]") { sizeInput.value = Number(sizeInput.value) + (key === "]" ? 1 : -1); showSize(); return; }
    if (key === "enter" && tool === "polygon") { event.preventDefault(); closePolygon(); return; }
    if (key === "escape") { cancelPolygon(); return; }
    if (key === "n" && saveNext) save(saveNext.dataset.next);
  }, true);
  document.addEventListener("keyup", (event) => { if (event.key === " ") { spaceHeld = false; setDrawing(); } });

  // ---- start: size the map to the image and load the saved mask, its colours mapped to the labels
  const start = () => {
    w = image.naturalWidth;
    h = image.naturalHeight;
    Object.assign(canvas, { width: w, height: h });
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    map = new Uint8Array(w * h);
    if (!labels.length) labels.push({ name: "defect", colour: labelColour(0) });
    showLabels();
    if (!editor.dataset.mask) { editor.dataset.ready = "1"; return; }
    const saved = new Image();
    saved.onload = () => {
      const reader = document.createElement("canvas");
      Object.assign(reader, { width: w, height: h });
      const ctx = reader.getContext("2d");
      ctx.drawImage(saved, 0, 0, w, h);
      const data = ctx.getImageData(0, 0, w, h).data;
      const index = new Map(labels.map((label, i) => [parseInt(label.colour.slice(1), 16), i + 1]));
      let stray = 0;
      for (let i = 0; i < map.length; i += 1) {
        const colour = (data[i * 4] << 16) | (data[i * 4 + 1] << 8) | data[i * 4 + 2];
        map[i] = index.get(colour) || 0;
        if (!map[i] && colour !== 0xffffff && colour !== 0) stray += 1;
      }
      // A mask made elsewhere may have pixels in no label's colour (smoothed edges): say so, as saving drops them.
      if (stray) say(`${stray} pixels of the saved mask are in no label's colour; saving will leave them out.`, true);
      render();
      editor.dataset.ready = "1";
    };
    saved.onerror = () => { say("The saved mask could not be loaded; drawing starts empty.", true); editor.dataset.ready = "1"; };
    saved.src = editor.dataset.mask;
  };
  if (viewer.dataset.ready) start(); else viewer.addEventListener("viewer-ready", start, { once: true });
  image.addEventListener("error", () => say("The image could not be loaded from S3, so there is nothing to draw on.", true));
  chooseTool("brush");
  showSize();
  refreshHistory();
});
