"""beta-TCVAE (Chen et al., 2018): the total correlation of the aggregate posterior, weighted."""

import tensorflow as tf

from zoo import decomposition
from zoo.models.vae import VAE
from zoo.registry import register


@register("beta_tcvae")
class BetaTCVAE(VAE):
    """A VAE whose KL term is split into three parts, of which the total correlation is weighted.

    Averaged over the data, the KL splits (see `zoo.decomposition`) into the index-code mutual
    information MI, the total correlation TC of the aggregate posterior q(z) and the dimension-wise
    KL. beta-VAE weighs all three; beta-TCVAE weighs TC alone, the one that makes the latents
    dependent, and leaves the information z holds about x alone. With per-example reconstruction
    r, closed-form KL k and the minibatch estimates of the three parts:

        loss = E[r + k + (alpha - 1) MI + (beta - 1) TC + (gamma - 1) DWKL]
             = E[r + alpha MI + beta TC + gamma DWKL]    (in expectation: MI + TC + DWKL = k)

    The base ELBO stays as it is, with its closed-form KL; the three estimates (reported as `mi`,
    `tc` and `dwkl`) only add the reweighting. They come from the minibatch's M posteriors
    standing for a data set of N images (`dataset_size`), with minibatch weighted sampling ("mws",
    the paper's training estimator; its log(NM) shifts the reported parts by constants and leaves
    the gradients alone) or minibatch stratified sampling ("mss").

    Args:
        beta: weight of the total correlation (1: the ELBO).
        alpha: weight of the index-code mutual information.
        gamma: weight of the dimension-wise KL.
        estimator: "mws" or "mss" (see `zoo.decomposition.log_importance_weights`).
        dataset_size: N, the training images; None: the minibatch stands for the data set (N = M).

    Example:
        model = zoo.create("beta_tcvae", input_shape=(64, 64, 1), latent_dim=10, beta=6.0, dataset_size=18_000)
        terms = model.loss_terms(x)  # loss, reconstruction, kl, mi, tc, dwkl
    """

    metric_names = ("loss", "reconstruction", "kl", "mi", "tc", "dwkl")

    def __init__(self, input_shape, latent_dim=10, beta=6.0, alpha=1.0, gamma=1.0, estimator="mws",
                 dataset_size=None, **kwargs):
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if not value >= 0:
                raise ValueError(f"Expected {name} >= 0, received {name}={value}.")
        decomposition.check_estimator(estimator, dataset_size)
        super().__init__(input_shape, latent_dim, **kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.estimator = estimator
        self.dataset_size = None if dataset_size is None else int(dataset_size)

    def loss_terms(self, x, labels=None, training=False):
        q, z, reconstruction, kl = self.elbo_parts(x, labels)
        parts = decomposition.decompose(z, q.mean(), q.stddev(), self.prior().log_prob(z), self.dataset_size,
                                        self.estimator)
        reweighted = ((self.alpha - 1.0) * parts["mi"] + (self.beta - 1.0) * parts["tc"]
                      + (self.gamma - 1.0) * parts["dwkl"])
        return {"loss": tf.reduce_mean(reconstruction + kl + reweighted),
                "reconstruction": tf.reduce_mean(reconstruction), "kl": tf.reduce_mean(kl),
                **{name: tf.reduce_mean(value) for name, value in parts.items()}}

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "alpha": self.alpha, "gamma": self.gamma,
                "estimator": self.estimator, "dataset_size": self.dataset_size}
