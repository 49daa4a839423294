"""The importance-weighted autoencoder (Burda et al., 2016)."""

import numpy as np
import tensorflow as tf

from zoo.models.vae import VAE
from zoo.registry import register


@register("iwae")
class IWAE(VAE):
    """A VAE trained on the k-sample importance-weighted bound instead of the ELBO.

        L_k(x) = E[ log (1/k) sum_i p(x, z_i) / q(z_i|x) ],   z_1..z_k ~ q(z|x)

    L_1 is the ELBO and L_k rises towards log p(x) as k grows, so the model is fitted to a
    tighter bound and its posterior may be broader than a VAE's. The reported `reconstruction`
    and `kl` are the one-sample ELBO terms averaged over the k samples, for comparison.

    Args:
        num_samples: k, importance samples per image.

    Example:
        model = zoo.create("iwae", input_shape=(28, 28, 1), latent_dim=16, num_samples=5)
    """

    def __init__(self, input_shape, latent_dim=16, num_samples=5, **kwargs):
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"Expected a positive integer for `num_samples`, received num_samples={num_samples!r}.")
        super().__init__(input_shape, latent_dim, **kwargs)
        self.num_samples = int(num_samples)

    def loss_terms(self, x, labels=None, training=False):
        k = self.num_samples
        q = self.encode(x, labels)
        z = q.sample(k)  # [k, B, D]
        flat_labels = None if labels is None else tf.tile(labels, [k])
        px = self.decode(tf.reshape(z, [-1, self.latent_dim]), flat_labels)
        log_px = tf.reshape(px.log_prob(tf.tile(x, [k, 1, 1, 1])), [k, -1])
        log_ratio = q.log_prob(z) - self.prior().log_prob(z)  # one-sample KL estimates, [k, B]
        bound = tf.reduce_logsumexp(log_px - log_ratio, axis=0) - np.log(k)
        return {"loss": -tf.reduce_mean(bound), "reconstruction": -tf.reduce_mean(log_px),
                "kl": tf.reduce_mean(log_ratio)}

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples}
