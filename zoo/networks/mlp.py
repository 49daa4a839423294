"""MLP backbones, for images too small for a conv trunk (`_levels(side) == 0`, e.g. 8x8 digits):
two hidden dense layers whatever the backbone asked for."""

import keras
from keras import layers


def dense(units, count):
    """`count` hidden dense layers of `units` (ReLU)."""
    return [layers.Dense(units, activation="relu") for _ in range(count)]


def encoder(input_shape, units, *, hidden=256, name="encoder"):
    """Images `[B, H, W, C]` -> `[B, units]`."""
    net = [keras.Input(input_shape), layers.Flatten(), *dense(hidden, 2), layers.Dense(units)]
    return keras.Sequential(net, name=name)


def decoder(units, output_shape, *, hidden=256, name="decoder"):
    """`[B, units]` -> raw image outputs `[B, H, W, C]`."""
    return keras.Sequential([keras.Input((units,)), *_image_head(output_shape, hidden)], name=name)


def spatial_encoder(input_shape, grid, channels, *, hidden=256, name="encoder"):
    """Images `[B, H, W, C]` -> a `grid` `(h, w)` of vectors `[B, h, w, channels]`."""
    gh, gw = grid
    net = [keras.Input(input_shape), layers.Flatten(), *dense(hidden, 2), layers.Dense(gh * gw * channels),
           layers.Reshape((gh, gw, channels))]
    return keras.Sequential(net, name=name)


def spatial_decoder(grid, output_shape, *, hidden=256, name="decoder"):
    """A grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) -> raw image outputs `[B, H, W, C]`."""
    net = [keras.Input(tuple(grid)), layers.Flatten(), *_image_head(output_shape, hidden)]
    return keras.Sequential(net, name=name)


def _image_head(output_shape, hidden):
    h, w, c = output_shape
    return [*dense(hidden, 2), layers.Dense(h * w * c), layers.Reshape((h, w, c))]
