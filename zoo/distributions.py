"""TFP distributions of the zoo, built from tensors: posteriors q(z|x), priors p(z), likelihoods p(x|z).

Nothing here is a `tfp.layers` object (those are Keras 2): networks produce tensors, and these
functions turn the tensors into `tfd` distributions inside `encode`, `decode` and `prior`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

MIN_SCALE = 1e-4  # keeps softplus scales away from 0 so log-densities stay finite
LIKELIHOODS = ("bernoulli", "gaussian")
NEAR_BINARY = 0.1  # a pixel this close to 0 or 1 is near-binary
BINARY_SHARE = 0.8  # the share of near-binary pixels from which "auto" picks a Bernoulli likelihood
PRIORS = ("normal", "mog")


def gaussian_posterior(params):
    """Diagonal Gaussian q(z|x) from `[B, 2D]` network outputs: `loc` and `softplus(raw) + MIN_SCALE`."""
    loc, raw_scale = tf.split(params, 2, axis=-1)
    return tfd.Independent(tfd.Normal(loc, tf.nn.softplus(raw_scale) + MIN_SCALE), reinterpreted_batch_ndims=1)


def point_mass(z):
    """The degenerate posterior of a deterministic autoencoder: all mass at `z`."""
    return tfd.Independent(tfd.Deterministic(z), reinterpreted_batch_ndims=1)


def standard_normal(latent_dim):
    """The N(0, I) prior."""
    return tfd.Independent(tfd.Normal(tf.zeros([latent_dim]), 1.0), reinterpreted_batch_ndims=1)


def image_likelihood(outputs, likelihood, log_scale=None):
    """p(x|z) over whole images (event shape H, W, C) from the decoder's raw outputs.

    `bernoulli` reads the outputs as logits; `gaussian` reads `sigmoid(outputs)` as the mean and
    `exp(log_scale)` (one learned value per channel) as the standard deviation.
    """
    if likelihood == "bernoulli":
        pixels = tfd.Bernoulli(logits=outputs, dtype=tf.float32)
    else:
        pixels = tfd.Normal(tf.sigmoid(outputs), tf.exp(log_scale) + MIN_SCALE)
    return tfd.Independent(pixels, reinterpreted_batch_ndims=3)


def likelihood_outputs(px):
    """The `decode` signature's outputs: `mean` in [0, 1], and `logits` for Bernoulli pixels."""
    outputs = {"mean": px.mean()}
    if isinstance(px.distribution, tfd.Bernoulli):
        outputs["logits"] = px.distribution.logits
    return outputs


def kl_divergence(q, p, z):
    """KL(q || p) per example: closed form where TFP registers one, else the Monte Carlo
    estimate log q(z) - log p(z) at the posterior sample `z`."""
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


@keras.saving.register_keras_serializable(package="zoo")
class MixturePrior(keras.layers.Layer):
    """A learned mixture-of-Gaussians prior p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)).

    Its KL against a Gaussian posterior has no closed form, so the ELBO uses the Monte Carlo
    estimate (see `kl_divergence`).

    Args:
        latent_dim: size of z.
        components: number of mixture components K.

    Example:
        prior = MixturePrior(latent_dim=16, components=10).distribution()
        prior.log_prob(tf.zeros([4, 16]))  # shape [4]
    """

    def __init__(self, latent_dim, components=10, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.components = int(latent_dim), int(components)
        self.locs = self.add_weight(shape=(self.components, self.latent_dim), name="locs",
                                    initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.raw_scales = self.add_weight(shape=(self.components, self.latent_dim), name="raw_scales",
                                          initializer=keras.initializers.Constant(np.log(np.e - 1.0)))
        self.logits = self.add_weight(shape=(self.components,), name="logits", initializer="zeros")
        self.built = True

    def distribution(self):
        components = tfd.Independent(
            tfd.Normal(self.locs, tf.nn.softplus(self.raw_scales) + MIN_SCALE), reinterpreted_batch_ndims=1)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=self.logits), components)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "components": self.components}


def choose_likelihood(x, likelihood="auto"):
    """The likelihood for images `x` in [0, 1]: `likelihood`, or for "auto" Bernoulli when the pixels
    are near-binary and Gaussian otherwise.

    Near-binary: one channel, and at least `BINARY_SHARE` of the pixels within `NEAR_BINARY` of 0
    or 1 (mnist5k 91%, dSprites 100%; scikit-learn's 8x8 digits, with 17 grey levels, 65%). A
    Bernoulli model scores grey images thresholded at 0.5, which throws away what their grey
    levels say; colour images are never binary (OpenMoji's flat colours on white: 80%).

    Returns:
        `(likelihood, share)`: the name, and the share of near-binary pixels (of at most 1,000
        images spread over `x`).
    """
    sample = np.asarray(x[::max(1, len(x) // 1000)], np.float32)
    share = float(np.mean(np.minimum(sample, 1 - sample) <= NEAR_BINARY))
    if likelihood == "auto":
        likelihood = "bernoulli" if share >= BINARY_SHARE and sample.shape[-1] == 1 else "gaussian"
    return likelihood, share
