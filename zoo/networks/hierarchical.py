"""The hierarchical VAE's networks: a bottom-up residual trunk and a shared top-down path of latent
groups (Ladder VAE, Sønderby et al. 2016; NVAE, Vahdat & Kautz 2020; VDVAE, Child 2021).

The bottom-up trunk is the residual backbone's (`zoo.networks.resnet`): a stride-2 stem, `depth`
blocks per level, a stride-2 conv between levels (28x28 -> 14x14 -> 7x7). It returns the
parameters of the top group (a vector, from the coarsest features) and the features of every level.

The top-down path starts from the top latent (a dense layer to the coarsest grid) and, from the
coarsest level to the finest, runs that level's latent groups, then upsamples. A group of
`channels` latents on the level's grid reads the shared top-down state h:

    prior      h    -> loc_p, scale_p, feature          p(z | z_above)
    posterior  h, a -> m, s                             q(eps | z_above, x) = N(m, s), a: bottom-up features
    merge      h, feature, z -> residual block(h + feature + conv1x1(z)),   z = loc_p + scale_p * eps

Every group's latent is written through its standardised noise eps (z = loc_p + scale_p * eps),
so the generator is a deterministic function of the noise of every level, flattened into one
vector (the top group first, then the groups top-down, each `(h, w, channels)` row-major), and
q over eps is what the model learns: KL(q(z) || p(z)) = KL(N(m, s) || N(0, 1)) for each group.
`TopDown.generate` builds that generator from the same layers that `TopDown.run` uses for inference.
"""

import math

import keras
import numpy as np
from keras import layers, ops

from zoo.distributions import MIN_SCALE
from zoo.networks.conv import _filters, _levels
from zoo.networks.resnet import _activate, _block, _conv, _upsample

UNIT_SCALE = math.log(math.e - 1.0)  # softplus(UNIT_SCALE) = 1: the prior starts at N(0, I)


def levels_of(image_shape):
    """`(levels, grids)`: the trunk's stride-2 levels and the `(h, w)` grid of each, finest first
    (28x28 -> 2, [(14, 14), (7, 7)]); images under 16 pixels get one level at full size."""
    h, w = image_shape[:2]
    levels = _levels(min(h, w))
    if levels == 0:
        return 1, [(h, w)]
    return levels, [(h // 2**(level + 1), w // 2**(level + 1)) for level in range(levels)]


def group_plan(image_shape, latent_channels, groups):
    """The latent groups top-down: `[(level, (h, w, channels)), ...]`. `latent_channels` gives the
    channels of the groups of each level, coarsest first (0: none); entries beyond the image's
    levels are left out, missing ones are 0."""
    levels, grids = levels_of(image_shape)
    plan = []
    for rank, channels in enumerate(latent_channels[:levels]):
        level = levels - 1 - rank
        plan += [(level, (*grids[level], int(channels)))] * (groups if channels else 0)
    return plan


def noise_sizes(plan, top_dim):
    """Sizes of the parts of the flat noise vector: the top group's, then each group's of `plan`
    (`group_plan`)."""
    return [int(top_dim)] + [int(np.prod(shape)) for _, shape in plan]


def bottom_up(input_shape, top_units, *, width=32, depth=1, norm="none", name="bottom_up"):
    """Images `[B, H, W, C]` -> `[top [B, top_units], features of level 0 (finest), ..., of the
    coarsest level]`: the residual trunk, keeping each level's output."""
    x = inputs = keras.Input(input_shape)
    levels, _ = levels_of(input_shape)
    x = _conv(width, 3, norm, strides=2 if _levels(min(input_shape[:2])) else 1)(x)
    features = []
    for level in range(levels):
        if level:
            x = _conv(x.shape[-1], 3, norm, strides=2)(x)
        for _ in range(depth):
            x = _block(x, _filters(level, width), norm)
        features.append(x)
    top = layers.Dense(top_units)(layers.Flatten()(_activate(x, norm)))
    return keras.Model(inputs, [top, *features], name=name)


@keras.saving.register_keras_serializable(package="zoo")
class TopDown(layers.Layer):
    """The shared top-down path: inference (`run` with posterior noise) and generation (`generate`
    from the flat noise vector) through the same layers.

    Args:
        output_shape: raw output shape `(H, W, C)`: the likelihood's channels per pixel.
        top_dim: size of the top latent group (a vector, prior N(0, I)).
        latent_channels: channels of the groups of each level, coarsest first (see `group_plan`).
        groups: latent groups per level that has latents.
        width, depth, norm: as the residual backbone's (`zoo.networks.resnet`).

    Example:
        top_down = TopDown((28, 28, 1), top_dim=16, latent_channels=(8, 4))
        eps = keras.Input((sum(top_down.noise_sizes()),))    # 16 + 7*7*8 + 14*14*4
        generator = keras.Model(eps, top_down.generate(eps))  # noise -> Bernoulli logits
    """

    def __init__(self, output_shape, top_dim, latent_channels=(8, 4), groups=1, width=32, depth=1, norm="none",
                 **kwargs):
        super().__init__(**kwargs)
        self.out_shape, self.top_dim = tuple(output_shape), int(top_dim)
        self.latent_channels, self.groups = tuple(int(c) for c in latent_channels), int(groups)
        self.width, self.depth, self.norm = int(width), int(depth), norm
        self.levels, self.grids = levels_of(output_shape)
        self.plan = group_plan(output_shape, self.latent_channels, self.groups)
        self.top = self._top()
        self.priors = [self._prior(i, level, shape) for i, (level, shape) in enumerate(self.plan)]
        self.posteriors = [self._posterior(i, level, shape) for i, (level, shape) in enumerate(self.plan)]
        self.merges = [self._merge(i, level, shape) for i, (level, shape) in enumerate(self.plan)]
        self.ups = [self._up(level) for level in range(self.levels)]
        self.built = True

    def filters(self, level):
        return _filters(level, self.width)

    def noise_sizes(self):
        """Sizes of the parts of the flat noise vector: the top group's, then each group's."""
        return noise_sizes(self.plan, self.top_dim)

    # --- the path ----------------------------------------------------------------------------

    def run(self, z_top, noise):
        """The raw outputs from the top latent `z_top` `[B, top_dim]`, with `noise(i, level, h)`
        giving the standardised noise eps of group i `[B, h, w, channels]` from the state h."""
        h = self.top(z_top)
        for level in reversed(range(self.levels)):
            for i, (group_level, _) in enumerate(self.plan):
                if group_level == level:
                    loc, scale, feature = self.priors[i](h)
                    h = self.merges[i]([h, feature, loc + scale * noise(i, level, h)])
            h = self.ups[level](h)
        return h

    def generate(self, eps):
        """The raw outputs from the flat noise `eps` `[B, latent size]` (symbolic or not)."""
        bounds = np.cumsum([0] + self.noise_sizes())
        part = lambda i, level, h: ops.reshape(eps[:, bounds[i + 1]:bounds[i + 2]], (-1, *self.plan[i][1]))
        return self.run(eps[:, :self.top_dim], part)

    def posterior(self, i, h, features):
        """q(eps_i | z_above, x) of group i: loc m and scale s, from the state h and the bottom-up
        features of the group's level."""
        return self.posteriors[i]([h, features])

    # --- the sub-networks --------------------------------------------------------------------

    def _top(self):
        """z_top -> the coarsest level's state: a dense layer to its grid, then a residual block."""
        z = keras.Input((self.top_dim,))
        (gh, gw), filters = self.grids[-1], self.filters(self.levels - 1)
        h = layers.Reshape((gh, gw, filters))(layers.Dense(gh * gw * filters)(z))
        return keras.Model(z, _block(h, filters, self.norm), name="top")

    def _prior(self, i, level, shape):
        """h -> loc, scale, feature of p(z | z_above). The last convs start at zero, so the prior
        starts at N(0, I) and adds nothing to h."""
        filters, channels = self.filters(level), shape[-1]
        h = inputs = keras.Input((*shape[:2], filters))
        h = _conv(filters, 3, self.norm)(_activate(h, self.norm))
        h = _activate(h, self.norm)
        head = lambda units, bias="zeros": layers.Conv2D(units, 3, padding="same", kernel_initializer="zeros",
                                                         bias_initializer=bias)(h)
        scale = ops.softplus(head(channels, keras.initializers.Constant(UNIT_SCALE))) + MIN_SCALE
        return keras.Model(inputs, [head(channels), scale, head(filters)], name=f"prior_{i}")

    def _posterior(self, i, level, shape):
        """h, bottom-up features -> loc and scale of q(eps | z_above, x)."""
        filters, channels = self.filters(level), shape[-1]
        h, features = keras.Input((*shape[:2], filters)), keras.Input((*shape[:2], filters))
        x = _activate(layers.Concatenate()([h, features]), self.norm)
        x = _activate(_conv(filters, 3, self.norm)(x), self.norm)
        loc = layers.Conv2D(channels, 3, padding="same")(x)
        raw = layers.Conv2D(channels, 3, padding="same", bias_initializer=keras.initializers.Constant(UNIT_SCALE))(x)
        return keras.Model([h, features], [loc, ops.softplus(raw) + MIN_SCALE], name=f"posterior_{i}")

    def _merge(self, i, level, shape):
        """h, the prior's feature, z -> the next state: a residual block on h + feature + conv1x1(z)."""
        filters = self.filters(level)
        h, feature, z = keras.Input((*shape[:2], filters)), keras.Input((*shape[:2], filters)), keras.Input(shape)
        x = layers.Add()([h, feature, layers.Conv2D(filters, 1)(z)])
        for _ in range(self.depth):
            x = _block(x, filters, self.norm)
        return keras.Model([h, feature, z], x, name=f"merge_{i}")

    def _up(self, level):
        """Between levels: upsample and a 3x3 conv to the finer level's filters. After the finest,
        the output head: upsample to the image (when the trunk strode), a 3x3 conv of `width`
        filters, swish, and a 1x1 conv to the likelihood's channels."""
        grid = self.grids[level]
        h = inputs = keras.Input((*grid, self.filters(level)))
        if level:
            h = _conv(self.filters(level - 1), 3, self.norm)(_upsample(h))
            return keras.Model(inputs, h, name=f"up_{level}")
        h = _activate(h, self.norm)
        if tuple(grid) != tuple(self.out_shape[:2]):
            h = _upsample(h)
        h = layers.Activation("silu")(_conv(self.width, 3, self.norm)(h))
        return keras.Model(inputs, layers.Conv2D(self.out_shape[-1], 1)(h), name="head")

    def get_config(self):
        return {**super().get_config(), "output_shape": list(self.out_shape), "top_dim": self.top_dim,
                "latent_channels": list(self.latent_channels), "groups": self.groups, "width": self.width,
                "depth": self.depth, "norm": self.norm}
