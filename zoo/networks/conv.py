"""The conv backbone: one 3x3 conv per level, stride 2 on the way down, transposed on the way up.

It halves the side until it is at most 7 (28 -> 7, 32 -> 4, 64 -> 4), with `_filters` filters per
level. It can also have `dense_layers` fully connected layers between its conv trunk and z, as in
the beta-VAE papers' dSprites networks: a linear read-out of conv features cannot tell a sprite's
position from its size, so without them position and scale share latents.
"""

import keras
from keras import layers

from zoo.networks.mlp import dense


def _levels(side):
    """How many stride-2 convs take `side` down to at most 7 (0 means: use an MLP)."""
    if side < 16:
        return 0
    levels = 0
    while side > 7 and side % 2 == 0:
        side //= 2
        levels += 1
    return levels


def _filters(level, width):
    """Filters of a level: `width`, doubled per level up to 4x."""
    return min(width * 2**level, 4 * width)


def grid_shape(image_shape):
    """The `(h, w)` grid of a spatial latent: the conv backbone's last feature map (28x28 -> 7x7),
    or `(H // 4, W // 4)` (at least 1x1) for images small enough for the MLP backbone (8x8 -> 2x2)."""
    h, w = image_shape[:2]
    levels = _levels(min(h, w))
    if levels == 0:
        return max(h // 4, 1), max(w // 4, 1)
    return h // 2**levels, w // 2**levels


def check_sides(image_shape, levels):
    """Both sides must divide by `2**levels`, or the decoder's output would not match the image.

    Raises:
        ValueError: a side that does not.
    """
    h, w = image_shape[:2]
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"Expected image sides divisible by {2**levels} ({levels} stride-2 levels for the "
                         f"shorter side {min(h, w)}), received {h}x{w}; resize the images (e.g. --image-size).")


def encoder(input_shape, units, *, width=32, hidden=256, dense_layers=0, name="encoder"):
    """Images `[B, H, W, C]` -> `[B, units]`: the conv trunk, Flatten, `dense_layers` hidden
    dense layers, then the output layer."""
    net = [keras.Input(input_shape), *_trunk(input_shape, width), layers.Flatten(), *dense(hidden, dense_layers)]
    return keras.Sequential(net + [layers.Dense(units)], name=name)


def decoder(units, output_shape, *, width=32, hidden=256, dense_layers=0, name="decoder"):
    """`[B, units]` -> raw image outputs `[B, H, W, C]`: the mirror image of `encoder` (its
    `dense_layers` come before the conv trunk)."""
    levels = _levels(min(output_shape[:2]))
    gh, gw = grid_shape(output_shape)
    top = _filters(levels - 1, width)
    net = [keras.Input((units,)), *dense(hidden, dense_layers)]
    net += [layers.Dense(gh * gw * top, activation="relu"), layers.Reshape((gh, gw, top))]
    return keras.Sequential(net + _transposed_trunk(output_shape, width), name=name)


def spatial_encoder(input_shape, channels, *, width=32, name="encoder"):
    """Images `[B, H, W, C]` -> a grid of vectors `[B, h, w, channels]`: the conv trunk without
    its Flatten/Dense head, ending in a 1x1 conv."""
    net = [keras.Input(input_shape), *_trunk(input_shape, width), layers.Conv2D(channels, 1)]
    return keras.Sequential(net, name=name)


def spatial_decoder(grid, output_shape, *, width=32, name="decoder"):
    """A grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) -> raw image outputs `[B, H, W, C]`."""
    top = _filters(_levels(min(output_shape[:2])) - 1, width)
    net = [keras.Input(tuple(grid)), layers.Conv2D(top, 3, padding="same", activation="relu")]
    return keras.Sequential(net + _transposed_trunk(output_shape, width), name=name)


def _trunk(input_shape, width):
    levels = _levels(min(input_shape[:2]))
    return [layers.Conv2D(_filters(level, width), 3, strides=2, padding="same", activation="relu")
            for level in range(levels)]


def _transposed_trunk(output_shape, width):
    levels = _levels(min(output_shape[:2]))
    net = [layers.Conv2DTranspose(_filters(level, width), 3, strides=2, padding="same", activation="relu")
           for level in reversed(range(levels))]
    return net + [layers.Conv2D(output_shape[-1], 3, padding="same")]
