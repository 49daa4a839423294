"""Log-densities in numpy, for scoring images without TensorFlow: each likelihood p(x|z) from the
decoder's outputs (the same formulas as `zoo.likelihoods`, which a test holds them to), Gaussians,
and the prior of the facts. Everything is float64 and summed over an image (or a latent): nats.
"""

import numpy as np

LEVELS = 256  # values of an 8-bit pixel (zoo.likelihoods.LEVELS)
HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def log_likelihood(x, outputs, likelihood):
    """log p(x|z) `[B]` of images `x` `[B, H, W, C]` under the decoder's `outputs` for the same batch.

    Args:
        x: images in [0, 1] as the likelihood scores them (binary for a Bernoulli one).
        outputs: the decoder's outputs (`mean` and the likelihood's parameters).
        likelihood: the facts' `likelihood`: `{"name"}`, plus `scale` [C] for "gaussian".
    """
    name, x = likelihood["name"], np.asarray(x, np.float64)
    if name == "bernoulli":
        logits = np.asarray(outputs["logits"], np.float64)
        per_pixel = x * logits - softplus(logits)
    elif name in ("gaussian", "gaussian_pixel"):
        scale = likelihood["scale"] if name == "gaussian" else outputs["scale"]
        per_pixel = normal_log_density(x, np.asarray(outputs["mean"], np.float64), np.asarray(scale, np.float64))
    elif name in ("logistic", "logistic_mixture"):
        return logistic_mixture_log_prob(x, outputs["mixture_logits"], outputs["loc"], outputs["scale"])
    else:
        raise ValueError(f"Unknown likelihood '{name}' in the facts: re-export with `python -m export RUN_DIR`.")
    return per_pixel.reshape(len(x), -1).sum(-1)


def logistic_mixture_log_prob(x, logits, loc, scale):
    """PixelCNN++'s discretized logistic mixture (`zoo.likelihoods.DiscretizedLogisticMixture`):
    `logits` [B, H, W, K], `loc` and `scale` [B, H, W, K, C] on the [0, 1] scale."""
    top = LEVELS - 1.0
    logits, loc, scale = (np.asarray(a, np.float64) for a in (logits, loc, scale))
    level = np.round(np.clip(x, 0.0, 1.0) * top)[..., None, :]
    inverse = 1.0 / (scale * top)
    a = (level + 0.5 - loc * top) * inverse
    log_below, log_above = -softplus(-a), -softplus(a - inverse)
    inner = log_below + log_above + np.log(-np.expm1(-inverse))
    log_mass = np.where(level < 0.5, log_below, np.where(level > top - 0.5, log_above, inner))
    per_pixel = logsumexp(log_mass.sum(-1) + log_softmax(logits), -1)
    return per_pixel.reshape(len(x), -1).sum(-1)


def normal_log_density(v, loc, scale):
    """Elementwise log N(v; loc, scale)."""
    return -0.5 * np.square((v - loc) / scale) - np.log(scale) - HALF_LOG_2PI


def diagonal_normal(v, loc, scale):
    """log N(v; loc, diag(scale^2)) of each row of `[B, D]`: `[B]`."""
    return normal_log_density(np.asarray(v, np.float64), np.asarray(loc, np.float64),
                              np.asarray(scale, np.float64)).sum(-1)


def prior_log_prob(prior, z):
    """log p(z) `[B]` under the facts' `prior` (a Gaussian mixture; N(0, I) is one component)."""
    if prior is None or prior.get("kind") != "gaussian_mixture":
        kind = None if prior is None else prior.get("kind")
        raise ValueError(f"Scoring needs a Gaussian prior over z; this model's prior is {kind!r}.")
    z = np.asarray(z, np.float64)[:, None, :]
    loc, scale = np.asarray(prior["loc"], np.float64), np.asarray(prior["scale"], np.float64)
    return logsumexp(normal_log_density(z, loc, scale).sum(-1) + log_softmax(np.asarray(prior["logits"])), -1)


def softplus(a):
    return np.logaddexp(0.0, a)


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    return logits - logsumexp(logits, -1)[..., None]


def logsumexp(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis)


def log_mean_exp(a, axis=-1):
    """log(mean(exp(a))) along `axis`, stably."""
    return logsumexp(np.asarray(a, np.float64), axis) - np.log(np.shape(a)[axis])
