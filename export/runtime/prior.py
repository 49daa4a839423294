"""Priors in numpy: the Gaussian mixture and per-position categorical of the facts, and the
exported PixelCNN network with its autoregressive sampling loop."""

import numpy as np

from export.runtime.files import open_file
from export.runtime.inputs import check_input

PRIOR_FACTS = ("kind", "grid_shape", "num_codes", "inputs", "outputs")


def load_prior(path, providers=None):
    """Loads an exported prior network (`prior.onnx` / `prior.tflite`, written by `python -m export`
    for a vqvae with a PixelCNN prior).

    Raises:
        ValueError: a missing file or extension, a file its runtime cannot load, or one without a
            prior network's facts.
    """
    path, run, facts, _, used = open_file(path, providers, "prior")
    missing = [key for key in PRIOR_FACTS if key not in facts] if isinstance(facts, dict) else list(PRIOR_FACTS)
    if missing or facts["kind"] != "pixelcnn":
        raise ValueError(f"{path} lacks the facts of a PixelCNN prior ({missing or facts['kind']}): export it with "
                         "`python -m export RUN_DIR`.")
    return Prior(run, facts, path, used)


class Prior:
    """An exported PixelCNN prior over code grids: `logits(codes)` for every position at once,
    and `sample(n, seed)` by the autoregressive loop (`sample_codes`).

    Attributes:
        grid_shape `(h, w)`, num_codes K, facts, providers (None for TFLite), batch_size (grids
        per runtime call).
    """

    def __init__(self, run, facts, path, providers=None, batch_size=256):
        self._run, self.facts, self.path, self.providers = run, facts, path, providers
        self.grid_shape, self.num_codes = tuple(facts["grid_shape"]), int(facts["num_codes"])
        self.batch_size = batch_size

    def logits(self, codes):
        """float32 logits `[B, h, w, K]` for int codes `[B, h, w]`: position (i, j) sees only the
        codes before it in raster order."""
        spec = {"name": "codes", "dtype": "int32", "shape": list(self.grid_shape)}
        return np.asarray(self._run({"codes": check_input(spec, codes, self.num_codes)}, ["logits"])["logits"])

    def sample(self, n, seed=None):
        """`n` code grids, int32 `[n, h, w]`, from `numpy.random.default_rng(seed)`'s uniforms."""
        uniforms = np.random.default_rng(seed).random((int(n), *self.grid_shape))
        return sample_codes(self.logits, uniforms, self.batch_size)


def sample_prior(prior, n, rng):
    """Draws `n` latents from the prior of the facts (`export.metadata`): float z from a diagonal
    Gaussian mixture, or int32 codes from a categorical per grid position."""
    if prior["kind"] == "categorical":
        cdf = np.cumsum(np.asarray(prior["probs"], np.float64), axis=-1)
        uniform = rng.random((n, *cdf.shape[:-1], 1)) * cdf[..., -1:]
        return (uniform > cdf).sum(-1).astype(np.int32)
    logits = np.asarray(prior["logits"], np.float64)
    loc, scale = np.asarray(prior["loc"], np.float64), np.asarray(prior["scale"], np.float64)
    weights = np.exp(logits - logits.max())
    component = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return (loc[component] + scale[component] * rng.standard_normal((n, loc.shape[1]))).astype(np.float32)


def sample_codes(logits_fn, uniforms, batch_size=None):
    """Code grids drawn from an autoregressive prior, one position at a time in raster order.

    At each position the logits of every grid (`logits_fn(codes)` -> `[B, h, w, K]`, the codes
    not drawn yet being 0, which the causal network never reads there) are turned into
    probabilities, and the code is the first index whose cumulative probability exceeds the
    position's uniform (inverse CDF, in float64). `zoo`'s `model.sample` runs this same loop on
    the Keras network, so the same uniforms give the same codes.

    Args:
        logits_fn: int32 codes `[B, h, w]` -> logits `[B, h, w, K]`.
        uniforms: `[n, h, w]` in [0, 1), e.g. `numpy.random.default_rng(seed).random((n, h, w))`.
        batch_size: grids per `logits_fn` call (None: all at once).

    Returns:
        int32 codes `[n, h, w]`.
    """
    uniforms = np.asarray(uniforms, np.float64)
    n, h, w = uniforms.shape
    codes = np.zeros((n, h, w), np.int32)
    step = max(1, batch_size or n)
    for start in range(0, n, step):
        chunk, draws = codes[start:start + step], uniforms[start:start + step]  # views: filled in place
        for i in range(h):
            for j in range(w):
                logits = np.asarray(logits_fn(chunk), np.float64)[:, i, j]
                cdf = np.cumsum(np.exp(logits - logits.max(-1, keepdims=True)), -1)
                chunk[:, i, j] = (draws[:, i, j, None] * cdf[:, -1:] >= cdf).sum(-1)
    return codes
