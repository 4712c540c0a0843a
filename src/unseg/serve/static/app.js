// unseg serve: upload images, mark the object (box, points, painted or uploaded mask), protect, download.
// Coordinates sent to the server are image pixels of the upright image (the server's preview).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, images: [], current: -1, drag: null, stroke: null };
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const PAINT_COLOUR = "rgb(255, 40, 40)";

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(message) { $("error").textContent = message || ""; }
function setStatus(message) { $("status").textContent = message || ""; }
function currentImage() { return state.images[state.current] || null; }
function tool() { return document.querySelector("input[name=tool]:checked").value; }

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser could not show the preview"));
    image.src = url;
  });
}

// ---- images -------------------------------------------------------------------------------

async function addFiles(files) {
  showError("");
  const errors = [];
  for (const file of files) {
    setStatus(`Uploading ${file.name}…`);
    try {
      const upload = await api("/api/upload", {
        method: "POST", headers: { "X-Filename": encodeURIComponent(file.name) }, body: file,
      });
      const image = await loadImage(upload.preview);
      state.images.push({ ...upload, image, boxes: [], points: [], labels: [], paint: null,
                          painted: false, maskId: null, maskName: null });
      selectImage(state.images.length - 1);
    } catch (error) {
      errors.push(error.message);
    }
  }
  setStatus("");
  if (errors.length) showError(errors.join("\n"));
  refreshControls();
}

function selectImage(index) {
  state.current = index;
  const item = currentImage();
  canvas.dataset.ready = item ? "1" : "0";
  if (item) {
    canvas.width = item.width;
    canvas.height = item.height;
    $("canvas-hint").textContent = `${item.name}: ${item.width}×${item.height} px`;
  } else {
    canvas.width = canvas.height = 1;
    $("canvas-hint").textContent = "Choose one or more images to start.";
  }
  renderThumbs();
  redraw();
}

function renderThumbs() {
  const thumbs = $("thumbs");
  thumbs.replaceChildren();
  state.images.forEach((item, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = item.name;
    button.className = index === state.current ? "current" : "";
    const image = document.createElement("img");
    image.src = item.preview;
    image.alt = item.name;
    button.append(image);
    button.addEventListener("click", () => selectImage(index));
    thumbs.append(button);
  });
}

function removeCurrent() {
  if (state.current < 0) return;
  state.images.splice(state.current, 1);
  selectImage(Math.min(state.current, state.images.length - 1));
  refreshControls();
}

// ---- marking ------------------------------------------------------------------------------

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

function paintLayer(item) {
  if (!item.paint) {
    item.paint = document.createElement("canvas");
    item.paint.width = item.width;
    item.paint.height = item.height;
  }
  return item.paint;
}

function paintStroke(item, from, to, erase) {
  const layer = paintLayer(item).getContext("2d");
  layer.globalCompositeOperation = erase ? "destination-out" : "source-over";
  layer.strokeStyle = PAINT_COLOUR;
  layer.lineCap = layer.lineJoin = "round";
  layer.lineWidth = Number($("brush").value) * Math.max(1, item.width / 800);
  layer.beginPath();
  layer.moveTo(from[0], from[1]);
  layer.lineTo(to[0] + 0.01, to[1]);
  layer.stroke();
  item.painted = true;
  item.maskId = null;  // the painted layer (which holds any uploaded mask) is sent at protection time
  item.maskName = "painted mask";
}

canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("mousedown", (event) => {
  const item = currentImage();
  if (!item) return;
  event.preventDefault();
  const point = imagePoint(event);
  const kind = tool();
  if (kind === "box") {
    state.drag = { start: point, end: point };
  } else if (kind === "points") {
    item.points.push([Math.round(point[0] * 10) / 10, Math.round(point[1] * 10) / 10]);
    item.labels.push(event.shiftKey || event.button === 2 ? 0 : 1);
  } else {
    state.stroke = point;
    paintStroke(item, point, point, kind === "erase");
  }
  redraw();
});
window.addEventListener("mousemove", (event) => {
  const item = currentImage();
  if (!item) return;
  if (state.drag) {
    state.drag.end = imagePoint(event);
    redraw();
  } else if (state.stroke) {
    const point = imagePoint(event);
    paintStroke(item, state.stroke, point, tool() === "erase");
    state.stroke = point;
    redraw();
  }
});
window.addEventListener("mouseup", () => {
  const item = currentImage();
  if (state.drag && item) {
    const [x0, y0] = state.drag.start;
    const [x1, y1] = state.drag.end;
    if (Math.abs(x1 - x0) >= 2 && Math.abs(y1 - y0) >= 2) {
      item.boxes.push([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(Math.round));
    }
  }
  state.drag = null;
  state.stroke = null;
  redraw();
});

function clearMarks() {
  const item = currentImage();
  if (!item) return;
  Object.assign(item, { boxes: [], points: [], labels: [], paint: null, painted: false, maskId: null, maskName: null });
  redraw();
}

async function uploadMask(file) {
  const item = currentImage();
  if (!item || !file) return;
  showError("");
  try {
    const mask = await api(`/api/uploads/${item.id}/mask`, {
      method: "POST", headers: { "X-Filename": encodeURIComponent(file.name) }, body: file,
    });
    item.paint = null;
    item.painted = false;
    item.maskId = mask.id;
    item.maskName = `mask ${file.name} (${(100 * mask.fraction).toFixed(1)} % of the image, ` +
                    `${mask.objects} object${mask.objects === 1 ? "" : "s"})`;
    await showUploadedMask(item, file);
  } catch (error) {
    showError(error.message);
  }
  $("mask-file").value = "";
  redraw();
}

async function showUploadedMask(item, file) {
  // Draw the mask's non-zero pixels into the paint layer so it can be seen and edited;
  // while it is not edited, the uploaded file itself (with its classes) is what the server uses.
  let bitmap;
  try { bitmap = await createImageBitmap(file); } catch (error) { return; }  // e.g. TIFF: not shown
  const scratch = document.createElement("canvas");
  scratch.width = item.width;
  scratch.height = item.height;
  const context = scratch.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, item.width, item.height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {
    const on = data[i] || data[i + 1] || data[i + 2];
    data[i] = 255; data[i + 1] = 40; data[i + 2] = 40; data[i + 3] = on ? 255 : 0;
  }
  paintLayer(item).getContext("2d").putImageData(pixels, 0, 0);
}

function paintedMaskBlob(item) {
  // The painted layer as a grey PNG: 255 where painted, 0 elsewhere (read like a binary mask).
  const out = document.createElement("canvas");
  out.width = item.width;
  out.height = item.height;
  const source = item.paint.getContext("2d").getImageData(0, 0, item.width, item.height);
  const data = source.data;
  for (let i = 0; i < data.length; i += 4) {
    const value = data[i + 3] > 0 ? 255 : 0;
    data[i] = data[i + 1] = data[i + 2] = value;
    data[i + 3] = 255;
  }
  out.getContext("2d").putImageData(source, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

function describeMarks(item) {
  if (!item) return "";
  const parts = item.boxes.map((b) => `box (${b[0]}, ${b[1]})–(${b[2]}, ${b[3]})`);
  if (item.points.length) {
    const negative = item.labels.filter((label) => label === 0).length;
    parts.push(`${item.points.length} point${item.points.length === 1 ? "" : "s"}` +
               (negative ? ` (${negative} not the object)` : ""));
  }
  if (item.maskName) parts.push(item.maskName);
  return parts.length ? "Marked: " + parts.join(" · ")
                      : "Nothing marked: the whole image is protected at ε.";
}

function redraw() {
  const item = currentImage();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  $("marks").textContent = describeMarks(item);
  if (!item) return;
  ctx.drawImage(item.image, 0, 0);
  if (item.paint) {
    ctx.globalAlpha = 0.45;
    ctx.drawImage(item.paint, 0, 0);
    ctx.globalAlpha = 1;
  }
  const line = Math.max(2, item.width / 300);
  ctx.lineWidth = line;
  const boxes = item.boxes.slice();
  if (state.drag) {
    const [x0, y0] = state.drag.start;
    const [x1, y1] = state.drag.end;
    boxes.push([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]);
  }
  for (const [x0, y0, x1, y1] of boxes) {
    ctx.strokeStyle = "rgba(0, 0, 0, 0.6)";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([line * 3, line * 2]);
    ctx.strokeStyle = "#3cff6e";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
  const radius = Math.max(4, item.width / 120);
  item.points.forEach(([x, y], index) => {
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
    ctx.fillStyle = item.labels[index] ? "#3cff6e" : "#ff3c3c";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  });
}

// ---- protection ---------------------------------------------------------------------------

function refreshControls() {
  $("protect").disabled = state.images.length === 0;
  $("remove").disabled = state.current < 0;
}

function syncBudget(changed) {
  const epsilon = $("epsilon");
  const background = $("epsilon-bg");
  if (Number(background.value) > Number(epsilon.value)) {
    if (changed === "epsilon") background.value = epsilon.value; else epsilon.value = background.value;
  }
  $("epsilon-value").textContent = epsilon.value;
  $("epsilon-bg-value").textContent = background.value;
}

async function protect() {
  showError("");
  const count = state.images.length;
  setStatus(`Protecting ${count} image${count === 1 ? "" : "s"}…`);
  $("protect").disabled = true;
  $("results").dataset.done = "0";
  try {
    for (const item of state.images) {
      if (item.painted && !item.maskId) {
        const blob = await paintedMaskBlob(item);
        const mask = await api(`/api/uploads/${item.id}/mask`, {
          method: "POST", headers: { "X-Filename": encodeURIComponent(item.name + ".mask.png") }, body: blob,
        });
        item.maskId = mask.id;
      }
    }
    const request = {
      generator: $("generator").value,
      epsilon: Number($("epsilon").value),
      epsilon_bg: Number($("epsilon-bg").value),
      images: state.images.map((item) => ({
        id: item.id, boxes: item.boxes, points: item.points, point_labels: item.labels, mask: item.maskId,
      })),
    };
    const response = await api("/api/protect", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    renderResults(response);
    setStatus(`Protected ${response.results.length} of ${count}.`);
    if (response.failures.length) {
      showError(response.failures.map((failure) => `${failure.name}: ${failure.error}`).join("\n"));
    }
  } catch (error) {
    setStatus("");
    showError(error.message);
  } finally {
    refreshControls();
  }
}

function element(tag, attributes, children) {
  const node = document.createElement(tag);
  Object.entries(attributes || {}).forEach(([key, value]) => node.setAttribute(key, value));
  (children || []).forEach((child) => node.append(child));
  return node;
}

function figure(src, caption, alt) {
  return element("figure", {}, [element("img", { src, alt }), element("figcaption", {}, [caption])]);
}

function describeStats(stats) {
  const psnr = stats.psnr == null ? "–" : `${stats.psnr.toFixed(1)} dB`;
  const ssim = stats.ssim == null ? "–" : stats.ssim.toFixed(3);
  const where = stats.region_fraction >= 1 ? "everywhere (whole image marked)"
    : `${stats.linf_inside} on the object, ${stats.linf_outside} elsewhere`;
  return `PSNR ${psnr} · SSIM ${ssim} · measured L∞ ${where} ` +
         `(budget ${stats.epsilon_levels} / ${stats.epsilon_bg_levels} levels) · prompt: ${stats.prompt}`;
}

function renderResults(response) {
  const results = $("results");
  results.replaceChildren();
  if (!response.results.length) return;
  const heading = element("h2", {}, [`Results (generator ${response.generator.choice}` +
                                     `${response.generator.trained ? "" : ", UNTRAINED: weak protection"})`]);
  const zip = element("a", { href: response.zip, download: "unseg-protected.zip", id: "download-zip",
                             class: "download" }, ["Download all (zip with manifest.jsonl)"]);
  results.append(heading, zip);
  const { noise_amplify: amplify, zoom_scale: zoomScale } = state.info.views;
  response.results.forEach((result, index) => {
    const views = element("div", { class: "views" }, [
      figure(result.views.clean, "clean", `${result.name}, clean`),
      figure(result.views.noise, `noise ×${amplify}`, `${result.name}, noise amplified ${amplify} times`),
      figure(result.views.protected, "protected", `${result.name}, protected`),
    ]);
    const zoom = element("div", { class: "views zoom" }, [
      figure(result.views.zoom, `zoomed crop ×${zoomScale}: clean | protected | noise ×${amplify}`,
             `${result.name}, zoomed crop`),
    ]);
    const download = element("a", { href: result.download, download: result.output, class: "download download-png",
                                     id: `download-${index}` }, [`Download ${result.output} (lossless PNG)`]);
    results.append(element("article", { class: "result" }, [
      element("h3", {}, [result.name]), views, zoom,
      element("p", { class: "stats" }, [describeStats(result.stats)]), download,
    ]));
  });
  results.dataset.done = "1";
}

// ---- start --------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    showError(`The server did not answer: ${error.message}`);
    return;
  }
  const select = $("generator");
  for (const generator of state.info.generators) {
    const option = element("option", { value: generator.name },
                           [generator.name + (generator.trained ? "" : " (untrained: weak protection)")]);
    select.append(option);
  }
  const note = () => {
    const chosen = state.info.generators.find((generator) => generator.name === select.value);
    $("generator-note").textContent = chosen ? chosen.notes.join(" ") : "";
  };
  select.addEventListener("change", note);
  note();
  $("epsilon").value = state.info.defaults.epsilon;
  $("epsilon-bg").value = state.info.defaults.epsilon_bg;
  $("epsilon").max = $("epsilon-bg").max = state.info.max_epsilon;
  syncBudget("epsilon");
  $("limits").textContent = `Limits: ${state.info.limits.text}.`;
  $("files").addEventListener("change", (event) => addFiles(Array.from(event.target.files)));
  $("mask-file").addEventListener("change", (event) => uploadMask(event.target.files[0]));
  $("clear").addEventListener("click", clearMarks);
  $("remove").addEventListener("click", removeCurrent);
  $("protect").addEventListener("click", protect);
  $("epsilon").addEventListener("input", () => syncBudget("epsilon"));
  $("epsilon-bg").addEventListener("input", () => syncBudget("epsilon-bg"));
  document.body.dataset.ready = "1";
  redraw();
}

start();
