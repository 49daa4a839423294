// The web demo: runs the run's decoder.onnx in the page with onnxruntime-web (WebAssembly), and its
// encoder.onnx when the run has one (the drawing panel, draw.js).
//
// The server (python -m export.serve RUN_DIR) gives /decoder.onnx, its facts as /decoder.json
// (see export/metadata.py), onnxruntime-web under /ort/, and when the run has an encoder (/parts.json
// says) /encoder.onnx, /encoder.json and pako under /pako/. The grid shows `?n=` images (16 by
// default) of the chosen class (shown by name when the facts have `class_names`, by id otherwise;
// `?label=` takes the id): the sliders set the first latent dimensions of every image at once, the
// other dimensions differ per image, drawn from the prior with a seeded generator (`?seed=`).
//
// For tests and scripts: window.demo.ready resolves after the first picture and the drawing panel
// (rejects with the reason the page cannot run); window.demo.model is the encoder's model.js Model,
// or null without an encoder; window.demo.render({z, label}) draws latents of your own (one latent
// or a list) and resolves when the canvas shows them; the canvas has data-ready="true" when idle.

import { exclusive, getJSON, loadModel } from "./model.js";
import { startDrawing } from "./draw.js";
import { gaussian, mulberry32 } from "./scores.js";

const ORT_DIR = "/ort/";
const MAX_SLIDERS = 8;
const SLIDER_RANGE = 3; // standard deviations of N(0, 1)
const PAD = 2; // pixels between images on the canvas
const GAP = [64, 64, 64, 255]; // their colour: dark grey
const DISPLAY_SIZE = 480; // CSS pixels of the larger side of the grid

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const canvas = $("grid");
const state = { latents: [], label: Number(params.get("label") ?? 0), seed: Number(params.get("seed") ?? 0) };
let ort, session, facts, latentSpec, labelSpec, dims, sliders = [];
let dirty = false, running = null;

const demo = { state, facts: null, layout: null, images: null, model: null, renders: 0, render, random };
window.demo = demo;
demo.ready = start();
demo.ready.catch(showError);

async function start() {
  try {
    ort = await import(ORT_DIR + "ort.wasm.min.mjs"); // the WebAssembly-only build
  } catch (err) {
    throw new Error(`Could not load onnxruntime-web from ${ORT_DIR} (${err.message}): run npm ci --prefix apps/web.`);
  }
  // Threads need a cross-origin isolated page (export.serve sends the headers); ?threads= sets how many.
  ort.env.wasm.numThreads = crossOriginIsolated
    ? clamp(Math.round(Number(params.get("threads") ?? Math.min(4, navigator.hardwareConcurrency || 1))) || 1, 1, 16) : 1;
  ort.env.wasm.wasmPaths = ORT_DIR;
  facts = demo.facts = await getJSON("/decoder.json");
  [latentSpec, labelSpec] = facts.inputs;
  dims = latentSpec.shape[0];
  session = await ort.InferenceSession.create("/decoder.onnx", { executionProviders: ["wasm"] });
  const model = demo.model = await loadModel(ort, session, facts);
  if (latentSpec.dtype.startsWith("float")) {
    buildControls();
    await random(state.seed);
  } else if (model) { // a VQ-VAE's codes have no sliders: its page is the drawing pad alone
    $("app").hidden = $("generate-title").hidden = true;
  } else {
    throw new Error(`This page drives float latents; this ${facts.variant} decoder takes ${latentSpec.dtype} ` +
                    `\`${latentSpec.name}\` instead.`);
  }
  if (model) startDrawing(model, demo, className);
  const classes = facts.num_classes ? `, ${facts.num_classes} classes` : "";
  const files = model ? `encoder.onnx and ${facts.file}` : facts.file;
  const latent = latentSpec.dtype.startsWith("float") ? `latent ${dims}` : `codes ${latentSpec.shape.join("×")}`;
  $("facts").textContent = `${facts.variant} ${model ? "encoder and " : ""}decoder: ${latent}${classes}, ` +
                           `images ${facts.output_shape.join("×")}, ${files}`;
  $("files").textContent = files;
}

/** Draws latents of your own, and/or picks the class; resolves when the canvas shows them.
 *  z: one latent (latent_dim numbers) or a list of them; label: a class id for every image. */
function render({ z, label } = {}) {
  if (z !== undefined) {
    state.latents = (typeof z[0] === "number" ? [z] : z).map((latent) => Array.from(latent, Number));
    if (state.latents.some((latent) => latent.length !== dims)) {
      throw new Error(`Expected latents of ${dims} numbers.`);
    }
    sliders.forEach((slider, d) => setSlider(slider, state.latents[0][d]));
  }
  if (label !== undefined) {
    state.label = Number(label);
    $("label").value = String(state.label);
  }
  dirty = true;
  canvas.dataset.ready = "false";
  if (!running) running = drawLoop();
  return running;
}

/** New latents from the prior with `seed` (default: the next seed); the first dimensions, the
 *  sliders', are shared by every image. Resolves when drawn. */
function random(seed = state.seed + 1) {
  state.seed = seed;
  $("seed").textContent = `seed ${seed}`;
  const rand = mulberry32(seed);
  const shared = drawLatent(rand);
  // When the sliders cover every dimension, all images would be the same: draw one.
  const count = dims > MAX_SLIDERS ? clamp(Math.round(Number(params.get("n") ?? 16)) || 16, 1, 100) : 1;
  const latents = Array.from({ length: count }, () => drawLatent(rand));
  latents.forEach((latent) => latent.splice(0, sliders.length, ...shared.slice(0, sliders.length)));
  return render({ z: latents });
}

// One decoder run at a time: events that arrive meanwhile only mark the state dirty, and the loop
// draws the latest state once more, so dragging a slider never queues up stale pictures.
async function drawLoop() {
  try {
    while (dirty) {
      dirty = false;
      await drawOnce();
    }
  } catch (err) {
    showError(err);
    throw err;
  } finally {
    running = null;
  }
  canvas.dataset.ready = "true";
}

async function drawOnce() {
  const n = state.latents.length, started = performance.now();
  const feeds = { [latentSpec.name]: new ort.Tensor("float32", Float32Array.from(state.latents.flat()), [n, dims]) };
  if (labelSpec) feeds[labelSpec.name] = new ort.Tensor("int32", new Int32Array(n).fill(state.label), [n]);
  const { mean } = await exclusive(() => session.run(feeds, ["mean"]));
  paint(mean.data, n);
  demo.renders += 1;
  const label = labelSpec ? ` of class ${className(state.label)}` : "";
  $("status").textContent = `${n} image${n > 1 ? "s" : ""}${label} in ${(performance.now() - started).toFixed(0)} ms`;
}

/** Lays out `n` images [H, W, C] in [0, 1] as a grid of 0-255 pixels (grey when C is 1). */
function paint(values, n) {
  const [height, width, channels] = facts.output_shape;
  const cols = Math.ceil(Math.sqrt(n)), rows = Math.ceil(n / cols);
  canvas.width = cols * (width + PAD) + PAD;
  canvas.height = rows * (height + PAD) + PAD;
  const scale = Math.max(1, Math.floor(DISPLAY_SIZE / Math.max(canvas.width, canvas.height)));
  canvas.style.width = `${canvas.width * scale}px`;
  demo.layout = { cols, rows, pad: PAD, width, height, scale };
  demo.images = { values, count: n };
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < image.data.length; i += 4) image.data.set(GAP, i); // opaque: alpha 255 everywhere
  for (let i = 0; i < n; i++) {
    const left = PAD + (i % cols) * (width + PAD), top = PAD + Math.floor(i / cols) * (height + PAD);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const source = ((i * height + y) * width + x) * channels;
        const target = ((top + y) * canvas.width + left + x) * 4;
        for (let c = 0; c < 3; c++) {
          const v = values[source + (channels === 1 ? 0 : c)];
          image.data[target + c] = Math.round(255 * clamp(v, 0, 1));
        }
      }
    }
  }
  context.putImageData(image, 0, 0);
}

function buildControls() {
  if (labelSpec) {
    const select = $("label");
    state.label = clamp(Math.round(state.label) || 0, 0, facts.num_classes - 1);
    for (let c = 0; c < facts.num_classes; c++) select.add(new Option(className(c), String(c)));
    select.value = String(state.label);
    select.addEventListener("change", () => render({ label: Number(select.value) }));
    $("label-picker").hidden = false;
  }
  $("random").addEventListener("click", () => random());
  sliders = Array.from({ length: Math.min(MAX_SLIDERS, dims) }, (_, d) => {
    const row = document.createElement("label");
    row.className = "slider";
    row.innerHTML = `<span>z<sub>${d + 1}</sub></span>
      <input type="range" id="z${d}" min="${-SLIDER_RANGE}" max="${SLIDER_RANGE}" step="0.01" value="0">
      <output for="z${d}">0.00</output>`;
    $("sliders").append(row);
    const slider = row.querySelector("input");
    slider.addEventListener("input", () => {
      state.latents.forEach((latent) => { latent[d] = Number(slider.value); });
      setSlider(slider, Number(slider.value));
      render();
    });
    return slider;
  });
}

/** What the page calls class id `c`: its name from the facts (older exports have none), else the id. */
function className(c) {
  return facts.class_names?.[c] ?? String(c);
}

function setSlider(slider, value) {
  slider.value = String(value);
  slider.nextElementSibling.textContent = value.toFixed(2);
}

/** A latent from the facts' prior: a Gaussian mixture (N(0, I) is one component), or N(0, I) when
 *  the model has none (an autoencoder: its latents need not look like that). */
function drawLatent(rand) {
  const prior = facts.prior;
  if (!prior) return Array.from({ length: dims }, () => gaussian(rand));
  const top = Math.max(...prior.logits), weights = prior.logits.map((logit) => Math.exp(logit - top));
  let u = rand() * weights.reduce((a, b) => a + b), k = 0;
  while (k < weights.length - 1 && (u -= weights[k]) >= 0) k++;
  return prior.loc[k].map((loc, d) => loc + prior.scale[k][d] * gaussian(rand));
}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function showError(err) {
  canvas.dataset.ready = "error";
  $("status").textContent = `Error: ${err.message ?? err}`;
  $("status").classList.add("error");
}
