"""Metrics of trained models.

The likelihood code works on *signature-style functions* (`encode(x[, labels]) -> {"loc", "scale"}`,
`decode(z[, labels]) -> {"logits"}`, `prior_log_prob(z) -> {"log_prob"}`), so the same estimator
scores a live model (`model_functions`) and a SavedModel's signatures (`saved_model_functions`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def model_functions(model):
    """Signature-style functions of a live model, compiled with tf.function."""
    return {name: tf.function(fn) for name, (fn, _) in model.serving_endpoints().items()}


def saved_model_functions(path):
    """Signature functions of a SavedModel folder (keyword inputs, dict outputs)."""
    loaded = tf.saved_model.load(path)  # the closures keep it (and its variables) alive

    def wrap(name, *arg_names):
        return lambda *args: loaded.signatures[name](**{k: v for k, v in zip(arg_names, args) if v is not None})

    return {"encode": wrap("encode", "x", "labels"), "decode": wrap("decode", "z", "labels"),
            "prior_log_prob": wrap("prior_log_prob", "z")}


def importance_log_likelihood(fns, x, labels=None, k=500, max_decodes=8192, seed=0):
    """Importance-sampled log p(x) per image for Bernoulli-likelihood models (nats).

        log p(x) ~= logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k,   z_i ~ q(z|x)

    This is the k-sample importance-weighted bound: at least the ELBO, and growing to log p(x)
    as k grows. Images go through in chunks of at most `max_decodes` decoded samples, so memory
    stays bounded whatever k is.

    Args:
        fns: signature-style functions (see the module docstring).
        x: binary images `[N, H, W, C]`.
        labels: class ids for conditional models, else None.
        k: importance samples per image.

    Returns:
        float64 numpy array `[N]` of log-likelihood estimates.
    """
    if k < 1:
        raise ValueError(f"Expected k >= 1 importance samples, received k={k}.")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_decodes // k)
    sample_chunk = min(k, max_decodes)
    out = []
    for start in range(0, len(x), per_chunk):
        xb = tf.constant(x[start:start + per_chunk], tf.float32)
        lb = None if labels is None else tf.constant(labels[start:start + per_chunk], tf.int32)
        post = fns["encode"](xb, lb) if lb is not None else fns["encode"](xb)
        q = tfd.Independent(tfd.Normal(post["loc"], post["scale"]), 1)
        weights = []
        for first in range(0, k, sample_chunk):
            n = min(sample_chunk, k - first)
            z = tf.constant(rng.standard_normal((n, *post["loc"].shape)), tf.float32) * post["scale"] + post["loc"]
            flat = tf.reshape(z, [-1, z.shape[-1]])
            lf = None if lb is None else tf.tile(lb, [n])
            logits = (fns["decode"](flat, lf) if lf is not None else fns["decode"](flat))["logits"]
            log_px = tfd.Independent(tfd.Bernoulli(logits=logits), 3).log_prob(tf.tile(xb, [n, 1, 1, 1]))
            log_pz = fns["prior_log_prob"](flat)["log_prob"]
            weights.append(tf.reshape(log_px + log_pz, [n, -1]) - q.log_prob(z))
        w = tf.cast(tf.concat(weights, 0), tf.float64)
        out.append((tf.reduce_logsumexp(w, 0) - np.log(k)).numpy())
    return np.concatenate(out)


def negative_log_likelihood(fns, x, labels=None, k=500, **kwargs):
    """-log p(x) per image in nats (see `importance_log_likelihood`)."""
    return -importance_log_likelihood(fns, x, labels, k, **kwargs)
