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
    line.setAttribute("x1", 10 + t * 380);
    line.setAttribute("x2", 10 + t * 380);
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
    stage.querySelectorAll("img").forEach((img) => { img.style.width = `${image.naturalWidth}px`; img.style.height = `${image.naturalHeight}px`; });
    const size = document.getElementById("image-size");
    if (size) size.textContent = `${image.naturalWidth} × ${image.naturalHeight} pixels.`;
    fit();
    viewer.dataset.ready = "1";
  };
  if (image.complete && image.naturalWidth) ready(); else image.addEventListener("load", ready);
  viewer.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewer.getBoundingClientRect();
    zoomAt(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  viewer.addEventListener("pointerdown", (event) => {
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
