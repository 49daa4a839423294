"""DIP-VAE-II (Kumar et al., 2018): the aggregate posterior's covariance pulled to the identity."""

import tensorflow as tf

from zoo import decomposition
from zoo.models.vae import VAE
from zoo.registry import register


@register("dip_vae")
class DIPVAE(VAE):
    """A VAE whose aggregate posterior q(z) is asked to have the prior's covariance, the identity.

    Independent latents are uncorrelated, so DIP-VAE ("disentangled inferred prior") matches the
    second moments of q(z) to those of p(z) = N(0, I). With the minibatch's
    Cov_q(z) = E[Cov_q(z|x)] + Cov[E_q(z|x)] (`zoo.decomposition.aggregate_covariance`; the
    "II" variant counts the posteriors' own variances, which "I" leaves out):

        loss = E[r + k] + lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2

    The two sums are reported as `off_diagonal` and `diagonal`. The ELBO is the base class's.

    Args:
        lambda_od: weight of the squared off-diagonal covariances.
        lambda_d: weight of the squared distances of the variances from 1 (Kumar et al. set it
            equal to lambda_od for DIP-VAE-II).

    Example:
        model = zoo.create("dip_vae", input_shape=(64, 64, 1), latent_dim=10, lambda_od=10.0, lambda_d=10.0)
    """

    metric_names = ("loss", "reconstruction", "kl", "off_diagonal", "diagonal")

    def __init__(self, input_shape, latent_dim=10, lambda_od=10.0, lambda_d=10.0, **kwargs):
        for name, value in (("lambda_od", lambda_od), ("lambda_d", lambda_d)):
            if not value >= 0:
                raise ValueError(f"Expected {name} >= 0, received {name}={value}.")
        super().__init__(input_shape, latent_dim, **kwargs)
        self.lambda_od, self.lambda_d = float(lambda_od), float(lambda_d)

    def loss_terms(self, x, labels=None, training=False):
        q, _, reconstruction, kl = self.elbo_parts(x, labels)
        off_diagonal, diagonal = covariance_penalties(decomposition.aggregate_covariance(q.mean(), q.stddev()))
        return {"loss": tf.reduce_mean(reconstruction + kl) + self.lambda_od * off_diagonal + self.lambda_d * diagonal,
                "reconstruction": tf.reduce_mean(reconstruction), "kl": tf.reduce_mean(kl),
                "off_diagonal": off_diagonal, "diagonal": diagonal}

    def get_config(self):
        return {**super().get_config(), "lambda_od": self.lambda_od, "lambda_d": self.lambda_d}


def covariance_penalties(covariance):
    """`(sum_{i != j} C_ij^2, sum_i (C_ii - 1)^2)` of a `[D, D]` covariance C: both 0 for the identity."""
    variances = tf.linalg.diag_part(covariance)
    off_diagonal = tf.reduce_sum(tf.square(covariance)) - tf.reduce_sum(tf.square(variances))
    return off_diagonal, tf.reduce_sum(tf.square(variances - 1.0))
