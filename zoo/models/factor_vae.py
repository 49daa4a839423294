"""FactorVAE (Kim & Mnih, 2018): a discriminator on z estimates the total correlation, which is penalised."""

import keras
import tensorflow as tf
from keras import layers

from zoo import decomposition
from zoo.models.base import _check_positive
from zoo.models.adversarial import WithDiscriminator
from zoo.models.vae import VAE
from zoo.registry import register

SLOPE = 0.2  # LeakyReLU's negative slope, as in the paper's discriminator


@register("factor_vae")
class FactorVAE(WithDiscriminator, VAE):
    """A VAE with a penalty on the total correlation of q(z), estimated by a discriminator.

    A discriminator D (an MLP on z, one logit) learns to tell samples of q(z) from samples of
    prod_d q(z_d), which `zoo.decomposition.permute_dims` draws by shuffling each dimension
    across the batch. At its optimum its logit is the density ratio (the density-ratio trick):

        logit D(z) = log q(z) / prod_d q(z_d),   so   TC = KL(q(z) || prod_d q(z_d)) ~ E_q(z)[logit D(z)]

        VAE loss = E[r + k] + gamma * E_q(z)[logit D(z)]
        D loss   = BCE(D(z), q(z)) + BCE(D(permuted z'), product)   (averaged over the two)

    Both are computed from one batch and applied in the same `train_step`, each with its own
    optimizer: the VAE's loss uses every z of the batch; D sees the first half of the batch as
    samples of q(z) and the second half, permuted, as samples of the product (the paper draws a
    second batch for the latter). D's inputs carry no gradient to the encoder. D's optimizer is
    Adam (beta_1 = 0.5, beta_2 = 0.9, as in the paper), created by `compile`; its state is saved
    with `model.keras` and in training checkpoints (`extra_optimizers`). Nothing exports D: the
    decoder is an ordinary one.

    Reported: `tc` (the estimate above), `discriminator_loss` and `discriminator_accuracy`.

    Args:
        gamma: weight of the total correlation estimate.
        discriminator_units: units of each hidden layer of D (the paper: 1000).
        discriminator_layers: hidden layers of D (the paper: 6).
        discriminator_learning_rate: D's Adam learning rate (the paper: 1e-4).

    Example:
        model = zoo.create("factor_vae", input_shape=(64, 64, 1), latent_dim=10, gamma=35.0)
        model.compile(optimizer="adam")  # also creates D's optimizer
        model.fit(zoo.data.pipeline(x, batch_size=64), epochs=10)
    """

    metric_names = ("loss", "reconstruction", "kl", "tc", "discriminator_loss", "discriminator_accuracy")

    discriminator_betas = (0.5, 0.9)  # the paper's Adam for D

    def __init__(self, input_shape, latent_dim=10, gamma=35.0, discriminator_units=1000, discriminator_layers=6,
                 discriminator_learning_rate=1e-4, **kwargs):
        if not (gamma >= 0 and discriminator_learning_rate > 0):
            raise ValueError(f"Expected gamma >= 0 and discriminator_learning_rate > 0, received gamma={gamma} and "
                             f"discriminator_learning_rate={discriminator_learning_rate}.")
        units = _check_positive("discriminator_units", discriminator_units)
        depth = _check_positive("discriminator_layers", discriminator_layers)
        super().__init__(input_shape, latent_dim, **kwargs)
        self.gamma, self.discriminator_learning_rate = float(gamma), float(discriminator_learning_rate)
        self.discriminator_units, self.discriminator_layers = units, depth
        self.discriminator = keras.Sequential(
            [keras.Input((self.latent_dim,)),
             *[layer for _ in range(self.discriminator_layers)
               for layer in (layers.Dense(self.discriminator_units), layers.LeakyReLU(SLOPE))],
             layers.Dense(1)], name="discriminator")
        self.discriminator_optimizer = None

    def loss_terms(self, x, labels=None, training=False):
        q, z, reconstruction, kl = self.elbo_parts(x, labels)
        tc = tf.reduce_mean(self.logits(z))
        samples = tf.stop_gradient(z)
        size = tf.shape(samples)[0]  # halves; with an odd batch the middle sample is in both
        real = self.logits(samples[:size - size // 2])
        product = self.logits(decomposition.permute_dims(samples[size // 2:]))
        bce = lambda logits, label: tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), label), logits)
        right = tf.concat([tf.cast(real > 0, tf.float32), tf.cast(product <= 0, tf.float32)], 0)
        return {"loss": tf.reduce_mean(reconstruction + kl) + self.gamma * tc,
                "reconstruction": tf.reduce_mean(reconstruction), "kl": tf.reduce_mean(kl), "tc": tc,
                "discriminator_loss": 0.5 * (tf.reduce_mean(bce(real, 1.0)) + tf.reduce_mean(bce(product, 0.0))),
                "discriminator_accuracy": tf.reduce_mean(right)}

    def logits(self, z):
        """D's logit for latents `[B, D]`, `[B]`: log q(z) / prod_d q(z_d) at D's optimum."""
        return tf.cast(self.discriminator(z)[:, 0], tf.float32)

    # --- two networks, two optimizers, one step ------------------------------------------------

    def variable_groups(self):
        """`(vae, discriminator)` trainable variables."""
        critic = list(self.discriminator.trainable_variables)
        taken = {id(v) for v in critic}
        return [v for v in self.trainable_variables if id(v) not in taken], critic

    def train_step(self, data):
        x, labels = self._unpack(data)
        share = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync  # as in the base train_step
        with tf.GradientTape(persistent=True) as tape:
            terms = self.loss_terms(x, labels, training=True)
            vae_loss = self.optimizer.scale_loss((terms["loss"] + sum(self.losses)) * share)
            critic_loss = self.discriminator_optimizer.scale_loss(terms["discriminator_loss"] * share)
        vae, critic = self.variable_groups()
        self.optimizer.apply(tape.gradient(vae_loss, vae), vae)
        self.discriminator_optimizer.apply(tape.gradient(critic_loss, critic), critic)
        del tape
        return self._record(terms)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "discriminator_units": self.discriminator_units,
                "discriminator_layers": self.discriminator_layers,
                "discriminator_learning_rate": self.discriminator_learning_rate}
