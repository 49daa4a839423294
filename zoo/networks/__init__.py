"""Encoder and decoder backbones, chosen from the image shape.

Images whose sides are at least 16 and even get a conv backbone (`zoo.networks.conv`) that halves
the side until it is at most 7 (28 -> 7, 32 -> 4, 64 -> 4); smaller images (8x8 digits) get an MLP
(`zoo.networks.mlp`). A decoder can instead be a spatial broadcast decoder
(`zoo.networks.broadcast`). All produce plain tensors; `zoo.distributions` turns them into
distributions.
"""

from zoo.networks import conv, mlp
from zoo.networks.broadcast import SpatialBroadcast
from zoo.networks.broadcast import decoder as _broadcast_decoder
from zoo.networks.conv import _filters, _levels, grid_shape

__all__ = ["SpatialBroadcast", "decoder", "encoder", "grid_shape", "spatial_decoder", "spatial_encoder"]


def encoder(input_shape, units, *, width=32, hidden=256, dense_layers=0, name="encoder"):
    """Maps images `[B, H, W, C]` to `[B, units]` (e.g. the loc and raw scale of q(z|x)).

    Args:
        input_shape: `(H, W, C)`; C includes any label channels of a conditional model.
        units: size of the output vector.
        width: filters of the first conv level (doubled per level, up to 4x).
        hidden: units of the hidden dense layers (the MLP's, and the conv backbone's `dense_layers`).
        dense_layers: hidden dense layers after the conv trunk (conv backbone only; the MLP has 2).
    """
    if _levels(min(input_shape[:2])) == 0:
        return mlp.encoder(input_shape, units, hidden=hidden, name=name)
    return conv.encoder(input_shape, units, width=width, hidden=hidden, dense_layers=dense_layers, name=name)


def decoder(units, output_shape, *, width=32, hidden=256, dense_layers=0, broadcast=False, name="decoder"):
    """Maps `[B, units]` (z, plus a one-hot label when conditional) to raw image outputs `[B, H, W, C]`;
    the mirror image of `encoder` (its `dense_layers` come before the conv trunk), or with
    `broadcast` a spatial broadcast decoder."""
    if broadcast:
        return _broadcast_decoder(units, output_shape, width=width, name=name)
    if _levels(min(output_shape[:2])) == 0:
        return mlp.decoder(units, output_shape, hidden=hidden, name=name)
    return conv.decoder(units, output_shape, width=width, hidden=hidden, dense_layers=dense_layers, name=name)


def spatial_encoder(input_shape, channels, *, width=32, hidden=256, name="encoder"):
    """Maps images `[B, H, W, C]` to a grid of vectors `[B, h, w, channels]` (see `grid_shape`):
    the conv backbone without its Flatten/Dense head, ending in a 1x1 conv; an MLP for small images."""
    if _levels(min(input_shape[:2])) == 0:
        return mlp.spatial_encoder(input_shape, grid_shape(input_shape), channels, hidden=hidden, name=name)
    return conv.spatial_encoder(input_shape, channels, width=width, name=name)


def spatial_decoder(grid, output_shape, *, width=32, hidden=256, name="decoder"):
    """Maps a grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) to raw image outputs `[B, H, W, C]`."""
    if _levels(min(output_shape[:2])) == 0:
        return mlp.spatial_decoder(grid, output_shape, hidden=hidden, name=name)
    return conv.spatial_decoder(grid, output_shape, width=width, name=name)
