"""TFP distributions of the zoo, built from tensors: posteriors q(z|x) and priors p(z) (the
likelihoods p(x|z) are in `zoo.likelihoods`).

Nothing here is a `tfp.layers` object (those are Keras 2): networks produce tensors, and these
functions turn the tensors into `tfd` distributions inside `encode`, `decode` and `prior`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

MIN_SCALE = 1e-4  # keeps softplus scales away from 0 so log-densities stay finite
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
