// The drawing panel: a pad to draw on (mouse, pen or touch, by pointer events), an upload button,
// and a click on an image of the decoder's grid, each of which gives the model an image; after each
// stroke the page shows what the model sees (the pad averaged down to H x W), its reconstruction,
// its outlier score with a verdict calibrated on the test images (the facts' `outlier`), and for a
// conditional model the image restyled as every class.
//
// For tests: window.demo.drawing has `state` (input: the H*W*C values the model saw; label; score;
// reconstruction; restyled), `updates` (a count), `noise` (the [k][latent_dim] normals of the live
// score); #draw-panel has data-ready="true" when idle. window.demo.score({x, noise, label}) and
// window.demo.restyle({x, label}) compute on images of your own.

import * as S from "./scores.js";

const PAD_PX = 280; // CSS pixels of the pad's larger side; its canvas is an integer multiple of H x W
const STROKE = 0.09; // pen width as a share of the image's side: 2.5 pixels of 28, as MNIST's strokes
const GREY_INK = "#fff", GREY_PAPER = "#000"; // digits are light on dark, as the model saw them
const NOISE_SEED = 0; // the live score's normals: the same drawing always gets the same score

const $ = (id) => document.getElementById(id);

/** Builds the panel for `model` (model.js) and hooks it into `demo` (demo.js's window.demo). */
export function startDrawing(model, demo, className) {
  const [height, width, channels] = model.shape;
  const factor = Math.max(1, Math.round(PAD_PX / Math.max(height, width)));
  const pad = $("pad"), context = pad.getContext("2d", { willReadFrequently: true });
  const grey = channels === 1;
  const k = model.facts.outlier?.k ?? 1;
  const rand = S.mulberry32(NOISE_SEED), noise = Array.from({ length: k }, () => S.normals(rand, model.dims));
  const state = { input: null, label: null, score: null, reconstruction: null, restyled: null, source: null };
  const drawing = { state, updates: 0, noise, factor, stroke: STROKE * Math.max(height, width) * factor };
  const panel = $("draw-panel");
  let dirty = false, running = null, last = null, generation = 0; // clear() starts a new generation

  Object.assign(demo, {
    drawing,
    score: ({ x, noise: given, label = null }) => model.score(Float32Array.from(x), given, label),
    restyle: async ({ x, label = null }) => Array.from(await model.restyle(Float32Array.from(x), label)),
    update,
  });
  buildPanel();
  clear();
  return drawing;

  function buildPanel() {
    pad.width = width * factor;
    pad.height = height * factor;
    pad.style.width = `${pad.width * PAD_PX / Math.max(pad.width, pad.height)}px`;
    const digits = model.facts.class_names?.join("") === "0123456789";
    $("draw-title").textContent = !grey ? "Restyle an image" : digits ? "Draw a digit" : "Draw an image";
    const grid = $("app").hidden ? "" : ", or click an image of the grid";
    $("draw-hint").textContent = grey ? `Draw with the mouse, a pen or a finger; or upload an image${grid}.`
      : `Upload an image${grid}${model.classes ? ": it is restyled as every class" : ""}.`;
    panel.style.setProperty("--view", `${Math.max(112, 2 * width)}px`); // the small images' CSS widths
    panel.style.setProperty("--cell", `${Math.max(72, 1.5 * width)}px`);
    pad.classList.toggle("drawable", grey);
    pad.parentElement.classList.toggle("guide", grey && height === 28 && width === 28);
    if (grey) {
      pad.addEventListener("pointerdown", down);
      pad.addEventListener("pointermove", move);
      pad.addEventListener("pointerup", up);
      pad.addEventListener("pointercancel", up);
    }
    $("clear").addEventListener("click", clear);
    $("upload").addEventListener("change", upload);
    $("grid").addEventListener("click", pick);
    if (model.classes) {
      const select = $("drew");
      if (!model.scorable) select.remove(0); // "auto" needs the negative ELBO of each class
      for (let c = 0; c < model.classes; c++) select.add(new Option(className(c), String(c)));
      select.addEventListener("change", () => state.source && update());
      $("drew-label").textContent = grey ? "I drew a" : "This is";
      $("drew-picker").hidden = false;
      buildRestyle();
    }
    $("score-block").hidden = !model.scorable;
    if (!model.scorable) $("score-missing").textContent = `No outlier score: ${model.unscorable}.`;
    panel.hidden = false;
  }

  function buildRestyle() {
    const row = $("restyle");
    for (let c = 0; c < model.classes; c++) {
      const figure = document.createElement("figure");
      figure.innerHTML = `<canvas id="restyle-${c}"></canvas><figcaption></figcaption>`;
      figure.querySelector("figcaption").textContent = className(c);
      row.append(figure);
    }
    $("restyle-block").hidden = false;
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
  }

  function down(event) {
    if (event.button !== 0) return;
    pad.setPointerCapture(event.pointerId);
    last = point(event);
    context.fillStyle = GREY_INK; // a tap leaves a dot
    context.beginPath();
    context.arc(...last, drawing.stroke / 2, 0, 2 * Math.PI);
    context.fill();
    event.preventDefault();
  }

  function move(event) {
    if (last === null) return;
    const points = (event.getCoalescedEvents?.() ?? []).map(point);
    if (!points.length) points.push(point(event));
    stroke([last, ...points]);
    last = points[points.length - 1];
  }

  function up() {
    if (last === null) return;
    last = null;
    state.source = state.source ?? "drawing";
    update();
  }

  function stroke(points) {
    Object.assign(context, { strokeStyle: GREY_INK, lineWidth: drawing.stroke, lineCap: "round", lineJoin: "round" });
    context.beginPath();
    context.moveTo(...points[0]);
    for (const p of points.slice(1)) context.lineTo(...p);
    context.stroke();
  }

  function clear() {
    generation += 1; // an update under way when the pad is cleared shows nothing
    context.fillStyle = grey ? GREY_PAPER : "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
    Object.assign(state, { input: null, label: null, score: null, reconstruction: null, restyled: null, source: null });
    for (const canvas of panel.querySelectorAll(".results canvas, #restyle canvas")) {
      canvas.width = width;
      canvas.height = height;
      canvas.getContext("2d").clearRect(0, 0, width, height);
    }
    $("verdict").textContent = grey ? "Draw something." : "Upload or pick an image.";
    $("score-detail").textContent = "";
    $("verdict").className = "";
    panel.dataset.ready = "true";
  }

  /** Puts an image file, composited on white and centre-cropped to the model's aspect, on the pad. */
  async function upload() {
    const file = $("upload").files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(bitmap.width / width, bitmap.height / height);
      const [w, h] = [width * scale, height * scale];
      context.fillStyle = "#fff";
      context.fillRect(0, 0, pad.width, pad.height);
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, (bitmap.width - w) / 2, (bitmap.height - h) / 2, w, h, 0, 0, pad.width, pad.height);
      bitmap.close();
      state.source = `upload ${file.name}`;
      $("upload").value = "";
      update();
    } catch (err) {
      showError(new Error(`Cannot read ${file.name} as an image (${err.message ?? err}).`));
    }
  }

  /** Puts the grid image under the click on the pad, pixel for pixel (its 8-bit levels). */
  function pick(event) {
    const { cols, pad: gap, width: w, height: h } = demo.layout ?? {};
    const images = demo.images;
    if (!images || !cols) return;
    const box = event.currentTarget.getBoundingClientRect();
    const x = (event.clientX - box.left) / box.width * event.currentTarget.width;
    const y = (event.clientY - box.top) / box.height * event.currentTarget.height;
    const col = Math.floor((x - gap) / (w + gap)), row = Math.floor((y - gap) / (h + gap));
    const index = row * cols + col;
    if (col < 0 || col >= cols || index < 0 || index >= images.count) return;
    load(images.values.subarray(index * model.size, (index + 1) * model.size));
    state.source = `grid image ${index}`;
    update();
  }

  /** Puts H*W*C values in [0, 1] on the pad, each pixel a factor x factor block. */
  function load(values) {
    const small = new OffscreenCanvas(width, height), image = new ImageData(width, height);
    paintInto(image.data, values);
    small.getContext("2d").putImageData(image, 0, 0);
    context.imageSmoothingEnabled = false;
    context.drawImage(small, 0, 0, pad.width, pad.height);
    context.imageSmoothingEnabled = true;
  }

  /** Runs the model on the pad; strokes that end meanwhile run it once more, on the latest pad. */
  function update() {
    dirty = true;
    panel.dataset.ready = "false";
    if (!running) running = loop();
    return running;
  }

  async function loop() {
    try {
      while (dirty) {
        dirty = false;
        await analyse();
      }
      panel.dataset.ready = "true";
    } catch (err) {
      showError(err);
      throw err;
    } finally {
      running = null;
    }
  }

  /** Shows what the model sees at once, then (an explicit class first, as "auto" needs the scores
   *  to pick one) the reconstruction and restyles, and the score. */
  async function analyse() {
    const started = performance.now(), current = generation;
    const x = S.downsample(context.getImageData(0, 0, pad.width, pad.height).data, model.shape, factor);
    show($("input-view"), x);
    const auto = model.classes > 0 && $("drew").value === "auto"; // offered only when the page can score
    let label = model.classes && !auto ? Number($("drew").value) : null;
    let score = auto ? await model.score(x, noise, null) : null;
    if (auto) label = score.label;
    const images = await model.restyle(x, label);
    if (current !== generation) return;
    const reconstruction = images.subarray(model.classes ? label * model.size : 0, (model.classes ? label + 1 : 1) * model.size);
    show($("reconstruction"), reconstruction);
    for (let c = 0; c < model.classes; c++) {
      show($(`restyle-${c}`), images.subarray(c * model.size, (c + 1) * model.size));
      $(`restyle-${c}`).parentElement.classList.toggle("chosen", c === label);
    }
    if (!auto && model.scorable) score = await model.score(x, noise, label);
    if (current !== generation) return;
    if (score) showScore(score, auto ? label : null);
    Object.assign(state, { input: Array.from(x), label, score, reconstruction: Array.from(reconstruction),
                           restyled: model.classes ? Array.from(images) : null });
    drawing.updates += 1;
    const as = model.classes ? ` as ${auto ? "auto: " : ""}${className(label)}` : "";
    $("draw-status").textContent = `${state.source ?? "pad"}${as} in ${(performance.now() - started).toFixed(0)} ms`;
  }

  function showScore(score, closestLabel) {
    const outlier = model.facts.outlier, verdict = $("verdict");
    verdict.textContent = score.verdict ? capital(score.verdict) : "No calibration: this export scored no test images.";
    verdict.className = score.verdict ? score.verdict.split(":")[0].replace(/ /g, "-") : "";
    const where = score.verdict ? `, ${percentileWords(score.percentile, outlier)}` : "";
    const closest = closestLabel !== null ? `; closest class ${className(closestLabel)}` : "";
    $("score-detail").textContent = `Outlier score ${score.score.toFixed(1)} bits${where}. ` +
      `−log p(x) ≈ ${score.nll.toFixed(2)} nats (k = ${score.k}), PNG ${score.bits} bits${closest}.`;
  }

  function show(canvas, values) {
    const image = new ImageData(width, height);
    paintInto(image.data, values);
    canvas.getContext("2d").putImageData(image, 0, 0);
  }

  /** Writes H*W*C values in [0, 1] as opaque 0-255 RGBA (grey repeated). */
  function paintInto(data, values) {
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) {
        data[i * 4 + c] = Math.round(255 * Math.min(1, Math.max(0, values[i * channels + (grey ? 0 : c)])));
      }
      data[i * 4 + 3] = 255;
    }
  }

  function showError(err) {
    panel.dataset.ready = "error";
    $("draw-status").textContent = `Error: ${err.message ?? err}`;
    $("draw-status").classList.add("error");
  }
}

/** "percentile 93 of the 500 test images", or beyond the calibrated ends. */
function percentileWords(value, { quantiles, images, split }) {
  const points = Object.keys(quantiles).map(Number), of = `of the ${images.toLocaleString("en")} ${split} images`;
  if (value <= Math.min(...points)) return `at or below percentile ${Math.min(...points)} ${of}`;
  if (value >= Math.max(...points)) return `at or above percentile ${Math.max(...points)} ${of}`;
  return `percentile ${value.toFixed(value < 99 ? 0 : 1)} ${of}`;
}

function capital(text) {
  return text[0].toUpperCase() + text.slice(1);
}
