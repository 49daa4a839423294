// The exported encoder and decoder together in the page, as export.runtime.load_model has them in
// Python: encode, decode, reconstruct, restyle, and the importance weights and outlier score of an
// image, computed from the two networks' outputs and the facts' prior (scores.js).
//
// Every ONNX Runtime call of the page goes through `exclusive`, one at a time: the decoder session
// is shared by the sliders' grid and the drawing, and a session runs one call at a time.

import * as S from "./scores.js";

const CHUNK = 128; // latents per decoder call while scoring: k x classes of them may be a thousand

let queue = Promise.resolve();

/** Runs `fn` (async) after every call queued before it; resolves to its result. */
export function exclusive(fn) {
  const result = queue.then(fn);
  queue = result.catch(() => {});
  return result;
}

/** The run's encoder (/encoder.onnx and its facts /encoder.json) beside `decoder`, or null when the
 *  run has none (/parts.json says which; the page then shows the decoder alone). */
export async function loadModel(ort, decoder, decoderFacts) {
  if (!(await getJSON("/parts.json")).includes("encoder")) return null;
  const facts = await getJSON("/encoder.json");
  let deflate;
  try {
    deflate = (await import("/pako/pako.esm.mjs")).deflate;
  } catch (err) {
    throw new Error(`Could not load pako from /pako/ (${err.message}): run npm ci --prefix apps/web.`);
  }
  const encoder = await ort.InferenceSession.create("/encoder.onnx", { executionProviders: ["wasm"] });
  return new Model(ort, encoder, decoder, facts, decoderFacts, deflate);
}

export class Model {
  constructor(ort, encoder, decoder, facts, decoderFacts, deflate) {
    Object.assign(this, { ort, encoder, decoder, facts, deflate });
    this.shape = facts.input_shape;
    this.size = this.shape.reduce((a, b) => a * b);
    this.dims = facts.latent_dim;
    this.classes = facts.num_classes || 0;
    this.likelihood = facts.likelihood?.name ?? null;
    this.latentInput = decoderFacts.inputs[0];
    const outputs = facts.outputs, names = facts.inputs.map((spec) => spec.name);
    // What export.runtime decodes as "the posterior mean": loc, else an autoencoder's z, a VQ-VAE's codes.
    this.latentOutput = ["loc", "z", "codes"].find((name) => outputs.includes(name));
    this.noiseInput = facts.inputs.find((spec) => spec.name === "noise");
    this.likelihoodOutputs = S.LIKELIHOOD_OUTPUTS[this.likelihood];
    const gaussian = outputs.includes("loc") && outputs.includes("scale") && !names.includes("noise");
    this.scorable = gaussian && facts.prior?.kind === "gaussian_mixture" && Boolean(this.likelihoodOutputs);
  }

  /** Why the page cannot score this model's images, or null when it can. */
  get unscorable() {
    if (this.scorable) return null;
    if (!this.likelihoodOutputs) return `the page has no log-likelihood for a ${this.likelihood} model`;
    return `the page scores a Gaussian q(z|x) with a Gaussian-mixture prior, not this ${this.facts.variant}'s latents`;
  }

  /** The encoder's outputs (ort Tensors by name) for `n` images (n*H*W*C values) and their labels. */
  encode(x, labels) {
    const n = x.length / this.size, feeds = { x: new this.ort.Tensor("float32", Float32Array.from(x), [n, ...this.shape]) };
    if (this.classes) feeds.labels = this.labelTensor(labels);
    if (this.noiseInput) feeds.noise = new this.ort.Tensor("float32", new Float32Array(n * this.dims), [n, this.dims]);
    return exclusive(() => this.encoder.run(feeds));
  }

  /** The mean images of the decoder for latents (an ort Tensor) and their labels. */
  async decode(latents, labels) {
    return (await this.decodeOutputs(latents, labels, ["mean"])).mean.data;
  }

  /** The decoder's `outputs` (ort Tensors by name) for latents (an ort Tensor) and their labels. */
  decodeOutputs(latents, labels, outputs) {
    const feeds = { [this.latentInput.name]: latents };
    if (this.classes) feeds.labels = this.labelTensor(labels);
    return exclusive(() => this.decoder.run(feeds, outputs));
  }

  labelTensor(labels) {
    return new this.ort.Tensor("int32", Int32Array.from(labels), [labels.length]);
  }

  /** The images decoded from `x`'s posterior mean given `label`, once per label of `to` (default:
   *  every class of a conditional model, else the reconstruction alone): restyle and reconstruct. */
  async restyle(x, label = null, to = null) {
    const latent = (await this.encode(x, [label]))[this.latentOutput];
    to = to ?? (this.classes ? Array.from({ length: this.classes }, (_, c) => c) : [null]);
    const per = latent.data.length, repeated = new latent.data.constructor(per * to.length);
    to.forEach((_, i) => repeated.set(latent.data, i * per));
    return this.decode(new this.ort.Tensor(latent.type, repeated, [to.length, ...latent.dims.slice(1)]), to);
  }

  /** log w = log p(x|z) + log p(z) - log q(z|x) of the prepared image `x` for z = loc + scale * noise_i,
   *  one row of k per label of `labels` (class ids, or [null] for an unconditional model). */
  async logWeights(x, labels, noise) {
    const { loc, scale } = await this.encode(repeat(x, labels.length), labels);
    const k = noise.length, d = this.dims, zs = [], zLabels = [];
    labels.forEach((label, row) => {
      const m = Array.from(loc.data.subarray(row * d, (row + 1) * d));
      const s = Array.from(scale.data.subarray(row * d, (row + 1) * d));
      for (const eps of noise) {
        zs.push({ z: eps.map((e, j) => m[j] + s[j] * e), m, s });
        zLabels.push(label);
      }
    });
    const weights = [];
    for (let start = 0; start < zs.length; start += CHUNK) {
      const part = zs.slice(start, start + CHUNK);
      const flat = Float32Array.from(part.flatMap(({ z }) => z));
      const tensors = await this.decodeOutputs(new this.ort.Tensor("float32", flat, [part.length, d]),
                                               zLabels.slice(start, start + CHUNK), this.likelihoodOutputs);
      const outputs = Object.fromEntries(Object.entries(tensors).map(([name, tensor]) => [name, tensor.data]));
      const components = tensors.mixture_logits?.dims.at(-1) ?? 1, channels = this.shape[2];
      part.forEach(({ z, m, s }, i) => weights.push(
        S.logLikelihood(x, outputs, i, this.facts.likelihood, channels, components)
        + S.logPrior(this.facts.prior, z) - S.logNormal(z, m, s)));
    }
    return labels.map((_, row) => weights.slice(row * k, (row + 1) * k));
  }

  /** The outlier score of `x` (H*W*C values in [0, 1]) with standard normal `noise` [k][latent_dim],
   *  as export.runtime computes it: the image thresholded as its likelihood scores it; NLL_k in nats
   *  (for a conditional model without `label`, log p(x) = logsumexp_c log p(x|c) - log C); the
   *  "complexity" score NLL_k / ln 2 - L(x) in bits; its verdict against the facts' quantiles; and
   *  the class whose negative ELBO (the mean of -log w) is lowest. */
  async score(x, noise, label = null) {
    if (!this.scorable) throw new Error(`Cannot score this model: ${this.unscorable}.`);
    const prepared = S.prepare(x, this.likelihood);
    const labels = !this.classes ? [null] : label === null ? [...Array(this.classes).keys()] : [label];
    const logWeights = await this.logWeights(prepared, labels, noise);
    const bounds = logWeights.map(S.logMeanExp), negElbo = logWeights.map((row) => -S.mean(row));
    const nll = -(S.logSumExp(bounds) - Math.log(bounds.length));
    const bits = S.pngBits(prepared, this.shape, this.deflate), score = nll / Math.LN2 - bits;
    const best = labels[negElbo.indexOf(Math.min(...negElbo))];
    const quantiles = this.facts.outlier?.quantiles;
    return { labels, logWeights, negElbo, nll, bits, score, label: best, k: noise.length,
             verdict: quantiles ? S.verdict(score, quantiles) : null,
             percentile: quantiles ? S.percentile(score, quantiles) : null };
  }
}

export async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${response.statusText}`);
  return response.json();
}

function repeat(values, times) {
  const out = new Float32Array(values.length * times);
  for (let i = 0; i < times; i++) out.set(values, i * values.length);
  return out;
}
