"""The deterministic autoencoder: the baseline whose latent space cannot be sampled."""

import tensorflow as tf

from zoo import distributions as dists
from zoo.models.base import LatentVariableModel
from zoo.registry import register


@register("ae")
class AE(LatentVariableModel):
    """An autoencoder written as the degenerate case of the zoo's models.

    q(z|x) is a point mass at the encoder's output and there is no prior, so the loss is the
    reconstruction term alone (-log p(x|z)) and nothing tells us where to draw z from: `sample`
    and `prior` raise. `encode` serves `{"z"}`.

    Example:
        model = zoo.create("ae", input_shape=(28, 28, 1), latent_dim=16)
    """

    metric_names = ("loss", "reconstruction")
    has_prior = False

    @property
    def encoder_units(self):
        return self.latent_dim

    def posterior(self, params):
        return dists.point_mass(params)

    def prior(self):
        raise ValueError("An autoencoder has no prior to sample from; train a 'vae' to sample new images.")

    def loss_terms(self, x, labels=None, training=False):
        reconstruction = tf.reduce_mean(-self.decode(self.encode(x, labels).mean(), labels).log_prob(x))
        return {"loss": reconstruction, "reconstruction": reconstruction}

    def serve_encode(self, x, labels=None):
        return {"z": self.encode(x, labels).distribution.loc}  # the point itself: exporters lack `mean`'s BroadcastArgs
