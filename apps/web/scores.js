// The numbers of export.runtime's scores, in the page: the same formulas in float64, so that the
// outlier score of a drawing is the one `export.runtime.load_model(...)` gives for the same image and
// the same noise. Pure functions of arrays (no ONNX Runtime, no DOM); `pngBits` takes pako's
// `deflate`, whose level-9 output is byte for byte Python's zlib.compress(raw, 9).

const LOG_2PI = Math.log(2 * Math.PI);
const PNG_OVERHEAD = 57; // bytes of a PNG besides its zlib stream: signature, IHDR, IDAT and IEND framing

/** log(sum(exp(values))), stable for large or -Infinity values. */
export function logSumExp(values) {
  const top = Math.max(...values);
  if (top === -Infinity) return -Infinity;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - top);
  return top + Math.log(sum);
}

/** log(mean(exp(values))): the k-sample bound from k log-weights. */
export function logMeanExp(values) {
  return logSumExp(values) - Math.log(values.length);
}

export function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** log(1 + exp(l)) without overflow. */
export function softplus(l) {
  return Math.max(l, 0) + Math.log1p(Math.exp(-Math.abs(l)));
}

/** The decoder outputs each likelihood needs to score an image (export.runtime.densities). */
export const LIKELIHOOD_OUTPUTS = {
  bernoulli: ["logits"], gaussian: ["mean"], gaussian_pixel: ["mean", "scale"],
  logistic: ["mixture_logits", "loc", "scale"], logistic_mixture: ["mixture_logits", "loc", "scale"],
};

/** log p(x|z) in nats of the image `x` (H*W*C values, as its likelihood scores it) under image `i`
 *  of the decoder's `outputs` ({name: the whole batch's values}); `likelihood` is the facts'
 *  {"name", "scale"?}, `channels` C, `components` K of a logistic mixture. */
export function logLikelihood(x, outputs, i, likelihood, channels, components = 1) {
  const n = x.length, name = likelihood.name;
  let total = 0;
  if (name === "bernoulli") {
    const logits = outputs.logits.subarray(i * n, (i + 1) * n);
    for (let p = 0; p < n; p++) total += x[p] * logits[p] - softplus(logits[p]);
  } else if (name === "gaussian" || name === "gaussian_pixel") {
    const mean = outputs.mean.subarray(i * n, (i + 1) * n);
    for (let p = 0; p < n; p++) {
      total += logNormal1(x[p], mean[p], name === "gaussian" ? likelihood.scale[p % channels] : outputs.scale[i * n + p]);
    }
  } else if (name === "logistic" || name === "logistic_mixture") {
    const pixels = n / channels, perImage = pixels * components * channels;
    for (let p = 0; p < pixels; p++) {
      const logits = outputs.mixture_logits.subarray((i * pixels + p) * components, (i * pixels + p + 1) * components);
      const start = i * perImage + p * components * channels, norm = logSumExp(logits);
      const terms = Array.from(logits, (logit, k) => {
        let sum = logit - norm;
        for (let c = 0; c < channels; c++) {
          const at = start + k * channels + c;
          sum += logisticMass(x[p * channels + c], outputs.loc[at], outputs.scale[at]);
        }
        return sum;
      });
      total += logSumExp(terms);
    }
  } else {
    throw new Error(`No log-likelihood for a ${name} model.`);
  }
  return total;
}

/** log P(level) of a discretized logistic over the 256 levels (zoo.likelihoods.DiscretizedLogisticMixture),
 *  the outer bins open: with a = (level + 1/2 - 255 loc) / (255 scale),
 *  log sigmoid(a) + log sigmoid(-(a - 1/(255 scale))) + log(1 - exp(-1/(255 scale))). */
function logisticMass(value, loc, scale) {
  const top = 255, level = roundHalfEven(Math.min(1, Math.max(0, value)) * top), inverse = 1 / (scale * top);
  const a = (level + 0.5 - loc * top) * inverse;
  const below = -softplus(-a), above = -softplus(a - inverse);
  if (level < 0.5) return below;
  if (level > top - 0.5) return above;
  return below + above + Math.log(-Math.expm1(-inverse));
}

/** Rounds to the nearest integer, halves to even, as numpy's round does. */
export function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** log N(v; m, s) of one number. */
function logNormal1(v, m, s) {
  const u = (v - m) / s;
  return -0.5 * u * u - Math.log(s) - 0.5 * LOG_2PI;
}

/** log N(v; m, s) of a diagonal Gaussian, summed over the dimensions (arrays of equal length). */
export function logNormal(v, m, s) {
  let total = 0;
  for (let d = 0; d < v.length; d++) total += logNormal1(v[d], m[d], s[d]);
  return total;
}

/** log p(z) under the facts' prior {"kind": "gaussian_mixture", logits [K], loc [K][D], scale [K][D]}. */
export function logPrior(prior, z) {
  if (prior?.kind !== "gaussian_mixture") throw new Error(`No log-density for a ${prior?.kind} prior.`);
  const norm = logSumExp(prior.logits);
  return logSumExp(prior.logits.map((logit, k) => logit - norm + logNormal(z, prior.loc[k], prior.scale[k])));
}

/** The image as its likelihood scores it: thresholded at 0.5 for a Bernoulli model. */
export function prepare(x, likelihood) {
  return likelihood === "bernoulli" ? Float32Array.from(x, (v) => (v > 0.5 ? 1 : 0)) : Float32Array.from(x);
}

/** L(x), the bits of the image as a PNG: 8 * (57 + the zlib stream's bytes at level 9) of the
 *  rows of uint8 round(255 * clip(x, 0, 1)), each after a 0 filter byte. x: H*W*C values. */
export function pngBits(x, [height, width, channels], deflate) {
  const stride = width * channels, raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < stride; i++) {
      raw[y * (stride + 1) + 1 + i] = roundHalfEven(255 * Math.min(1, Math.max(0, x[y * stride + i])));
    }
  }
  return 8 * (PNG_OVERHEAD + deflate(raw, { level: 9 }).length);
}

/** The verdicts of export.runtime's Model.verdict: the first whose percentile's quantile the score
 *  does not exceed. */
export const VERDICTS = [[90, "typical: like the test images"], [99, "unusual: above 90% of the test images"],
                         [99.9, "rare: above 99% of the test images"], [Infinity, "an outlier: above 99.9% of the test images"]];

/** The plain-words verdict of an outlier score against the facts' `outlier.quantiles`
 *  ({"90": q90, ...}, percentile: score). */
export function verdict(score, quantiles) {
  return VERDICTS.find(([level]) => level === Infinity || score <= quantiles[String(level)])[1];
}

/** Where a score falls among the test images' (0-100): linear between the calibrated quantiles,
 *  the lowest or highest percentile beyond them, as numpy.interp gives it. */
export function percentile(score, quantiles) {
  const points = Object.keys(quantiles).map(Number).sort((a, b) => a - b);
  const values = points.map((p) => quantiles[String(p)]);
  if (score <= values[0]) return points[0];
  if (score >= values[values.length - 1]) return points[points.length - 1];
  const i = values.findIndex((v, j) => score >= v && score < values[j + 1]);
  return points[i] + (points[i + 1] - points[i]) * (score - values[i]) / (values[i + 1] - values[i]);
}

/** A standard normal number from a generator of uniforms in [0, 1) (Box-Muller). */
export function gaussian(rand) {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** `count` standard normal numbers from `rand`. */
export function normals(rand, count) {
  return Array.from({ length: count }, () => gaussian(rand));
}

/** A small seeded generator of uniforms in [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The H*W*C pixels in [0, 1] of RGBA `data` (W*f by H*f, as getImageData gives it): each pixel the
 *  mean of its f by f block (the area average); grey by ITU-R 601 luma, as zoo.data reads RGB, except
 *  that grey pixels (R = G = B) keep their value. */
export function downsample(data, [height, width, channels], factor) {
  const out = new Float32Array(height * width * channels), rowLength = width * factor * 4;
  const area = factor * factor * 255;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sums = [0, 0, 0];
      for (let dy = 0; dy < factor; dy++) {
        let i = (y * factor + dy) * rowLength + x * factor * 4;
        for (let dx = 0; dx < factor; dx++, i += 4) {
          const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
          if (channels === 3) {
            sums[0] += r; sums[1] += g; sums[2] += b;
          } else {
            sums[0] += r === g && g === b ? r : 0.2989 * r + 0.587 * g + 0.114 * b;
          }
        }
      }
      for (let c = 0; c < channels; c++) out[(y * width + x) * channels + c] = sums[c] / area;
    }
  }
  return out;
}
