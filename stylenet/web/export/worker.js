// stylenet's exported page, its worker: ONNX Runtime Web runs the model here, so the page stays responsive.
// Messages in: {type: "init", model, backend}, {type: "run", id, photo, side, styleWeights, painting, strength,
// preserve}. Out: {type: "ready", backend, threads}, {type: "progress", id, text}, {type: "done", id, width,
// height, pixels (RGBA), ms}, {type: "error", id, message}.
"use strict";

let ort = null;
let session = null;
let model = null;
let backend = "";

self.onmessage = async (event) => {
  const message = event.data;
  try {
    if (message.type === "init") {
      await init(message);
      self.postMessage({ type: "ready", backend, threads: ort.env.wasm.numThreads });
    } else if (message.type === "run") {
      const result = await run(message);
      self.postMessage({ type: "done", id: message.id, ...result }, [result.pixels.buffer]);
    }
  } catch (error) {
    self.postMessage({ type: "error", id: message.id, message: String((error && error.message) || error) });
  }
};

async function webgpuAdapter() {
  if (!("gpu" in navigator)) return null;
  try { return await navigator.gpu.requestAdapter(); } catch { return null; }
}

async function init(message) {
  model = message.model;
  const gpu = message.backend !== "wasm" && model.webgpu && (await webgpuAdapter()) !== null;
  ort = await import(gpu ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = new URL("./ort/", self.location.href).href;
  // threads need a cross-origin isolated page (COOP/COEP headers), which a plain static server does not send
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.proxy = false;  // this is already a worker
  const response = await fetch("model.onnx");
  if (!response.ok) throw new Error(`model.onnx could not be read (${response.status}): is it beside index.html?`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const order = gpu ? ["webgpu", "wasm"] : ["wasm"];
  for (const provider of order) {
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: [provider], graphOptimizationLevel: "all" });
      backend = provider;
      return;
    } catch (error) {
      if (provider === order[order.length - 1]) {
        throw new Error(`this browser's ONNX Runtime Web cannot run this model (${String(error.message || error).split("\n")[0]})`);
      }
    }
  }
}

// Python's resize_long_side: round(side * scale) for each side
function fitted(width, height, side) {
  const scale = side / Math.max(width, height);
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

// the image at `side` px on its long side (0: its own), at most `cap`; one decode unless it must be resized
async function decode(blob, side, cap, what) {
  let bitmap;
  const options = { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" };
  try {
    bitmap = await createImageBitmap(blob, options);
  } catch {
    throw new Error(`the ${what} could not be decoded: is it an image (PNG, JPEG, WebP, ...)?`);
  }
  let [width, height] = [bitmap.width, bitmap.height];
  const own = Math.max(width, height);
  const target = Math.min(side || own, cap);
  if (target !== own) {
    [width, height] = fitted(width, height, target);
    bitmap.close();
    bitmap = await createImageBitmap(blob, { ...options, resizeWidth: width, resizeHeight: height, resizeQuality: "high" });
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, width, height);
}

// RGBA bytes -> (1, 3, H, W) float32 in [0, 1]
function tensorOf(image) {
  const { width, height, data } = image;
  const plane = width * height;
  const values = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    values[i] = data[4 * i] / 255;
    values[plane + i] = data[4 * i + 1] / 255;
    values[2 * plane + i] = data[4 * i + 2] / 255;
  }
  return new ort.Tensor("float32", values, [1, 3, height, width]);
}

async function run(message) {
  if (!session) throw new Error("the model is not loaded");
  const say = (text) => self.postMessage({ type: "progress", id: message.id, text });
  say("reading the photo");
  const photo = await decode(message.photo, message.side, model.max_side, "photo");
  const feeds = { [model.inputs[0]]: tensorOf(photo) };
  if (model.input === "style_weights") {
    const total = message.styleWeights.reduce((sum, weight) => sum + weight, 0);
    feeds[model.inputs[1]] = new ort.Tensor("float32", Float32Array.from(message.styleWeights, (w) => w / total),
      [1, message.styleWeights.length]);
  } else if (model.input === "style_image") {
    if (!message.painting) throw new Error("this any-style model paints with any painting: choose one under Painting");
    feeds[model.inputs[1]] = tensorOf(await decode(message.painting, model.style_size, Infinity, "painting"));
  }
  say(`stylizing ${photo.width}x${photo.height} (${backend === "webgpu" ? "WebGPU" : "WASM"})`);
  const start = performance.now();
  const values = await paintAtStrokeSize(feeds, photo, strokeScale(photo, message.strokeSize));
  const ms = performance.now() - start;
  return { width: photo.width, height: photo.height, ms, pixels: finish(values, photo, message) };
}

// The network's (1, 3, H, W) output for these feeds, as float32 values
async function stylizeFeeds(feeds) {
  const outputs = await session.run(feeds);
  const stylized = outputs[session.outputNames[0]];
  const values = stylized.data instanceof Float32Array ? stylized.data : Float32Array.from(stylized.data);
  stylized.dispose?.();
  return values;
}

// stylenet/running/strokes.py's stroke_scale: the stroke size, or (none chosen) the photo's long side over the
// model's working size, at least 1
function strokeScale(photo, strokeSize) {
  if (strokeSize) return strokeSize;
  return Math.max(1, Math.max(photo.width, photo.height) / model.working_size);
}

// stylenet/running/strokes.py's paint_at_stroke_size: strokes `scale` times larger than the network paints them
async function paintAtStrokeSize(feeds, photo, scale) {
  const { width, height } = photo;
  const image = feeds[model.inputs[0]];
  if (scale === 1) return stylizeFeeds(feeds);
  const copyWidth = Math.max(16, Math.round(width / scale)), copyHeight = Math.max(16, Math.round(height / scale));
  const copyFeeds = { ...feeds, [model.inputs[0]]: new ort.Tensor("float32",
    resizePlanes(image.data, width, height, copyWidth, copyHeight), [1, 3, copyHeight, copyWidth]) };
  const copy = await stylizeFeeds(copyFeeds);
  if (scale < 1) return clip(resizePlanes(copy, copyWidth, copyHeight, width, height));
  const result = await stylizeFeeds(feeds);
  for (let round = 0; round < model.back_projections; round++) {  // result += up(copy - down(result))
    const missing = resizePlanes(result, width, height, copyWidth, copyHeight);
    for (let i = 0; i < missing.length; i++) missing[i] = copy[i] - missing[i];
    const added = resizePlanes(missing, copyWidth, copyHeight, width, height);
    for (let i = 0; i < result.length; i++) result[i] += added[i];
  }
  return clip(result);
}

function clip(values) {
  for (let i = 0; i < values.length; i++) values[i] = Math.min(1, Math.max(0, values[i]));
  return values;
}

// torch's F.interpolate(mode="bilinear", antialias=True, align_corners=False) of 3 planes: separable, a triangle
// filter widened by the scale when reducing (Pillow's and torch's antialiasing)
function resizePlanes(values, width, height, newWidth, newHeight) {
  const rows = new Float32Array(3 * height * newWidth);
  const across = weightsFor(width, newWidth), down = weightsFor(height, newHeight);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const source = c * width * height + y * width, target = c * height * newWidth + y * newWidth;
      for (let x = 0; x < newWidth; x++) {
        const { start, weights } = across[x];
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += weights[k] * values[source + start + k];
        rows[target + x] = sum;
      }
    }
  }
  const out = new Float32Array(3 * newHeight * newWidth);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < newHeight; y++) {
      const { start, weights } = down[y];
      const target = c * newHeight * newWidth + y * newWidth;
      for (let x = 0; x < newWidth; x++) {
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += weights[k] * rows[c * height * newWidth + (start + k) * newWidth + x];
        out[target + x] = sum;
      }
    }
  }
  return out;
}

function weightsFor(size, newSize) {
  const scale = size / newSize;
  const support = scale > 1 ? scale : 1;  // the triangle's half width, in input pixels
  const result = [];
  for (let i = 0; i < newSize; i++) {
    const center = (i + 0.5) * scale;
    const start = Math.max(0, Math.floor(center - support + 0.5)), end = Math.min(size, Math.floor(center + support + 0.5));
    const weights = [];
    let total = 0;
    for (let j = start; j < end; j++) {
      const weight = Math.max(0, 1 - Math.abs((j - center + 0.5) / support));
      weights.push(weight);
      total += weight;
    }
    result.push({ start, weights: weights.map((weight) => weight / (total || 1)) });
  }
  return result;
}

// Python's to_pil, then preserve_color (Pillow's YCbCr), then Image.blend with the photo, then the photo's alpha
function finish(values, photo, message) {
  const { width, height, data } = photo;
  const plane = width * height;
  const pixels = new Uint8ClampedArray(4 * plane);
  const byte = (x) => Math.round(Math.min(1, Math.max(0, x)) * 255);
  for (let i = 0; i < plane; i++) {
    let r = byte(values[i]), g = byte(values[plane + i]), b = byte(values[2 * plane + i]);
    if (message.preserve) {
      const pr = data[4 * i], pg = data[4 * i + 1], pb = data[4 * i + 2];
      const y = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
      const cb = Math.round(128 - 0.168736 * pr - 0.331264 * pg + 0.5 * pb);
      const cr = Math.round(128 + 0.5 * pr - 0.418688 * pg - 0.081312 * pb);
      const clip = (x) => Math.min(255, Math.max(0, Math.round(x)));  // Pillow clips when it converts back
      r = clip(y + 1.402 * (cr - 128));
      g = clip(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
      b = clip(y + 1.772 * (cb - 128));
    }
    if (message.strength < 1) {  // Pillow's Image.blend(photo, stylized, strength)
      const s = message.strength;
      r = data[4 * i] + s * (r - data[4 * i]);
      g = data[4 * i + 1] + s * (g - data[4 * i + 1]);
      b = data[4 * i + 2] + s * (b - data[4 * i + 2]);
    }
    pixels[4 * i] = r; pixels[4 * i + 1] = g; pixels[4 * i + 2] = b;  // Uint8ClampedArray rounds and clips
    pixels[4 * i + 3] = data[4 * i + 3];
  }
  return pixels;
}
