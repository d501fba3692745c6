// stylenet's exported page: the controls and the results; worker.js runs the model.
"use strict";

const $ = (id) => document.getElementById(id);
const worker = new Worker("worker.js", { type: "module" });
const pending = new Map();  // run id -> {resolve, reject, progress}
let model = null;
let photos = [];
let nextId = 1;
let ready = null;

function showError(html) {
  $("error").innerHTML = html;
  $("error").style.display = html ? "block" : "none";
}

const escape = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

worker.onmessage = (event) => {
  const message = event.data;
  if (message.type === "ready" || (message.type === "error" && message.id === undefined)) {
    ready(message);
    return;
  }
  const job = pending.get(message.id);
  if (!job) return;
  if (message.type === "progress") job.progress(message.text);
  else {
    pending.delete(message.id);
    if (message.type === "done") job.resolve(message);
    else job.reject(new Error(message.message));
  }
};
worker.onerror = (event) => showError(`the page's worker failed: ${escape(event.message || "worker.js could not be loaded")}`);

function runModel(request, progress) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, progress });
    worker.postMessage({ type: "run", id, ...request });
  });
}

async function start() {
  const response = await fetch("model.json");
  if (!response.ok) throw new Error(`model.json could not be read (${response.status})`);
  model = await response.json();
  describe();
  const backend = new URLSearchParams(location.search).get("backend");
  const answer = await new Promise((resolve) => { ready = resolve; worker.postMessage({ type: "init", model, backend }); });
  if (answer.type === "error") {
    $("runtime").textContent = "";
    showError(escape(answer.message));
    return;
  }
  const threads = answer.threads === 1 ? "1 thread" : `${answer.threads} threads`;
  $("runtime").textContent = answer.backend === "webgpu"
    ? `Runs on WebGPU (this device's GPU), ONNX Runtime Web ${model.onnx_runtime_web}`
    : `Runs on WebAssembly (CPU, ${threads}), ONNX Runtime Web ${model.onnx_runtime_web}` +
      (model.webgpu ? "; WebGPU is not available in this browser" : "");
  document.body.dataset.backend = answer.backend;
  document.body.dataset.threads = answer.threads;
  $("stylize").disabled = false;
}

function describe() {
  document.title = `stylenet: ${model.label}`;
  $("title").textContent = `stylenet \u00b7 ${model.label}`;
  const parts = [model.kind];
  if (model.eval) parts.push(`eval: as good as ${model.eval} L-BFGS iterations`);
  parts.push(`${model.weights} weights`);
  $("model-note").textContent = parts.join(" \u00b7 ");
  for (const [name, file] of Object.entries(model.paintings)) {
    const image = document.createElement("img");
    image.src = file;
    image.alt = image.title = `the painting: ${name}`;
    $("paintings").append(image);
  }
  model.styles.forEach((name, index) => {
    const row = document.createElement("div");
    row.className = "style";
    row.innerHTML = `<div class="row"><span></span><output></output></div>
      <input type="range" min="0" max="1" step="0.05" value="${index === 0 ? 1 : 0}">`;
    row.querySelector("span").textContent = name;
    const slider = row.querySelector("input");
    slider.dataset.style = name;
    slider.setAttribute("aria-label", `weight of ${name}`);
    const show = () => { row.querySelector("output").textContent = Number(slider.value).toFixed(2); };
    slider.addEventListener("input", show);
    show();
    $("styles").append(row);
  });
  if (model.styles.length) $("styles").insertAdjacentHTML("afterbegin", "<label>Styles (blend with the sliders)</label>");
  $("style-image-box").hidden = model.input !== "style_image";
  for (const size of model.sizes) $("size").add(new Option(`${size} px`, size));
  $("size").add(new Option(`the photo's own (up to ${model.max_side} px)`, 0));
  $("size").value = 1024;
  $("limits").textContent = `PNG, JPEG, WebP, ...; results up to ${model.max_side} px on the long side ` +
    "(larger photos: stylenet stylize, which tiles)";
}

function showPainting(src) {
  $("style-preview").src = src;
  $("style-preview").hidden = false;
}

function painting() {
  return $("style-image").files[0] || null;
}

function styleWeights() {
  const weights = [...document.querySelectorAll("#styles input[data-style]")].map((slider) => Number(slider.value));
  if (!weights.some((weight) => weight > 0)) throw new Error("give at least one style a weight above 0");
  return weights;
}

function download(blob, file) {
  const stem = file.name.replace(/\.[^.]+$/, "") || "photo";
  const ext = $("format").value === "jpeg" ? "jpg" : "png";
  const style = model.input === "style_weights" ? "blend" : model.label.replace(/[^\w-]+/g, "_");
  return { url: URL.createObjectURL(blob), name: `${stem}_${style}.${ext}` };
}

async function stylizeOne(file, card) {
  const status = card.querySelector(".status");
  const started = performance.now();
  let stage = "starting";
  const timer = setInterval(() => { status.textContent = `${stage}... ${((performance.now() - started) / 1000).toFixed(0)} s`; }, 250);
  try {
    const request = {
      photo: file, side: Number($("size").value), strength: Number($("strength").value), preserve: $("preserve-color").checked,
      strokeSize: $("stroke-size").value ? Number($("stroke-size").value) : null,
      styleWeights: model.input === "style_weights" ? styleWeights() : null,
      painting: model.input === "style_image" ? painting() : null,
    };
    const result = await runModel(request, (text) => { stage = text; });
    const canvas = document.createElement("canvas");
    canvas.width = result.width;
    canvas.height = result.height;
    canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(result.pixels.buffer), result.width, result.height), 0, 0);
    const type = $("format").value === "jpeg" ? "image/jpeg" : "image/png";
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, 0.92));
    const saved = download(blob, file);
    const image = card.querySelector(".result");
    await new Promise((resolve) => { image.onload = resolve; image.src = saved.url; });
    const link = card.querySelector("a.download");
    link.href = saved.url;
    link.download = saved.name;
    link.textContent = `Download ${saved.name}`;
    link.style.display = "inline";
    card.dataset.ms = result.ms.toFixed(0);
    status.textContent = `${result.width}x${result.height}, stylized in ${(result.ms / 1000).toFixed(2)} s`;
    card.dataset.state = "done";
  } finally {
    clearInterval(timer);
  }
}

async function stylizeAll() {
  if (!photos.length || !model) return;
  showError("");
  $("stylize").disabled = true;
  $("results").innerHTML = "";
  for (const file of photos) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.state = "working";
    card.innerHTML = `<div class="pair">
        <figure><img class="original" alt="photo"><figcaption></figcaption></figure>
        <figure><img class="result" alt="stylized"><figcaption class="model-label"></figcaption></figure>
      </div><div class="foot"><span class="status"></span><a class="download"></a></div>`;
    card.querySelector(".original").src = URL.createObjectURL(file);
    card.querySelector("figcaption").textContent = file.name;
    card.querySelector(".model-label").textContent = model.label;
    $("results").append(card);
    try {
      await stylizeOne(file, card);
    } catch (error) {
      card.dataset.state = "failed";
      card.querySelector(".status").classList.add("failed");
      card.querySelector(".status").textContent = `${file.name}: ${error.message}`;
      showError(escape(`${file.name}: ${error.message}`));
    }
  }
  $("stylize").disabled = false;
}

function addPhotos(files) {
  photos = [...files].filter((file) => file.type.startsWith("image/") || !file.type);
  if (!photos.length) return;
  if ($("stylize").disabled) {  // still loading the model: run once it is ready
    const wait = setInterval(() => { if (!$("stylize").disabled) { clearInterval(wait); stylizeAll(); } }, 100);
  } else stylizeAll();
}

$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("stylize").addEventListener("click", stylizeAll);
$("style-image").addEventListener("change", () => {
  const chosen = $("style-image").files[0];
  if (chosen) showPainting(URL.createObjectURL(chosen));
});
$("drop").addEventListener("click", () => $("photos").click());
$("photos").addEventListener("change", () => { addPhotos($("photos").files); $("photos").value = ""; });  // the same photo again re-runs
for (const name of ["dragenter", "dragover"]) $("drop").addEventListener(name, (event) => { event.preventDefault(); $("drop").classList.add("over"); });
for (const name of ["dragleave", "drop"]) $("drop").addEventListener(name, () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => { event.preventDefault(); addPhotos(event.dataTransfer.files); });
start().catch((error) => showError(escape(error.message)));
