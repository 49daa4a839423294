"""The base class of every model in the zoo: networks, distributions, the ELBO and the train step."""

import keras
import numpy as np
import tensorflow as tf

from zoo import distributions as dists
from zoo import likelihoods, networks


class LatentVariableModel(keras.Model):
    """A latent-variable model p(x, z) = p(z) p(x|z) with an amortised posterior q(z|x).

    `encode` returns q(z|x), `decode` returns p(x|z) and `prior` returns p(z), all as TFP
    distributions. Training maximises the ELBO

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)),

    estimated with one reparameterised sample z ~ q(z|x) (closed-form KL where TFP has one).
    Subclasses change only what differs: the posterior head (`encoder_units`, `posterior`), the
    loss (`loss_terms` / `objective`) or the serving outputs.

    Conditional models (`num_classes` set) take int class ids: a one-hot label joins the encoder
    input as extra channels and joins z at the decoder.

    Args:
        input_shape: image shape `(H, W, C)`.
        latent_dim: size of z.
        num_classes: classes of a conditional model, or None.
        likelihood: a name from `zoo.likelihoods.NAMES`: "bernoulli" (binary images), "gaussian"
            (learned scale per channel), "gaussian_pixel" (scale per pixel) or "logistic_mixture"
            (8-bit images: PixelCNN++'s discretized logistic mixture).
        prior: "normal" for N(0, I), or "mog" for a learned mixture of Gaussians.
        prior_components: mixture components of the "mog" prior.
        width: filters of the first conv level of the backbones.
        hidden: hidden units of the MLP backbones and of the dense layers below.
        dense_layers: hidden dense layers between a conv trunk and z (0; the beta-VAE papers use 2).
        broadcast_decoder: decode with a spatial broadcast decoder (`zoo.networks.decoder`), which
            keeps a sprite's x and y on latents of their own, instead of transposed convs.
        backbone: "conv" (strided convs) or "resnet" (pre-activation residual blocks); see `zoo.networks`.
        depth: residual blocks per resolution of the resnet backbone.
        norm: normalisation in the residual blocks: "none", "group" or "weight".
    """

    metric_names = ("loss", "reconstruction", "kl")
    conditional = False  # True: the recipe passes the dataset's number of classes as `num_classes`
    supervised = False  # True: the model trains on labels as targets (`dbvae`), not as a condition

    def __init__(self, input_shape, latent_dim=16, num_classes=None, likelihood="bernoulli", prior="normal",
                 prior_components=10, width=64, hidden=256, dense_layers=0, broadcast_decoder=False, backbone="conv",
                 depth=1, norm="none", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _check_shape(input_shape)
        self.latent_dim = _check_positive("latent_dim", latent_dim)
        self.num_classes = None if num_classes is None else _check_positive("num_classes", num_classes)
        likelihoods.check(likelihood)
        if prior not in dists.PRIORS:
            raise ValueError(f"Unknown prior '{prior}': expected one of {dists.PRIORS}.")
        self.likelihood, self.prior_name, self.prior_components = likelihood, prior, int(prior_components)
        self.width, self.hidden = int(width), int(hidden)
        if dense_layers < 0:
            raise ValueError(f"Expected dense_layers >= 0, received dense_layers={dense_layers}.")
        self.dense_layers = int(dense_layers)
        self.broadcast_decoder = bool(broadcast_decoder)
        if backbone not in networks.BACKBONES or norm not in networks.NORMS:
            raise ValueError(f"Unknown backbone '{backbone}' or norm '{norm}': expected a backbone from "
                             f"{networks.BACKBONES} and a norm from {networks.NORMS}.")
        self.backbone, self.depth, self.norm = backbone, _check_positive("depth", depth), norm

        self.encoder, self.decoder = self.make_networks()
        self.log_scale = (self.add_weight(shape=self.image_shape[-1:], initializer="zeros", name="log_scale")
                          if likelihood == "gaussian" else None)
        self.learned_prior = (dists.MixturePrior(self.latent_dim, self.prior_components, name="learned_prior")
                              if prior == "mog" else None)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self.built = True  # every weight exists now: load_model and export need no sample call

    # --- the model: q(z|x), p(x|z), p(z) -------------------------------------------------------

    def make_networks(self):
        """The encoder (images, plus label channels -> `encoder_units`) and decoder (z, plus label -> image)."""
        extra = self.num_classes or 0
        h, w, c = self.image_shape
        encoder = networks.encoder((h, w, c + extra), self.encoder_units, **self.network_options())
        decoder = networks.decoder(self.latent_dim + extra, self.output_shape(), broadcast=self.broadcast_decoder,
                                   **self.network_options())
        return encoder, decoder

    def network_options(self, dense=True):
        """The backbone's sizes, as `zoo.networks`' builders take them."""
        options = dict(backbone=self.backbone, width=self.width, hidden=self.hidden, depth=self.depth, norm=self.norm)
        return {**options, "dense_layers": self.dense_layers} if dense else options

    def output_shape(self):
        """The decoder's raw output shape: the image's, with as many channels as the likelihood needs."""
        h, w, c = self.image_shape
        return h, w, likelihoods.output_channels(self.likelihood, c)

    @property
    def encoder_units(self):
        """Size of the encoder's output vector: loc and raw scale of a diagonal Gaussian."""
        return 2 * self.latent_dim

    def posterior(self, params):
        """q(z|x) from the encoder's output vector."""
        return dists.gaussian_posterior(params)

    def encode(self, x, labels=None):
        """Returns q(z|x) as a TFP distribution with batch shape [B] and event shape [latent_dim]."""
        x, labels = self._check_inputs(x, labels)
        if self.num_classes:
            onehot = tf.one_hot(labels, self.num_classes)[:, None, None, :]
            x = tf.concat([x, tf.broadcast_to(onehot, tf.concat([tf.shape(x)[:3], [self.num_classes]], 0))], -1)
        return self.posterior(self.encoder(x))

    def decode(self, z, labels=None):
        """Returns p(x|z) as a TFP distribution with batch shape [B] and event shape [H, W, C]."""
        return self.likelihood_of(self.decoder_outputs(z, labels))

    def likelihood_of(self, raw):
        """p(x|z) from the decoder's raw outputs (see `zoo.likelihoods`)."""
        return likelihoods.image_likelihood(raw, self.likelihood, self.image_shape[-1], self.log_scale)

    def decoder_outputs(self, z, labels=None):
        """The decoder's raw outputs for latents `z` (checked), with the label joined to z."""
        z = tf.convert_to_tensor(z, tf.float32)
        if z.shape.rank != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"Expected latents of shape (batch, {self.latent_dim}), received {tuple(z.shape)}.")
        labels = self._check_labels(labels)
        if self.num_classes:
            z = tf.concat([z, tf.one_hot(labels, self.num_classes)], -1)
        return self.decoder(z)

    def prior(self):
        """Returns p(z): N(0, I), or the learned mixture."""
        if self.learned_prior is not None:
            return self.learned_prior.distribution()
        return dists.standard_normal(self.latent_dim)

    def call(self, x, labels=None, training=False):
        """Reconstructs `x` through the posterior mean: returns the mean of p(x | E[z|x])."""
        return self.decode(self.encode(x, labels).mean(), labels).mean()

    def sample(self, n, labels=None, seed=None):
        """Draws `n` images: z ~ p(z), then the mean of p(x|z)."""
        return self.decode(self.prior().sample(n, seed=seed), labels).mean()

    def log_weights(self, x, labels=None):
        """One importance weight per image, for one fresh z ~ q(z|x):

            log w = log p(x|z) + log p(z) - log q(z|x)

        Its mean over calls is the ELBO, and the log-mean-exp of k calls is the k-sample bound on
        log p(x) that every NLL of the zoo reports (`zoo.evaluate`). Models with other latents
        (several levels, codes) override it; the contract is the same.

        Returns:
            dict of `[B]` tensors: `log_weight`, and `log_likelihood` (log p(x|z) of the same z).
        """
        q = self.encode(x, labels)
        z = q.sample()
        log_likelihood = self.decode(z, labels).log_prob(x)
        return {"log_weight": log_likelihood + self.prior().log_prob(z) - q.log_prob(z),
                "log_likelihood": log_likelihood}

    # --- the objective and the training step ---------------------------------------------------

    def elbo_parts(self, x, labels=None, q=None):
        """The one-sample ELBO's pieces: `(q, z, reconstruction, kl)`, q(z|x), one reparameterised
        z ~ q(z|x) `[B, D]`, and the per-example -log p(x|z) and KL(q(z|x) || p(z)) `[B]`.
        Objectives that add terms of the posterior and its sample (`beta_tcvae`, `factor_vae`,
        `dip_vae`) start from them; `q`, when the caller has encoded `x` already (`dbvae`)."""
        q = self.encode(x, labels) if q is None else q
        z = q.sample()
        return q, z, -self.decode(z, labels).log_prob(x), dists.kl_divergence(q, self.prior(), z)

    def loss_terms(self, x, labels=None, training=False):
        """The negative ELBO and its parts, averaged over the batch (nats per image)."""
        _, _, reconstruction, kl = self.elbo_parts(x, labels)
        return {"loss": self.objective(reconstruction, kl),
                "reconstruction": tf.reduce_mean(reconstruction), "kl": tf.reduce_mean(kl)}

    def objective(self, reconstruction, kl):
        """The loss to minimise from per-example terms: the negative ELBO."""
        return tf.reduce_mean(reconstruction + kl)

    def train_step(self, data):
        x, labels = self._unpack(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, labels, training=True)
            loss = terms["loss"] + sum(self.losses)
            # Replicas' gradients are summed, so each takes its share of the mean (as Keras' own
            # compute_loss does); under mixed precision the optimizer scales the loss up so float16
            # gradients do not underflow, and scales them back before applying them.
            loss = self.optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return self._record(terms)

    def test_step(self, data):
        x, labels = self._unpack(data)
        return self._record(self.loss_terms(x, labels, training=False))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _record(self, terms):
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _unpack(self, data):
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else None)
        return data, None

    # --- serving: the SavedModel signatures of the design --------------------------------------

    def serving_endpoints(self):
        """Name -> (function, input signature) for every SavedModel signature of this model."""
        x = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        z = tf.TensorSpec([None, self.latent_dim], tf.float32, name="z")
        labels = [tf.TensorSpec([None], tf.int32, name="labels")] if self.num_classes else []
        endpoints = {
            "encode": (self.serve_encode, [x] + labels),
            "decode": (self.serve_decode, [z] + labels),
            "reconstruct": (self.serve_reconstruct, [x] + labels),
        }
        if self.has_prior:
            endpoints["prior_log_prob"] = (self.serve_prior_log_prob, [z])
            endpoints["log_weights"] = (self.log_weights, [x] + labels)
        return endpoints

    has_prior = True

    def export_encoder(self):
        """`(function, input specs)` of the encoder that `python -m export --parts encoder` writes:
        the `encode` signature's, unless a model needs more inputs to score images (`hvae`)."""
        return self.serving_endpoints()["encode"]

    def serve_encode(self, x, labels=None):
        q = self.encode(x, labels)
        return {"loc": q.mean(), "scale": q.stddev()}

    def serve_decode(self, z, labels=None):
        return likelihoods.parameters(self.decoder_outputs(z, labels), self.likelihood, self.image_shape[-1],
                                      self.log_scale)

    def serve_reconstruct(self, x, labels=None):
        return {"mean": self(x, labels)}

    def serve_prior_log_prob(self, z):
        return {"log_prob": self.prior().log_prob(z)}

    # --- checks and config ---------------------------------------------------------------------

    def _check_inputs(self, x, labels):
        x = tf.convert_to_tensor(x, tf.float32)
        if x.shape.rank != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"Expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                             f"received {tuple(x.shape)}.")
        if tf.executing_eagerly():
            values = x.numpy()
            if not np.isfinite(values).all():
                raise ValueError("Images contain NaN or Inf values.")
            if values.size and (values.min() < 0 or values.max() > 1):
                raise ValueError(f"Expected pixel values in [0, 1], received [{values.min():g}, {values.max():g}].")
        return x, self._check_labels(labels)

    def _check_labels(self, labels):
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError(f"This model is conditional on {self.num_classes} classes: pass `labels`.")
        labels = tf.convert_to_tensor(labels)
        if labels.dtype.is_floating:
            raise ValueError(f"Expected integer class ids for `labels`, received dtype {labels.dtype.name}.")
        labels = tf.cast(labels, tf.int32)
        if tf.executing_eagerly() and tf.size(labels) > 0:
            low, high = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"Labels must lie in [0, {self.num_classes - 1}], received [{low}, {high}].")
        return labels

    def get_config(self):
        return {**super().get_config(), "input_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "num_classes": self.num_classes, "likelihood": self.likelihood, "prior": self.prior_name,
                "prior_components": self.prior_components, "width": self.width, "hidden": self.hidden,
                "dense_layers": self.dense_layers, "broadcast_decoder": self.broadcast_decoder,
                "backbone": self.backbone, "depth": self.depth, "norm": self.norm}


def _check_shape(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"Expected `input_shape` as (height, width, channels) of positive sizes, received {shape}.")
    return shape


def _check_positive(name, value):
    if int(value) != value or value <= 0:
        raise ValueError(f"Expected a positive integer for `{name}`, received {name}={value!r}.")
    return int(value)
