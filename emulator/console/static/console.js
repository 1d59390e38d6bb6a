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
        if (el.classList.contains("bar")) el.firstElementChild.style.width = `${Math.round(value * 100)}%`;
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
