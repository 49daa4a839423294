"""The VAE-GAN (Larsen et al., 2016): a VAE whose reconstruction is measured in a discriminator's
features ("learned similarity"), plus an adversarial term on reconstructions and samples."""

import tensorflow as tf
import tensorflow_probability as tfp

from zoo import distributions as dists
from zoo import likelihoods
from zoo.models.adversarial import WithDiscriminator
from zoo.models.vae import VAE
from zoo.networks.discriminator import discriminator
from zoo.registry import register

tfd = tfp.distributions


@register("vaegan")
class VAEGAN(WithDiscriminator, VAE):
    """A VAE trained against a discriminator D, whose hidden layer l judges how alike two images are.

    With z ~ q(z|x), x~ the mean of p(x|z) (the reconstruction), x_p the mean of p(x|z_p) for
    z_p ~ p(z) (a sample), f(.) D's layer-l features and d(.) its logit:

        feature reconstruction  L_f   = -log N(f(x); f(x~), I)       (Larsen et al.'s L_llike^Dis_l)
        prior                   L_kl  = KL(q(z|x) || p(z))
        discriminator           L_D   = BCE(d(x), real) + mean over {x~, x_p} of BCE(d(.), generated)
        adversarial             L_adv = mean over {x~, x_p} of BCE(d(.), real)

    Each network descends its own loss, as in the paper: the encoder L_kl + L_f, the decoder
    gamma * L_f + L_adv (the non-saturating form of the paper's -L_GAN), D its L_D. The encoder
    and decoder share the compiled optimizer: its moments are per weight, so applying both
    gradients in one step is two optimizers with the same settings; D has its own
    (`discriminator_optimizer`, Adam with beta_1 = 0.5 as in DCGAN), created by `compile`, which
    checkpoints and `model.keras` save and resume with the rest (see `extra_optimizers`).

    The pixel likelihood p(x|z) stays the model's: `reconstruction`, the ELBO, `loss` and
    `zoo.evaluate`'s NLL are the pixel ones, comparable with every other variant's, and `decode`
    is an ordinary decoder. Its mean is trained by the terms above alone; the likelihood's other
    parameters (a Gaussian's scale, a mixture's component scales) are fitted to the pixels with
    the mean held fixed, so that the NLL measures these images, not an untrained scale. For a
    Bernoulli likelihood, whose only parameter is its mean, that fit is empty: pure Larsen et al.

    Args:
        gamma: weight of L_f against L_adv in the decoder's loss (the paper's gamma).
        discriminator_width: filters of D's first conv level (doubled per level, up to 4x).
        feature_layer: D's hidden layer l, from 1 to `zoo.networks.discriminator.feature_layers`
            (its conv levels; None: the last).
        discriminator_learning_rate: D's Adam learning rate.

    Example:
        model = zoo.create("vaegan", input_shape=(28, 28, 1), latent_dim=16, gamma=0.1)
        model.compile(optimizer="adam")
        model.fit(zoo.data.pipeline(x, batch_size=64), epochs=10)
        images = model.sample(16)  # sharper than a VAE's: D tells blurry images from real ones
    """

    metric_names = ("loss", "reconstruction", "kl", "feature_reconstruction", "discriminator_loss",
                    "adversarial_loss")

    def __init__(self, input_shape, latent_dim=16, gamma=0.1, discriminator_width=32, feature_layer=None,
                 discriminator_learning_rate=2e-4, **kwargs):
        if not gamma >= 0:
            raise ValueError(f"Expected gamma >= 0, received gamma={gamma}.")
        if not discriminator_learning_rate > 0:
            raise ValueError(f"Expected discriminator_learning_rate > 0, received "
                             f"discriminator_learning_rate={discriminator_learning_rate}.")
        super().__init__(input_shape, latent_dim, **kwargs)
        self.gamma, self.discriminator_learning_rate = float(gamma), float(discriminator_learning_rate)
        self.discriminator_width = int(discriminator_width)
        self.feature_layer = None if feature_layer is None else int(feature_layer)
        self.discriminator = discriminator(self.image_shape, width=self.discriminator_width, hidden=self.hidden,
                                           feature_layer=self.feature_layer)
        self.discriminator_optimizer = None

    # --- the losses -----------------------------------------------------------------------------

    def loss_terms(self, x, labels=None, training=False):
        """The pixel negative ELBO and its parts, and the adversarial terms, averaged over the batch."""
        x, labels = self._check_inputs(x, labels)
        q = self.encode(x, labels)
        z = q.sample()
        raw = self.decoder_outputs(z, labels)
        z_p = tf.stop_gradient(self.prior().sample(tf.shape(x)[0]))
        generated = [self.image_mean(raw), self.image_mean(self.decoder_outputs(z_p, labels))]
        features, logits = self.discriminator(tf.concat([x, *generated], 0), training=training)
        features = tf.cast(tf.reshape(features, [3, tf.shape(x)[0], -1]), tf.float32)
        real_logits, fake_logits = tf.split(tf.cast(logits, tf.float32), [tf.shape(x)[0], -1])
        feature_nll = -tfd.Independent(tfd.Normal(features[1], 1.0), 1).log_prob(features[0])
        reconstruction = -self.likelihood_of(self.spread_only(raw)).log_prob(x)
        kl = dists.kl_divergence(q, self.prior(), z)
        return {"loss": tf.reduce_mean(reconstruction + kl), "reconstruction": tf.reduce_mean(reconstruction),
                "kl": tf.reduce_mean(kl), "feature_reconstruction": tf.reduce_mean(feature_nll),
                "discriminator_loss": _bce(real_logits, 1.0) + _bce(fake_logits, 0.0),
                "adversarial_loss": _bce(fake_logits, 1.0)}

    def network_losses(self, terms):
        """Each network's loss, from `loss_terms`' terms: {"encoder", "decoder", "discriminator"}.
        The decoder's `reconstruction` reaches only the likelihood's spread (see `spread_only`)."""
        return {"encoder": terms["kl"] + terms["feature_reconstruction"],
                "decoder": self.gamma * terms["feature_reconstruction"] + terms["adversarial_loss"]
                + terms["reconstruction"],
                "discriminator": terms["discriminator_loss"]}

    def image_mean(self, raw):
        """The image D sees for decoder outputs `raw`: the likelihood's mean, what `decode` serves."""
        return likelihoods.parameters(raw, self.likelihood, self.image_shape[-1], self.log_scale)["mean"]

    def spread_only(self, raw):
        """`raw` with no gradient through the channels that set the likelihood's mean: those of a
        Bernoulli or per-channel Gaussian (all), a per-pixel Gaussian's first C, a logistic
        mixture's logits and locations (its scales keep theirs)."""
        c, total = self.image_shape[-1], raw.shape[-1]
        fixed = {"gaussian_pixel": c}.get(self.likelihood, total)
        if self.likelihood in ("logistic", "logistic_mixture"):
            fixed = total // (1 + 2 * c) * (1 + c)
        return tf.concat([tf.stop_gradient(raw[..., :fixed]), raw[..., fixed:]], -1)

    # --- three networks, three losses, two optimizers ----------------------------------------

    def variable_groups(self):
        """`(encoder, decoder, discriminator)` trainable variables. The learned prior joins the
        encoder (the KL trains it); the decoder has the rest (the Gaussian likelihood's scale too)."""
        critic = list(self.discriminator.trainable_variables)
        prior = self.learned_prior.trainable_variables if self.learned_prior is not None else []
        encoder = list(self.encoder.trainable_variables) + list(prior)
        taken = {id(v) for v in critic + encoder}
        return encoder, [v for v in self.trainable_variables if id(v) not in taken], critic

    def train_step(self, data):
        x, labels = self._unpack(data)
        share = 1.0 / tf.distribute.get_strategy().num_replicas_in_sync  # as in the base train_step
        with tf.GradientTape(persistent=True) as tape:
            terms = self.loss_terms(x, labels, training=True)
            losses = self.network_losses(terms)
            scaled = {name: (self.discriminator_optimizer if name == "discriminator" else self.optimizer)
                      .scale_loss(loss * share) for name, loss in losses.items()}
        encoder, decoder, critic = self.variable_groups()
        grads = tape.gradient(scaled["encoder"], encoder) + tape.gradient(scaled["decoder"], decoder)
        self.optimizer.apply(grads, encoder + decoder)
        self.discriminator_optimizer.apply(tape.gradient(scaled["discriminator"], critic), critic)
        del tape
        return self._record(terms)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "discriminator_width": self.discriminator_width,
                "feature_layer": self.feature_layer, "discriminator_learning_rate": self.discriminator_learning_rate}


def _bce(logits, label):
    """The mean binary cross-entropy of `logits` against one label (1.0 real, 0.0 generated)."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), label), logits))
