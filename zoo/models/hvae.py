"""A hierarchical VAE with a bottom-up path and a shared top-down path (Ladder VAE, Sønderby et al.
2016; NVAE, Vahdat & Kautz 2020; VDVAE, Child 2021)."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import distributions as dists
from zoo.models.base import LatentVariableModel
from zoo.networks import hierarchical
from zoo.registry import register

tfd = tfp.distributions


@register("hvae")
class HVAE(LatentVariableModel):
    """Latent groups at several resolutions: a top vector, then spatial groups top-down.

        p(x, z) = p(z_0) prod_g p(z_g | z_<g) p(x | z),   q(z | x) = q(z_0 | x) prod_g q(z_g | z_<g, x)

    q and p of every group come from the same top-down state (see `zoo.networks.hierarchical`), and
    every latent is written through its standardised noise, z_g = loc_p + scale_p * eps_g, so the
    model's latent is the noise of every group in one flat vector of size `self.latent_dim` with
    prior N(0, I): `decode`, `sample`, the `decode` signature and the exported decoders take it
    unchanged. `encode(x)` is q over that noise along the posterior-mean path (each group's eps at
    its posterior mean); `log_weights(x)` draws every group from q in turn.

    The training loss is the negative ELBO with one closed-form KL per group, KL_g = KL(N(m, s) || N(0, I))
    over the group's noise (equal to KL(q(z_g) || p(z_g)), since z_g is an affine map of eps_g):

        loss = E[-log p(x|z)] + w(t) * sum_g max(free_bits, E_batch[KL_g]),   w(t) = min(1, t / warmup_steps)

    (validation and test report the plain negative ELBO: see `loss_terms`).

    Args:
        latent_dim: size of the top group (a vector); `model.latent_dim` is the total noise size.
        latent_channels: channels of the spatial groups of each level, coarsest first (28x28: the
            7x7 level, then the 14x14 one; 0 leaves a level without latents).
        groups: latent groups per level that has latents.
        warmup_steps: steps over which the KL weight rises from 0 to 1 (0: no warm-up).
        free_bits: nats per group under which its KL is not pushed down (0: off).
        backbone: "resnet" only (the cells are residual).

    Example:
        model = zoo.create("hvae", input_shape=(28, 28, 1), latent_dim=16, latent_channels=(8, 4))
        images = model.sample(16)                     # the noise of every group ~ N(0, I), decoded
        bound = model.log_weights(x)["log_weight"]    # log p(x, z) - log q(z|x), z ~ q(z|x)
    """

    priors = ("normal",)  # the `prior` values it takes: N(0, I) over the noise of every group

    def __init__(self, input_shape, latent_dim=16, latent_channels=(8, 4), groups=1, warmup_steps=0, free_bits=0.0,
                 backbone="resnet", **kwargs):
        _refuse(backbone=backbone, **kwargs)
        if int(groups) != groups or groups < 1 or warmup_steps < 0 or not 0 <= free_bits < np.inf:
            raise ValueError(f"Expected groups >= 1, warmup_steps >= 0 and free_bits >= 0, received groups={groups}, "
                             f"warmup_steps={warmup_steps}, free_bits={free_bits}.")
        if any(int(c) != c or c < 0 for c in latent_channels):
            raise ValueError(f"Expected latent_channels of integers >= 0, received {list(latent_channels)}.")
        self.top_dim = int(latent_dim)
        self.latent_channels, self.groups = tuple(int(c) for c in latent_channels), int(groups)
        self.warmup_steps, self.free_bits = int(warmup_steps), float(free_bits)
        plan = hierarchical.group_plan(input_shape, self.latent_channels, self.groups)
        self.group_levels = ["top"] + [f"{h}x{w}" for _, (h, w, _) in plan]  # the level of each group, top first
        self.metric_names = ("loss", "reconstruction", "kl") + tuple(f"kl_{level}" for level in
                                                                     dict.fromkeys(self.group_levels))
        total = sum(hierarchical.noise_sizes(plan, self.top_dim))
        super().__init__(input_shape, latent_dim=total, backbone=backbone, **kwargs)

    def make_networks(self):
        """The bottom-up trunk (the encoder) and the generator noise -> raw outputs (the decoder),
        made of the top-down path's layers."""
        options = dict(width=self.width, depth=self.depth, norm=self.norm)
        encoder = hierarchical.bottom_up(self.image_shape, 2 * self.top_dim, **options)
        self.top_down = hierarchical.TopDown(self.output_shape(), self.top_dim, self.latent_channels, self.groups,
                                             **options)
        eps = keras.Input((self.latent_dim,), name="eps")
        return encoder, keras.Model(eps, self.top_down.generate(eps), name="decoder")

    # --- inference: q top-down ---------------------------------------------------------------

    def infer(self, x, noise):
        """Runs q(z|x) top-down: each group's noise is eps = loc_q + scale_q * noise (its slice of
        the flat standard-normal `noise` [B, latent_dim]; zeros take the posterior-mean path), its
        latent written as loc_p + scale_p * eps and fed to the next group.

        Returns:
            The decoder's raw outputs, and per group (top first) `(loc, scale, eps)` of q over
            its noise, each flat `[B, n_g]`.
        """
        top, *features = self.encoder(x)
        q_top = dists.gaussian_posterior(top)
        parts, offset = [], [0]

        def draw(loc, scale):
            size = int(np.prod(loc.shape[1:]))
            own = tf.reshape(noise[:, offset[0]:offset[0] + size], tf.shape(loc))
            offset[0] += size
            eps = loc + scale * own
            parts.append(tuple(tf.reshape(t, [-1, size]) for t in (loc, scale, eps)))
            return eps

        eps_top = draw(q_top.mean(), q_top.stddev())
        raw = self.top_down.run(eps_top, lambda i, level, h: draw(*self.top_down.posterior(i, h, features[level])))
        return raw, parts

    def encode(self, x, labels=None):
        """q over the flat noise `[B, latent_dim]`, each group's part taken along the posterior-mean path."""
        return _normal(*self.encode_with_noise(x)[1:])

    def encode_with_noise(self, x, noise=None, labels=None):
        """`(eps, loc, scale)`, flat `[B, latent_dim]`: the noise of every group drawn from q top-down
        with the standard-normal `noise` (None: zeros, the posterior-mean path), and q's loc and
        scale along that path. log N(eps; loc, scale) is log q(eps|x), which is all that scoring
        an image needs beside the decoder."""
        x, _ = self._check_inputs(x, labels)
        noise = (tf.zeros([tf.shape(x)[0], self.latent_dim]) if noise is None
                 else tf.convert_to_tensor(noise, tf.float32))
        _, parts = self.infer(x, noise)
        return tuple(tf.concat([p[i] for p in parts], -1) for i in (2, 0, 1))

    def log_weights(self, x, labels=None):
        """log p(x, z) - log q(z|x) for one fresh z ~ q(z|x) of every group, and log p(x|z)."""
        x, _ = self._check_inputs(x, labels)
        raw, parts = self.infer(x, self._standard_noise(x))
        log_likelihood = self.likelihood_of(raw).log_prob(x)
        log_ratio = tf.add_n([_normal(tf.zeros_like(eps), 1.0).log_prob(eps) - _normal(loc, scale).log_prob(eps)
                              for loc, scale, eps in parts])
        return {"log_weight": log_likelihood + log_ratio, "log_likelihood": log_likelihood}

    def _standard_noise(self, x):
        return tf.random.normal([tf.shape(x)[0], self.latent_dim])

    def export_encoder(self):
        """The exported encoder takes the noise too, so that apps score images like `log_weights`."""
        x = tf.TensorSpec([None, *self.image_shape], tf.float32, name="x")
        noise = tf.TensorSpec([None, self.latent_dim], tf.float32, name="noise")
        return (lambda x, noise: dict(zip(("z", "loc", "scale"), self.encode_with_noise(x, noise))), [x, noise])

    # --- the objective -----------------------------------------------------------------------

    def loss_terms(self, x, labels=None, training=False):
        """The loss, the negative ELBO's reconstruction and KL, and the KL of each level (batch
        means, nats per image). Warm-up and free bits shape the loss in training only: validation
        and test report the negative ELBO, so the best validation epoch is not a warm-up epoch
        whose KL weighed less."""
        raw, parts = self.infer(x, self._standard_noise(x))
        reconstruction = -self.likelihood_of(raw).log_prob(x)
        kls = [tfd.kl_divergence(_normal(loc, scale), _normal(tf.zeros_like(loc), 1.0)) for loc, scale, _ in parts]
        group_kls = [tf.reduce_mean(kl) for kl in kls]
        terms = {"reconstruction": tf.reduce_mean(reconstruction), "kl": tf.add_n(group_kls)}
        terms["loss"] = terms["reconstruction"] + (
            self._kl_weight() * tf.add_n([tf.maximum(kl, self.free_bits) for kl in group_kls]) if training
            else terms["kl"])
        for level in dict.fromkeys(self.group_levels):
            terms[f"kl_{level}"] = tf.add_n([kl for kl, at in zip(group_kls, self.group_levels) if at == level])
        return terms

    def _kl_weight(self):
        """min(1, t / warmup_steps) at the optimizer's step t (1 before compile, or without warm-up)."""
        if not self.warmup_steps or getattr(self, "optimizer", None) is None:
            return 1.0
        return tf.minimum(1.0, tf.cast(self.optimizer.iterations, tf.float32) / self.warmup_steps)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.top_dim, "latent_channels": list(self.latent_channels),
                "groups": self.groups, "warmup_steps": self.warmup_steps, "free_bits": self.free_bits}


def _normal(loc, scale):
    """A diagonal Gaussian over a flat group `[B, n]`."""
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


def _refuse(backbone, num_classes=None, prior="normal", broadcast_decoder=False, dense_layers=0, **_):
    """ValueError for the options of the base class that the hierarchy cannot honour."""
    refused = {"backbone": (backbone, "resnet"), "num_classes": (num_classes, None), "prior": (prior, "normal"),
               "broadcast_decoder": (bool(broadcast_decoder), False), "dense_layers": (dense_layers, 0)}
    for name, (value, allowed) in refused.items():
        if value != allowed:
            raise ValueError(f"hvae does not take {name}={value!r}: its prior is N(0, I) over the noise of every "
                             f"level, its cells are residual and unconditional (expected {name}={allowed!r}).")
