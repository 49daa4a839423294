"""A whole exported model, encoder and decoder, with numpy only: encode, decode, reconstruct,
restyle, and score images by their likelihood.

    model = load_model("runs/cvae")                       # encoder.onnx + decoder.onnx
    nll = model.score(x, k=100)                            # -log p(x) in nats, importance-sampled
    odd = model.outlier_score(x)                           # complexity-corrected, higher = more anomalous
    print(model.verdict(odd))                              # plain words from the test set's quantiles
    sevens = model.restyle(x, labels=y, to_labels=7)       # the same handwriting, another digit

Scores follow `zoo.evaluate`: one importance weight per draw z ~ q(z|x),

    log w = log p(x|z) + log p(z) - log q(z|x),

computed here from the encoder's q(z|x), the decoder's likelihood parameters and the prior in the
facts (`export.runtime.densities`). The mean of log w over draws is the ELBO; the log-mean-exp of k
draws is the k-sample bound on log p(x), as `log_weights` gives it in the SavedModel.
"""

import math
import os

import numpy as np

from export.runtime.complexity import corrected
from export.runtime.decoder import load_decoder
from export.runtime.densities import diagonal_normal, log_likelihood, log_mean_exp, logsumexp, prior_log_prob
from export.runtime.encoder import load_encoder

EXTENSIONS = ("onnx", "tflite")
OUTLIER_K = 16  # importance samples of the outlier score (per class when a conditional model's label is unknown)
METHODS = ("complexity", "nll")
VERDICTS = ((90, "typical: like the test images"), (99, "unusual: above 90% of the test images"),
            (99.9, "rare: above 99% of the test images"), (math.inf, "an outlier: above 99.9% of the test images"))


def load_model(folder, format="onnx", providers=None):
    """Loads `encoder.<format>` and `decoder.<format>` from `folder` (a run directory exported with
    `python -m export RUN_DIR --parts decoder,encoder`, or a pretrained bundle).

    Args:
        folder: the folder that holds the files.
        format: "onnx" or "tflite" (fp32).
        providers: ONNX Runtime execution providers (see `load_decoder`).

    Raises:
        ValueError: an unknown format, a missing file (the message says how to export it), or a
            file that is not an encoder or decoder.
    """
    if format not in EXTENSIONS:
        raise ValueError(f"Unknown format '{format}': expected one of {', '.join(EXTENSIONS)}.")
    paths = [os.path.join(os.fspath(folder), f"{part}.{format}") for part in ("encoder", "decoder")]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} not found: export the run's encoder and decoder with "
                         f"`python -m export {folder} --parts decoder,encoder`.")
    return Model(load_encoder(paths[0], providers), load_decoder(paths[1], providers))


class Model:
    """An exported encoder and decoder used together.

    Attributes:
        encoder, decoder: the `Encoder` and `Decoder`.
        variant, latent_dim, num_classes, class_names, input_shape: from the facts.
        facts: the encoder's facts, with `outlier`: the test set's quantiles of the default
            outlier score (or None when the export had no test split).
    """

    def __init__(self, encoder, decoder):
        if (encoder.variant, encoder.latent_dim, encoder.num_classes) != (decoder.variant, decoder.latent_dim,
                                                                          decoder.num_classes):
            raise ValueError(f"{encoder.path} and {decoder.path} are not from the same model: re-export the run.")
        self.encoder, self.decoder, self.facts = encoder, decoder, encoder.facts
        self.variant, self.latent_dim, self.num_classes = encoder.variant, encoder.latent_dim, encoder.num_classes
        self.class_names, self.input_shape = decoder.class_names, encoder.input_shape
        self.batch_size = decoder.batch_size

    def encode(self, x, labels=None):
        """The encoder's outputs for images `x` `[B, H, W, C]` in [0, 1] (see `Encoder.encode`)."""
        return self.encoder.encode(x, labels)

    def decode(self, z, labels=None):
        """Mean images for latents (or codes) `z` (see `Decoder.decode`)."""
        return self.decoder.decode(z, labels)

    def reconstruct(self, x, labels=None):
        """Mean images decoded from the posterior mean of `x` (z for an autoencoder, the codes of a VQ-VAE)."""
        return self.decode(self._latent(self.encode(x, labels)), labels)

    def restyle(self, x, labels, to_labels):
        """`x`, encoded with its `labels`, decoded with `to_labels` (one id for all, or one per image):
        what the image keeps (style) with what the label sets (class) changed.

        Raises:
            ValueError: an unconditional model, or bad labels.
        """
        if not self.num_classes:
            raise ValueError(f"restyle needs a conditional model; this '{self.variant}' model has no classes.")
        z = self._latent(self.encode(x, labels))
        return self.decode(z, np.broadcast_to(to_labels, len(z)) if np.ndim(to_labels) == 0 else to_labels)

    def log_weights(self, x, labels=None, k=1, seed=None, noise=None):
        """`[B, k]` float64 log importance weights, log p(x, z) - log q(z|x), one per draw z ~ q(z|x).

        Args:
            x: images `[B, H, W, C]` in [0, 1], as the likelihood scores them.
            labels: class ids `[B]` of a conditional model.
            k: draws per image.
            seed: seeds numpy's generator for the noise.
            noise: standard-normal `[k, B, latent_dim]` instead of drawn noise (for checks across runtimes).

        Raises:
            ValueError: a model without a Gaussian latent and prior (an autoencoder, a VQ-VAE), or bad inputs.
        """
        if self.facts["prior"] is None or not {"loc", "scale"} <= set(self.encoder.outputs):
            raise ValueError(f"This '{self.variant}' model has no likelihood to score with: it needs a Gaussian "
                             "q(z|x) and prior (an autoencoder and a VQ-VAE have none).")
        x = np.asarray(x)
        noise = np.random.default_rng(seed).standard_normal((k, len(x), self.latent_dim)) if noise is None else noise
        noise = np.asarray(noise, np.float64)
        if noise.shape != (k, len(x), self.latent_dim):
            raise ValueError(f"Expected noise of shape {(k, len(x), self.latent_dim)}, received {noise.shape}.")
        step, labels = max(1, self.batch_size // k), None if labels is None else np.asarray(labels)
        parts = [self._log_weights(x[i:i + step], None if labels is None else labels[i:i + step], noise[:, i:i + step])
                 for i in range(0, len(x), step)]
        return np.concatenate(parts) if parts else np.zeros((0, k))

    def score(self, x, labels=None, k=1, seed=0):
        """`[B]` nats: the negative ELBO (k = 1) or the k-sample importance-sampled -log p(x).

        A conditional model without `labels` scores p(x) = mean over classes of p(x|c), with k
        draws per class.
        """
        if self.num_classes and labels is None:
            seeds = [None if seed is None else seed + c for c in range(self.num_classes)]
            per_class = [log_mean_exp(self.log_weights(x, np.full(len(x), c, np.int32), k, seeds[c]))
                         for c in range(self.num_classes)]
            return -(logsumexp(np.stack(per_class, -1), -1) - math.log(self.num_classes))
        return -log_mean_exp(self.log_weights(x, labels, k, seed=seed))

    def outlier_score(self, x, labels=None, method="complexity", k=None, seed=0):
        """`[B]` scores, higher for images less like the training data.

        Args:
            x: images in [0, 1]; a Bernoulli model scores them thresholded at 0.5.
            method: "complexity" (default): -log2 p(x) - L(x) in bits, L the image's PNG size
                (Serrà et al. 2020, `export.runtime.complexity`), which stops simple images
                from looking typical; "nll": -log p(x) in nats.
            k: importance samples (default: the facts' calibration k, else `OUTLIER_K`).
        """
        if method not in METHODS:
            raise ValueError(f"Unknown outlier score '{method}': expected one of {', '.join(METHODS)}.")
        return self.outlier_scores(x, labels, k, seed)[method]

    def outlier_scores(self, x, labels=None, k=None, seed=0):
        """Every score of `outlier_score` from one importance-sampled -log p(x): `{method: [B]}`."""
        x = self.prepared(x)
        nll = self.score(x, labels, k or (self.facts.get("outlier") or {}).get("k", OUTLIER_K), seed)
        return {"complexity": corrected(nll, x), "nll": nll}

    def prepared(self, x):
        """Images as the likelihood scores them: thresholded at 0.5 for a Bernoulli model."""
        x = np.asarray(x, np.float32)
        return (x > 0.5).astype(np.float32) if self.facts["likelihood"]["name"] == "bernoulli" else x

    def percentile(self, scores):
        """Where default outlier scores fall among the test images' (0-100, interpolated between
        the calibrated quantiles)."""
        points, values = self._quantiles()
        return np.interp(np.asarray(scores, np.float64), values, points)

    def verdict(self, scores):
        """A plain-words verdict per default outlier score, from the test set's quantiles."""
        quantiles = dict(zip(*self._quantiles()))
        return [next(words for level, words in VERDICTS if level == math.inf or score <= quantiles[level])
                for score in np.asarray(scores, np.float64).ravel()]

    def _quantiles(self):
        outlier = self.facts.get("outlier")
        if not outlier:
            raise ValueError(f"{self.encoder.path} has no outlier calibration (its export had no test split).")
        points = sorted(float(p) for p in outlier["quantiles"])
        return points, [outlier["quantiles"][_key(p)] for p in points]

    def _latent(self, encoded):
        return next(encoded[name] for name in ("loc", "z", "codes") if name in encoded)

    def _log_weights(self, x, labels, noise):
        k, b = noise.shape[:2]
        draws = []
        if self.encoder.takes_noise:  # hierarchical: each draw runs q top-down with its own noise
            for eps in noise:
                out = self.encoder.encode(x, labels, eps.astype(np.float32))
                draws.append((out["z"], out["loc"], out["scale"]))
        else:
            out = self.encode(x, labels)
            loc, scale = np.asarray(out["loc"], np.float64), np.asarray(out["scale"], np.float64)
            draws = [(loc + scale * eps, loc, scale) for eps in noise]
        z = np.concatenate([d[0] for d in draws]).astype(np.float32)
        tiled = None if labels is None else np.tile(np.asarray(labels), k)
        params = self.decoder.parameters(z, tiled)
        log_px = log_likelihood(np.tile(x, (k, 1, 1, 1)), params, self.facts["likelihood"])
        log_q = np.concatenate([diagonal_normal(*d) for d in draws])
        log_w = log_px + prior_log_prob(self.facts["prior"], z) - log_q
        return log_w.reshape(k, b).T


def _key(percentile):
    return f"{percentile:g}"
