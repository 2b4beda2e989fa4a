// LDH Assist upload + review page. No framework, no CDN: one small SVG box editor over the slice image.
// Box coordinates are kept in source pixels (pixel edges [x0, y0, x1, y1]); the SVG's viewBox is the image grid,
// so what is drawn is what is saved.
"use strict";

const LEVELS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"];
const COLOURS = { "L1-L2": "#0072b2", "L2-L3": "#56b4e9", "L3-L4": "#009e73", "L4-L5": "#e69f00", "L5-S1": "#cc79a7" };
const HERNIATION = "#d55e00";
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const app = {
  config: null, study: null, findings: null, boxes: [], selected: null, slice: 0, slices: 1,
  rows: 0, cols: 0, dirty: false, adding: false, drag: null, nextId: 1, imageCache: new Map(), lastRecord: null,
};
window.ldh = app; // for the browser tests and the curious

// ----------------------------------------------------------------------------------------------- HTTP
function authHeaders() {
  const key = sessionStorage.getItem("ldh-api-key");
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!res.ok) {
    let detail = res.status + " " + res.statusText;
    try { const body = await res.json(); if (body.detail) detail = body.detail; } catch (_) { /* not JSON */ }
    const err = new Error(detail); err.status = res.status; throw err;
  }
  return res;
}

async function blobUrl(path) {
  if (app.imageCache.has(path)) return app.imageCache.get(path);
  const url = URL.createObjectURL(await (await api(path)).blob());
  app.imageCache.set(path, url);
  return url;
}

function showError(el, message) { el.textContent = message; el.hidden = !message; }
function announce(text) { $("announce").textContent = text; }

// ---------------------------------------------------------------------------------------------- upload
function uploadFiles(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const px = $("pixel-spacing").value, sl = $("slice-spacing").value;
  if (px) form.append("pixel_spacing_mm", px);
  if (sl) form.append("slice_spacing_mm", sl);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/studies");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress(50 * e.loaded / e.total, `Uploading… ${Math.round(100 * e.loaded / e.total)} %`);
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* keep null */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error((body && body.detail) || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("the connection to the server failed"));
    xhr.send(form);
  });
}

function setProgress(value, text) { $("upload-progress").value = value; $("upload-status").textContent = text; }

async function waitForJob(jobId) {
  for (;;) {
    const job = await (await api(`/api/jobs/${jobId}`)).json();
    setProgress(50 + 50 * job.progress, `Analysing… ${job.stage}`);
    if (job.state === "done") return job;
    if (job.state === "failed") throw new Error(job.error || "the analysis failed");
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function onUpload(event) {
  event.preventDefault();
  const files = $("file-input").files;
  showError($("upload-error"), "");
  if (!files.length) { showError($("upload-error"), "Choose the files of one series first."); return; }
  $("upload-button").disabled = true;
  try {
    setProgress(0, "Uploading…");
    const body = await uploadFiles(files);
    const job = await waitForJob(body.job.id);
    setProgress(100, "Done.");
    location.hash = "#study=" + encodeURIComponent(job.study_instance_uid);
  } catch (err) {
    setProgress(0, "");
    showError($("upload-error"), err.message);
  } finally {
    $("upload-button").disabled = false;
    loadRecent();
  }
}

async function loadRecent() {
  const list = $("recent");
  try {
    const { studies } = await (await api("/api/studies?limit=20")).json();
    list.replaceChildren(...studies.map((s) => {
      const li = document.createElement("li");
      const state = document.createElement("span");
      state.className = "state-" + s.state; state.textContent = s.state;
      const uid = document.createElement("span");
      uid.className = "uid"; uid.textContent = s.study_instance_uid; uid.title = s.error || s.study_instance_uid;
      const info = document.createElement("span");
      info.textContent = `${s.source} · ${s.created.slice(0, 16).replace("T", " ")}` + (s.review ? ` · ${s.review.kind}` : "");
      li.append(state, info, uid);
      if (s.state === "done") {
        const open = document.createElement("button");
        open.type = "button"; open.textContent = "Open";
        open.addEventListener("click", () => { location.hash = "#study=" + encodeURIComponent(s.study_instance_uid); });
        li.append(open);
      }
      return li;
    }));
    if (!studies.length) list.innerHTML = '<li class="muted">None yet.</li>';
  } catch (err) {
    list.innerHTML = "";
    const li = document.createElement("li"); li.className = "muted";
    li.textContent = err.status === 401 ? "Enter your API key to see studies." : err.message;
    list.append(li);
  }
}

// ---------------------------------------------------------------------------------------------- review
async function openStudy(uid) {
  showError($("save-error"), ""); $("save-status").textContent = "";
  const study = await (await api(`/api/studies/${encodeURIComponent(uid)}`)).json();
  if (!study.findings) throw new Error(`study ${uid} is not analysed yet (${study.job.state})`);
  app.study = study; app.findings = study.findings;
  [app.slices, app.rows, app.cols] = study.findings.shape;
  app.boxes = study.findings.discs.map((d) => ({
    id: app.nextId++, level: d.level, slice: d.slice_index, x0: d.box[0], y0: d.box[1], x1: d.box[2], y1: d.box[3],
    herniation: d.herniation, ai_level: d.level, probability: d.probability,
  }));
  const current = study.review && study.review.current;
  if (current && current.kind === "correction") { // show the review in force, not the AI answer
    app.boxes = current.discs.map((d) => ({
      id: app.nextId++, level: d.level, slice: d.slice_index, x0: d.box[0], y0: d.box[1], x1: d.box[2], y1: d.box[3],
      herniation: d.herniation, ai_level: d.ai ? d.ai.level : null, probability: d.ai ? d.ai.probability : null,
    }));
    $("save-status").textContent = `Showing the saved correction by ${current.reviewer.login} (${current.created_at}).`;
  }
  app.selected = null; app.dirty = false; app.adding = false;
  const keys = app.boxes.map((b) => b.slice).sort((a, b) => a - b);
  app.slice = keys.length ? keys[Math.floor(keys.length / 2)] : Math.floor(app.slices / 2);
  $("slice-range").max = String(app.slices - 1);
  $("study-title").textContent = "Study " + uid.slice(-12);
  $("study-meta").textContent = `${study.findings.source} · ${app.cols}×${app.rows} px · ${app.slices} slices · ` +
    `models ${study.findings.models.version} · threshold ${study.findings.operating_threshold.toFixed(2)} · ${uid}`;
  $("upload-view").hidden = true; $("review-view").hidden = false;
  $("boxes").setAttribute("viewBox", `0 0 ${app.cols} ${app.rows}`);
  fitImage();
  await showSlice(app.slice);
  renderAll();
  $("stage").focus();
}

async function showSlice(index) {
  app.slice = Math.max(0, Math.min(app.slices - 1, index));
  $("slice-range").value = String(app.slice);
  $("slice-label").textContent = `Slice ${app.slice + 1} / ${app.slices}`;
  const base = `/api/studies/${encodeURIComponent(app.study.study_instance_uid)}`;
  const [img, mask] = await Promise.all([blobUrl(`${base}/slices/${app.slice}.png`), blobUrl(`${base}/masks/${app.slice}.png`)]);
  $("slice-img").src = img; $("mask-img").src = mask;
  renderBoxes();
}

function fitImage() { // largest size that fits the stage, aspect kept (small images are scaled up)
  if (!app.cols) return;
  const stage = $("stage").getBoundingClientRect();
  const s = Math.min((stage.width - 4) / app.cols, (stage.height - 4) / app.rows);
  if (!(s > 0)) return;
  $("slice-img").style.width = `${Math.floor(app.cols * s)}px`;
  $("slice-img").style.height = `${Math.floor(app.rows * s)}px`;
}

function colour(b) { return b.herniation ? HERNIATION : COLOURS[b.level]; }
function scale() { // source pixels per screen pixel
  const w = $("slice-img").getBoundingClientRect().width;
  return w > 0 ? app.cols / w : 1;
}

function renderBoxes() {
  const svg = $("boxes");
  svg.classList.toggle("adding", app.adding);
  const s = scale();
  const nodes = [];
  for (const b of app.boxes) {
    if (b.slice !== app.slice) {
      const ghost = document.createElementNS(SVGNS, "rect");
      ghost.setAttribute("class", "ghost");
      setRect(ghost, b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
      ghost.setAttribute("stroke", colour(b));
      const t = document.createElementNS(SVGNS, "text");
      t.setAttribute("class", "ghost-label"); t.setAttribute("x", b.x1 + 3 * s); t.setAttribute("y", b.y1);
      t.setAttribute("font-size", 11 * s); t.textContent = `${b.level} (slice ${b.slice + 1})`;
      nodes.push(ghost, t);
      continue;
    }
    const g = document.createElementNS(SVGNS, "g");
    g.setAttribute("class", "box" + (b.id === app.selected ? " selected" : ""));
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-label", `${b.level} box${b.herniation ? ", herniation" : ""}, x ${b.x0} to ${b.x1}, y ${b.y0} to ${b.y1}`);
    for (const [k, v] of Object.entries({ id: b.id, level: b.level, x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1, slice: b.slice, herniation: b.herniation })) {
      g.dataset[k] = String(v);
    }
    const r = document.createElementNS(SVGNS, "rect");
    r.setAttribute("class", "body"); r.setAttribute("stroke", colour(b));
    setRect(r, b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    r.dataset.part = "body";
    const t = document.createElementNS(SVGNS, "text");
    t.setAttribute("x", b.x1 + 4 * s); t.setAttribute("y", (b.y0 + b.y1) / 2 + 4 * s); t.setAttribute("font-size", 13 * s);
    t.textContent = `${b.level}${b.probability != null ? " P=" + b.probability.toFixed(2) : ""}${b.herniation ? " LDH" : ""}`;
    g.append(r, t);
    if (b.id === app.selected) {
      const h = 7 * s;
      for (const [name, hx, hy] of handlePoints(b)) {
        const hr = document.createElementNS(SVGNS, "rect");
        hr.setAttribute("class", "handle"); hr.dataset.part = name;
        setRect(hr, hx - h / 2, hy - h / 2, h, h);
        hr.style.cursor = name + "-resize";
        g.append(hr);
      }
    }
    g.addEventListener("focus", () => { if (app.selected !== b.id) select(b.id, true); }); // re-render keeps focus
    nodes.push(g);
  }
  if (app.drag && app.drag.mode === "draw") {
    const d = document.createElementNS(SVGNS, "rect");
    d.setAttribute("class", "draft");
    const [x0, y0, x1, y1] = normRect(app.drag.start, app.drag.now);
    setRect(d, x0, y0, x1 - x0, y1 - y0);
    nodes.push(d);
  }
  svg.replaceChildren(...nodes);
  if (app.focusAfterRender) {
    const el = svg.querySelector(`g.box[data-id="${app.focusAfterRender}"]`);
    app.focusAfterRender = null;
    if (el) el.focus({ preventScroll: true });
  }
}

function setRect(el, x, y, w, h) {
  el.setAttribute("x", x); el.setAttribute("y", y); el.setAttribute("width", Math.max(w, 0)); el.setAttribute("height", Math.max(h, 0));
}

function handlePoints(b) {
  const mx = (b.x0 + b.x1) / 2, my = (b.y0 + b.y1) / 2;
  return [["nw", b.x0, b.y0], ["n", mx, b.y0], ["ne", b.x1, b.y0], ["e", b.x1, my],
          ["se", b.x1, b.y1], ["s", mx, b.y1], ["sw", b.x0, b.y1], ["w", b.x0, my]];
}

function renderPanel() {
  const rows = [...app.boxes].sort((a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level)).map((b) => {
    const tr = document.createElement("tr");
    tr.className = (b.id === app.selected ? "selected " : "") + (b.herniation ? "ldh" : "");
    tr.dataset.level = b.level;
    const level = document.createElement("td");
    level.innerHTML = `<span class="swatch" style="background:${COLOURS[b.level]}"></span>`;
    level.append(b.level);
    const p = document.createElement("td"); p.textContent = b.probability != null ? b.probability.toFixed(2) : "—";
    const h = document.createElement("td");
    const cb = document.createElement("input"); cb.type = "checkbox"; cb.checked = b.herniation;
    cb.setAttribute("aria-label", `herniation at ${b.level}`);
    cb.addEventListener("change", () => { b.herniation = cb.checked; changed(`${b.level}: herniation ${b.herniation ? "yes" : "no"}`); });
    h.append(cb);
    const sl = document.createElement("td"); sl.textContent = String(b.slice + 1);
    const act = document.createElement("td");
    const go = document.createElement("button"); go.type = "button"; go.className = "link"; go.textContent = "show";
    go.setAttribute("aria-label", `show ${b.level}`);
    go.addEventListener("click", async () => { await showSlice(b.slice); select(b.id, true); });
    act.append(go);
    tr.append(level, p, h, sl, act);
    return tr;
  });
  $("disc-rows").replaceChildren(...rows);
  const b = current();
  $("editor").hidden = !b; $("delete-box").disabled = !b;
  if (b) {
    $("level-select").value = b.level;
    $("herniation-toggle").checked = b.herniation;
    $("to-this-slice").disabled = b.slice === app.slice;
    $("box-coords").textContent = `slice ${b.slice + 1}: [${b.x0}, ${b.y0}, ${b.x1}, ${b.y1}]`;
  }
  $("add-box").setAttribute("aria-pressed", String(app.adding));
}

function renderAll() { renderBoxes(); renderPanel(); }
function current() { return app.boxes.find((b) => b.id === app.selected) || null; }

function select(id, focus) {
  app.selected = id;
  if (focus) app.focusAfterRender = id;
  renderAll();
  const b = current();
  if (b) announce(`${b.level} selected`);
}

function changed(message) {
  app.dirty = true;
  $("save-status").textContent = "Unsaved changes.";
  if (message) announce(message);
  renderAll();
}

// ----------------------------------------------------------------------------------------------- edits
function clampBox(b) {
  const w = b.x1 - b.x0, h = b.y1 - b.y0;
  if (b.x0 < 0) { b.x0 = 0; b.x1 = w; }
  if (b.y0 < 0) { b.y0 = 0; b.y1 = h; }
  if (b.x1 > app.cols) { b.x1 = app.cols; b.x0 = app.cols - w; }
  if (b.y1 > app.rows) { b.y1 = app.rows; b.y0 = app.rows - h; }
}

function moveBy(b, dx, dy) { b.x0 += dx; b.x1 += dx; b.y0 += dy; b.y1 += dy; clampBox(b); }

function resizeBy(b, dx, dy) {
  b.x1 = Math.max(b.x0 + 2, Math.min(app.cols, b.x1 + dx));
  b.y1 = Math.max(b.y0 + 2, Math.min(app.rows, b.y1 + dy));
}

function setLevel(b, level) {
  if (b.level === level) return;
  const other = app.boxes.find((o) => o !== b && o.level === level);
  if (other) { other.level = b.level; } // swap: every level keeps at most one box
  const old = b.level; b.level = level;
  changed(other ? `${old} and ${level} swapped` : `${old} relabelled ${level}`);
}

function freeLevel() { return LEVELS.find((l) => !app.boxes.some((b) => b.level === l)) || null; }

function addBox(x0, y0, x1, y1) {
  const level = freeLevel();
  if (!level) { showError($("save-error"), "Every level already has a box: relabel or delete one first."); return null; }
  const b = { id: app.nextId++, level, slice: app.slice, x0, y0, x1, y1, herniation: false, ai_level: null, probability: null };
  clampBox(b);
  app.boxes.push(b);
  app.selected = b.id; app.focusAfterRender = b.id;
  changed(`${level} box added on slice ${app.slice + 1}`);
  return b;
}

function deleteSelected() {
  const b = current(); if (!b) return;
  app.boxes = app.boxes.filter((o) => o !== b);
  app.selected = null;
  changed(`${b.level} box deleted`);
  $("stage").focus();
}

// ---------------------------------------------------------------------------------------------- pointer
function toImage(evt) {
  const svg = $("boxes");
  const pt = svg.createSVGPoint(); pt.x = evt.clientX; pt.y = evt.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  return { x: Math.max(0, Math.min(app.cols, p.x)), y: Math.max(0, Math.min(app.rows, p.y)) };
}

function normRect(a, b) {
  return [Math.round(Math.min(a.x, b.x)), Math.round(Math.min(a.y, b.y)), Math.round(Math.max(a.x, b.x)), Math.round(Math.max(a.y, b.y))];
}

function onPointerDown(evt) {
  if (evt.button !== 0) return;
  const p = toImage(evt);
  const g = evt.target.closest("g.box");
  if (app.adding || !g) {
    if (!app.adding) { app.selected = null; renderAll(); return; }
    app.drag = { mode: "draw", start: p, now: p };
  } else {
    const b = app.boxes.find((o) => o.id === Number(g.dataset.id));
    app.selected = b.id;
    app.drag = { mode: evt.target.dataset.part === "body" ? "move" : evt.target.dataset.part, box: b, start: p,
                 orig: { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 }, moved: false };
  }
  $("boxes").setPointerCapture(evt.pointerId);
  evt.preventDefault();
  renderAll();
}

function onPointerMove(evt) {
  if (!app.drag) return;
  const p = toImage(evt);
  const d = app.drag;
  if (d.mode === "draw") { d.now = p; renderBoxes(); return; }
  const dx = Math.round(p.x - d.start.x), dy = Math.round(p.y - d.start.y);
  const b = d.box, o = d.orig;
  if (d.mode === "move") {
    b.x0 = o.x0 + dx; b.x1 = o.x1 + dx; b.y0 = o.y0 + dy; b.y1 = o.y1 + dy; clampBox(b);
  } else {
    if (d.mode.includes("w")) b.x0 = Math.min(o.x1 - 2, Math.max(0, o.x0 + dx));
    if (d.mode.includes("e")) b.x1 = Math.max(o.x0 + 2, Math.min(app.cols, o.x1 + dx));
    if (d.mode.includes("n")) b.y0 = Math.min(o.y1 - 2, Math.max(0, o.y0 + dy));
    if (d.mode.includes("s")) b.y1 = Math.max(o.y0 + 2, Math.min(app.rows, o.y1 + dy));
  }
  d.moved = d.moved || dx !== 0 || dy !== 0;
  renderBoxes();
}

function onPointerUp(evt) {
  const d = app.drag; if (!d) return;
  app.drag = null;
  try { $("boxes").releasePointerCapture(evt.pointerId); } catch (_) { /* already released */ }
  if (d.mode === "draw") {
    const [x0, y0, x1, y1] = normRect(d.start, toImage(evt));
    if (x1 - x0 >= 3 && y1 - y0 >= 3) addBox(x0, y0, x1, y1);
    app.adding = false;
    renderAll();
    return;
  }
  if (d.moved) changed(`${d.box.level} ${d.mode === "move" ? "moved" : "resized"} to [${d.box.x0}, ${d.box.y0}, ${d.box.x1}, ${d.box.y1}]`);
  else renderAll();
}

// --------------------------------------------------------------------------------------------- keyboard
function onKey(evt) {
  if ($("review-view").hidden) return;
  const tag = (evt.target.tagName || "").toLowerCase();
  if (["input", "select", "textarea"].includes(tag) && evt.target.type !== "checkbox" && evt.target.type !== "range") return;
  if ((evt.ctrlKey || evt.metaKey) && evt.key.toLowerCase() === "s") { evt.preventDefault(); save("corrections"); return; }
  if (evt.ctrlKey || evt.metaKey) return;
  const b = current();
  const step = evt.shiftKey ? 10 : 1;
  const arrows = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (evt.key in arrows && b && tag !== "input" && evt.target.type !== "range") {
    evt.preventDefault();
    const [dx, dy] = arrows[evt.key];
    if (evt.altKey) resizeBy(b, dx, dy); else moveBy(b, dx, dy);
    app.focusAfterRender = b.id;
    changed(`${b.level} [${b.x0}, ${b.y0}, ${b.x1}, ${b.y1}]`);
    return;
  }
  const key = evt.key;
  if (key === "PageUp" || key === "[") { evt.preventDefault(); showSlice(app.slice - 1); }
  else if (key === "PageDown" || key === "]") { evt.preventDefault(); showSlice(app.slice + 1); }
  else if ((key === "Delete" || key === "Backspace") && b) { evt.preventDefault(); deleteSelected(); }
  else if ((key === "h" || key === "H") && b) { b.herniation = !b.herniation; app.focusAfterRender = b.id; changed(`${b.level}: herniation ${b.herniation ? "yes" : "no"}`); }
  else if (/^[1-5]$/.test(key) && b) { app.focusAfterRender = b.id; setLevel(b, LEVELS[Number(key) - 1]); }
  else if (key === "n" || key === "N") {
    const w = Math.round(app.cols / 10), h = Math.round(app.rows / 20);
    addBox(Math.round(app.cols / 2 - w / 2), Math.round(app.rows / 2 - h / 2), Math.round(app.cols / 2 + w / 2), Math.round(app.rows / 2 + h / 2));
  } else if (key === "m" || key === "M") { $("mask-toggle").checked = !$("mask-toggle").checked; applyMask(); }
  else if (key === "Escape") { app.adding = false; app.selected = null; renderAll(); $("stage").focus(); }
}

function applyMask() { $("mask-img").classList.toggle("off", !$("mask-toggle").checked); }

// -------------------------------------------------------------------------------------------------- save
async function save(action) {
  showError($("save-error"), "");
  if (action === "accept" && app.dirty && !confirm("Accepting the AI result discards your unsaved edits. Continue?")) return;
  const body = { action };
  if (action === "corrections") {
    body.corrections = app.boxes.map((b) => ({
      level: b.level, slice_index: b.slice, box: [b.x0, b.y0, b.x1, b.y1], herniation: b.herniation, ai_level: b.ai_level,
    }));
  }
  $("save-corrections").disabled = $("accept-ai").disabled = true;
  $("save-status").textContent = "Saving…";
  try {
    const res = await api(`/api/studies/${encodeURIComponent(app.study.study_instance_uid)}/feedback`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const out = await res.json();
    app.lastRecord = out.record;
    app.dirty = false;
    $("save-status").textContent = `Saved ${out.record.kind === "accept" ? "acceptance" : "corrections"} (record ${out.record.record_id}).`;
    $("reviewed-sr-item").hidden = !out.record.reviewed_sr;
    announce("Saved.");
  } catch (err) {
    $("save-status").textContent = "";
    showError($("save-error"), err.message);
  } finally {
    $("save-corrections").disabled = $("accept-ai").disabled = false;
  }
}

async function download(kind) {
  const uid = app.study.study_instance_uid;
  const base = `/api/studies/${encodeURIComponent(uid)}`;
  const map = { seg: [`${base}/seg`, "seg.dcm"], sr: [`${base}/sr`, "sr.dcm"], findings: [`${base}/findings`, "findings.json"],
                "preview.png": [`${base}/preview.png`, "preview.png"],
                reviewed: app.lastRecord ? [`${base}/feedback/${app.lastRecord.record_id}/sr`, "reviewed-sr.dcm"] : null };
  const [path, name] = map[kind];
  try {
    const blob = await (await api(path)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = `${uid}_${name}`;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) { showError($("save-error"), err.message); }
}

// --------------------------------------------------------------------------------------------- routing
async function route() {
  const m = location.hash.match(/^#study=(.+)$/);
  if (m) {
    try { await openStudy(decodeURIComponent(m[1])); return; } catch (err) { showError($("upload-error"), err.message); }
  }
  $("review-view").hidden = true; $("upload-view").hidden = false;
  loadRecent();
}

async function init() {
  app.config = await (await fetch("/api/config")).json();
  $("pixel-spacing").placeholder = String(app.config.default_pixel_spacing_mm);
  $("slice-spacing").placeholder = String(app.config.default_slice_spacing_mm);
  $("spacing-note").textContent = `Empty = the stated defaults: ${app.config.default_pixel_spacing_mm} mm pixels, ` +
    `${app.config.default_slice_spacing_mm} mm between slices. Limit ${app.config.max_upload_mb} MiB per upload.`;
  $("auth").hidden = !app.config.auth_required;
  $("api-key").value = sessionStorage.getItem("ldh-api-key") || "";
  $("api-key-save").addEventListener("click", () => { sessionStorage.setItem("ldh-api-key", $("api-key").value.trim()); route(); });
  $("level-select").replaceChildren(...LEVELS.map((l) => new Option(l, l)));
  $("upload-form").addEventListener("submit", onUpload);
  $("file-input").addEventListener("change", () => {
    const f = $("file-input").files;
    $("file-summary").textContent = f.length ? `${f.length} file(s), ${(Array.from(f).reduce((s, x) => s + x.size, 0) / 1048576).toFixed(1)} MiB` : "No file chosen.";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); $("file-input").files = e.dataTransfer.files; $("file-input").dispatchEvent(new Event("change")); });

  const svg = $("boxes");
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  svg.addEventListener("pointercancel", onPointerUp);
  document.addEventListener("keydown", onKey);
  $("slice-range").addEventListener("input", () => showSlice(Number($("slice-range").value)));
  $("prev-slice").addEventListener("click", () => showSlice(app.slice - 1));
  $("next-slice").addEventListener("click", () => showSlice(app.slice + 1));
  $("mask-toggle").addEventListener("change", applyMask);
  $("add-box").addEventListener("click", () => { app.adding = !app.adding; app.selected = null; renderAll(); announce(app.adding ? "Drag on the image to draw a box" : ""); });
  $("delete-box").addEventListener("click", deleteSelected);
  $("level-select").addEventListener("change", () => { const b = current(); if (b) setLevel(b, $("level-select").value); });
  $("herniation-toggle").addEventListener("change", () => { const b = current(); if (b) { b.herniation = $("herniation-toggle").checked; changed(`${b.level}: herniation ${b.herniation ? "yes" : "no"}`); } });
  $("to-this-slice").addEventListener("click", () => { const b = current(); if (b) { b.slice = app.slice; changed(`${b.level} moved to slice ${app.slice + 1}`); } });
  $("save-corrections").addEventListener("click", () => save("corrections"));
  $("accept-ai").addEventListener("click", () => save("accept"));
  for (const el of document.querySelectorAll("[data-download]")) el.addEventListener("click", () => download(el.dataset.download));
  $("reviewed-sr").addEventListener("click", () => download("reviewed"));
  $("slice-img").addEventListener("load", renderBoxes);
  window.addEventListener("resize", () => { fitImage(); renderBoxes(); });
  window.addEventListener("hashchange", route);
  window.addEventListener("beforeunload", (e) => { if (app.dirty) { e.preventDefault(); e.returnValue = ""; } });
  await route();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => { init().catch((err) => showError($("upload-error"), err.message)); });
