"""The debiasing VAE (Amini et al., 2019): a classifier and a VAE that share an encoder, trained on
images resampled so that those rare in the VAE's latent space are seen more often."""

import numpy as np
import tensorflow as tf

from zoo.models.base import _check_positive
from zoo.models.vae import VAE
from zoo.registry import register

POSITIVE = 1  # the class the VAE models and the resampling evens out (openmoji-persons-biased: "person")


@register("dbvae")
class DBVAE(VAE):
    """A binary classifier whose encoder is also a VAE's, trained on debiased draws of its data.

    The encoder has one more output than a VAE's, the classifier's logit. With y the label (1 for
    the class to debias, the paper's faces), the loss averaged over the batch is

        classifier_weight * BCE(y, logit) + y * -ELBO(x)

    so the VAE learns the positive class alone, and its latent space shows which positives are
    rare: where the histograms of the posterior means over the training positives are thin.
    `sampling_probabilities` gives each positive the weight of its rarest latent dimension,

        w_d(x) = 1 / (Q_d(mu_d(x)) + alpha),  normalised over the positives,   W(x) = max_d w_d(x)

    with Q_d the share of positives in mu_d(x)'s histogram bin (see `rarity_weights`; alpha smooths
    it, and as alpha grows the draws become uniform), and the training loop (`zoo.training`, with
    `zoo.callbacks.Resample`) draws each epoch's batches from them, recomputed at the start of
    every epoch. The positives keep their share of the draws; the other images are drawn
    uniformly. With `debias=False` the same model trains on the usual shuffled epochs: the baseline.

    `classify(x)` is the probability of the positive class, also served as the SavedModel's
    `classify` signature; the decoder and the other signatures are a VAE's, of the positive class.

    Args:
        classifier_weight: weight of the classification loss (default: the number of pixel
            values, so that it weighs like the reconstruction, which sums over them).
        debias: resample the training images as above (False: plain shuffling).
        bins: histogram bins per latent dimension.
        alpha: the smoothing of the weights.

    Example:
        model = zoo.create("dbvae", input_shape=(32, 32, 3), latent_dim=16, likelihood="logistic_mixture")
        model.compile(optimizer="adam")
        p = model.sampling_probabilities(x, y)  # what `recipes/train_dbvae.py` draws from each epoch
        person = model.classify(x) > 0.5
    """

    supervised = True  # labels are the classifier's targets, not a condition of encoder and decoder
    metric_names = ("loss", "reconstruction", "kl", "classification", "accuracy")

    def __init__(self, input_shape, latent_dim=16, classifier_weight=None, debias=True, bins=10, alpha=0.01,
                 **kwargs):
        if kwargs.get("num_classes"):
            raise ValueError("dbvae is not conditional: its labels are the classifier's targets (0 or 1).")
        if not (alpha > 0 and (classifier_weight is None or classifier_weight >= 0)):
            raise ValueError(f"Expected alpha > 0 and classifier_weight >= 0, received alpha={alpha} and "
                             f"classifier_weight={classifier_weight}.")
        super().__init__(input_shape, latent_dim, **kwargs)
        self.classifier_weight = float(np.prod(self.image_shape) if classifier_weight is None else classifier_weight)
        self.debias, self.bins, self.alpha = bool(debias), _check_positive("bins", bins), float(alpha)

    @property
    def encoder_units(self):
        return 2 * self.latent_dim + 1  # q(z|x)'s loc and raw scale, and the logit

    def posterior(self, params):
        return super().posterior(params[:, :-1])

    def classify(self, x):
        """The probability `[B]` that each image is of the positive class."""
        x, _ = self._check_inputs(x, None)
        return tf.sigmoid(self.encoder(x)[:, -1])

    def loss_terms(self, x, labels=None, training=False):
        """The loss above; `reconstruction` and `kl` are averaged over the positives only."""
        x, _ = self._check_inputs(x, None)
        if labels is None:
            raise ValueError("dbvae trains on labelled images: pass (images, labels), labels 1 for the class to "
                             "debias and 0 for the others.")
        y = tf.cast(tf.reshape(labels, [-1]), tf.float32)
        params = self.encoder(x)
        _, _, reconstruction, kl = self.elbo_parts(x, q=self.posterior(params))
        classification = tf.nn.sigmoid_cross_entropy_with_logits(y, params[:, -1])
        positives = tf.maximum(tf.reduce_sum(y), 1.0)
        return {"loss": tf.reduce_mean(self.classifier_weight * classification + y * (reconstruction + kl)),
                "reconstruction": tf.reduce_sum(y * reconstruction) / positives,
                "kl": tf.reduce_sum(y * kl) / positives, "classification": tf.reduce_mean(classification),
                "accuracy": tf.reduce_mean(tf.cast(tf.equal(params[:, -1] > 0, y > 0.5), tf.float32))}

    def sampling_probabilities(self, x, y, batch_size=256):
        """Each image's probability `[N]` of being drawn, from the posterior means of the positives
        of `(x, y)` (see the class); None with `debias=False`."""
        if not self.debias:
            return None
        positive = np.asarray(y).reshape(-1) == POSITIVE
        loc = np.concatenate([self.encode(x[i:i + batch_size]).mean().numpy() for i in range(0, len(x), batch_size)])
        p = np.full(len(x), 1.0 / len(x))
        if positive.any():
            p[positive] = rarity_weights(loc[positive], self.bins, self.alpha) * positive.mean()
        return p

    def serving_endpoints(self):
        x = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        return {**super().serving_endpoints(), "classify": (self.serve_classify, [x])}

    def serve_classify(self, x):
        return {"probability": self.classify(x)}

    def get_config(self):
        return {**super().get_config(), "classifier_weight": self.classifier_weight, "debias": self.debias,
                "bins": self.bins, "alpha": self.alpha}


def rarity_weights(codes, bins=10, alpha=0.01):
    """Weights `[N]` summing to 1 that favour the rare codes `[N, D]`: per dimension d,
    w_d = 1 / (share_d + alpha) normalised over the codes, with share_d the fraction of the codes in
    each code's bin (`bins` equal bins from the dimension's least to its largest code), and each
    code weighs as its rarest dimension, max_d w_d.

    The paper multiplies the dimensions' weights instead (the inverse of a density that treats
    them as independent). Over 16 latents that product put 99% of the draws on one image of 1,218
    (README, "Debiasing VAE"); the maximum, as in MIT 6.S191's DB-VAE lab, keeps most images in play.
    """
    codes = np.asarray(codes, np.float64)
    w = np.zeros(len(codes))
    for column in codes.T:
        counts, edges = np.histogram(column, bins=bins)
        which = np.clip(np.digitize(column, edges[1:-1]), 0, bins - 1)
        w_d = 1 / (counts[which] / len(column) + alpha)
        w = np.maximum(w, w_d / w_d.sum())
    return w / w.sum()
