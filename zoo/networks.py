"""Encoder and decoder backbones, chosen from the image shape.

Images whose sides are at least 16 and even get a conv backbone that halves the side until it is
at most 7 (28 -> 7, 32 -> 4, 64 -> 4); smaller images (8x8 digits) get an MLP. A conv backbone can
also have `dense_layers` fully connected layers between its conv trunk and z, as in the beta-VAE
papers' dSprites networks: a linear read-out of conv features cannot tell a sprite's position from
its size, so without them position and scale share latents. The decoder can instead be a spatial
broadcast decoder (Watters et al., 2019): z tiled over the image with the pixel coordinates
appended, then stride-1 convs, so position is read from coordinates rather than painted by
transposed convs. Both produce plain tensors; `zoo.distributions` turns them into distributions.
"""

import keras
import numpy as np
from keras import layers, ops


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
    return min(width * 2**level, 4 * width)


def encoder(input_shape, units, *, width=32, hidden=256, dense_layers=0, name="encoder"):
    """Maps images `[B, H, W, C]` to `[B, units]` (e.g. the loc and raw scale of q(z|x)).

    Args:
        input_shape: `(H, W, C)`; C includes any label channels of a conditional model.
        units: size of the output vector.
        width: filters of the first conv level (doubled per level, up to 4x).
        hidden: units of the hidden dense layers (the MLP's, and the conv backbone's `dense_layers`).
        dense_layers: hidden dense layers after the conv trunk (conv backbone only; the MLP has 2).
    """
    h, w, _ = input_shape
    levels = _levels(min(h, w))
    net = [keras.Input(input_shape)]
    if levels == 0:
        net += [layers.Flatten(), *_dense(hidden, 2)]
    else:
        for level in range(levels):
            net += [layers.Conv2D(_filters(level, width), 3, strides=2, padding="same", activation="relu")]
        net += [layers.Flatten()] + _dense(hidden, dense_layers)
    net += [layers.Dense(units)]
    return keras.Sequential(net, name=name)


def decoder(units, output_shape, *, width=32, hidden=256, dense_layers=0, broadcast=False, name="decoder"):
    """Maps `[B, units]` (z, plus a one-hot label when conditional) to raw image outputs `[B, H, W, C]`;
    the mirror image of `encoder` (its `dense_layers` come before the conv trunk), or with
    `broadcast` a spatial broadcast decoder: `SpatialBroadcast`, four 3x3 convs of `width` filters at
    full resolution, then the output conv (no dense layers: z goes straight to the grid)."""
    h, w, c = output_shape
    levels = _levels(min(h, w))
    net = [keras.Input((units,))]
    if broadcast:
        net += [SpatialBroadcast(h, w)]
        net += [layers.Conv2D(width, 3, padding="same", activation="relu") for _ in range(4)]
        net += [layers.Conv2D(c, 3, padding="same")]
    elif levels == 0:
        net += [*_dense(hidden, 2), layers.Dense(h * w * c), layers.Reshape((h, w, c))]
    else:
        side_h, side_w = h // 2**levels, w // 2**levels
        top = _filters(levels - 1, width)
        net += _dense(hidden, dense_layers)
        net += [layers.Dense(side_h * side_w * top, activation="relu"), layers.Reshape((side_h, side_w, top))]
        for level in reversed(range(levels)):
            net += [layers.Conv2DTranspose(_filters(level, width), 3, strides=2, padding="same", activation="relu")]
        net += [layers.Conv2D(c, 3, padding="same")]
    return keras.Sequential(net, name=name)


@keras.saving.register_keras_serializable(package="zoo")
class SpatialBroadcast(layers.Layer):
    """Tiles vectors `[B, D]` over an `height x width` grid and appends each pixel's x and y in
    [-1, 1]: `[B, height, width, D + 2]`. Built from broadcasting products alone, so it exports to
    ONNX and to TFLite builtins."""

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        gy, gx = np.meshgrid(np.linspace(-1, 1, self.height), np.linspace(-1, 1, self.width), indexing="ij")
        self.coordinates = np.stack([gx, gy], -1)[None].astype(np.float32)  # [1, H, W, 2]: x, y

    def call(self, z):
        tiled = z[:, None, None, :] * ops.ones((1, self.height, self.width, 1), z.dtype)
        coordinates = ops.ones_like(tiled[..., :2]) * ops.cast(self.coordinates, z.dtype)
        return ops.concatenate([tiled, coordinates], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1] + 2)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


def _dense(units, count):
    return [layers.Dense(units, activation="relu") for _ in range(count)]


def grid_shape(image_shape):
    """The `(h, w)` grid of a spatial latent: the conv backbone's last feature map (28x28 -> 7x7),
    or `(H // 4, W // 4)` (at least 1x1) for images small enough for the MLP backbone (8x8 -> 2x2)."""
    h, w = image_shape[:2]
    levels = _levels(min(h, w))
    if levels == 0:
        return max(h // 4, 1), max(w // 4, 1)
    return h // 2**levels, w // 2**levels


def spatial_encoder(input_shape, channels, *, width=32, hidden=256, name="encoder"):
    """Maps images `[B, H, W, C]` to a grid of vectors `[B, h, w, channels]` (see `grid_shape`):
    the conv backbone without its Flatten/Dense head, ending in a 1x1 conv; an MLP for small images."""
    gh, gw = grid_shape(input_shape)
    levels = _levels(min(input_shape[:2]))
    net = [keras.Input(input_shape)]
    if levels == 0:
        net += [layers.Flatten(), *_dense(hidden, 2), layers.Dense(gh * gw * channels),
                layers.Reshape((gh, gw, channels))]
    else:
        net += [layers.Conv2D(_filters(level, width), 3, strides=2, padding="same", activation="relu")
                for level in range(levels)]
        net += [layers.Conv2D(channels, 1)]
    return keras.Sequential(net, name=name)


def spatial_decoder(grid, output_shape, *, width=32, hidden=256, name="decoder"):
    """Maps a grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) to raw image outputs `[B, H, W, C]`."""
    h, w, c = output_shape
    levels = _levels(min(h, w))
    net = [keras.Input(tuple(grid))]
    if levels == 0:
        net += [layers.Flatten(), *_dense(hidden, 2), layers.Dense(h * w * c), layers.Reshape((h, w, c))]
    else:
        net += [layers.Conv2D(_filters(levels - 1, width), 3, padding="same", activation="relu")]
        net += [layers.Conv2DTranspose(_filters(level, width), 3, strides=2, padding="same", activation="relu")
                for level in reversed(range(levels))]
        net += [layers.Conv2D(c, 3, padding="same")]
    return keras.Sequential(net, name=name)
