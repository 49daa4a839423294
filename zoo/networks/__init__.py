"""Encoder and decoder backbones, chosen from the image shape and a `backbone` name.

- "conv" (`zoo.networks.conv`): one 3x3 conv per level, stride 2 down, transposed up.
- "resnet" (`zoo.networks.resnet`): pre-activation residual blocks, `depth` per level, optional
  group or weight normalisation; stride-2 convs down, nearest upsampling + conv up.

Both halve the side while it is above 7 and even (28 -> 7, 32 -> 4, 64 -> 4); images too small for
that (8x8 digits) get an MLP (`zoo.networks.mlp`) whatever the backbone. A decoder can instead be
a spatial broadcast decoder (`zoo.networks.broadcast`), which replaces the backbone's decoder.
All produce plain tensors; `zoo.distributions` turns them into distributions.
"""

from zoo.networks import conv, mlp, resnet
from zoo.networks.broadcast import SpatialBroadcast
from zoo.networks.broadcast import decoder as _broadcast_decoder
from zoo.networks.conv import _filters, _levels, grid_shape
from zoo.networks.resnet import WeightNormConv2D

BACKBONES = ("conv", "resnet")
NORMS = resnet.NORMS

__all__ = ["BACKBONES", "NORMS", "SpatialBroadcast", "WeightNormConv2D", "decoder", "encoder", "grid_shape",
           "spatial_decoder", "spatial_encoder"]


def encoder(input_shape, units, *, backbone="conv", width=32, hidden=256, dense_layers=0, depth=1, norm="none",
            name="encoder"):
    """Maps images `[B, H, W, C]` to `[B, units]` (e.g. the loc and raw scale of q(z|x)).

    Args:
        input_shape: `(H, W, C)`; C includes any label channels of a conditional model.
        units: size of the output vector.
        backbone: one of `BACKBONES`.
        width: filters of the first level (doubled per level, up to 4x).
        hidden: units of the hidden dense layers (the MLP's, and the trunk's `dense_layers`).
        dense_layers: hidden dense layers after the trunk (the MLP always has 2).
        depth: residual blocks per level ("resnet" only).
        norm: one of `NORMS` ("resnet" only).

    Raises:
        ValueError: an unknown backbone or norm, depth < 1, or sides that do not divide by the
            trunk's `2**levels`.
    """
    levels = _check(input_shape, backbone, depth, norm)
    if levels == 0:
        return mlp.encoder(input_shape, units, hidden=hidden, name=name)
    if backbone == "resnet":
        return resnet.encoder(input_shape, units, width=width, hidden=hidden, dense_layers=dense_layers, depth=depth,
                              norm=norm, name=name)
    return conv.encoder(input_shape, units, width=width, hidden=hidden, dense_layers=dense_layers, name=name)


def decoder(units, output_shape, *, backbone="conv", width=32, hidden=256, dense_layers=0, broadcast=False, depth=1,
            norm="none", name="decoder"):
    """Maps `[B, units]` (z, plus a one-hot label when conditional) to raw image outputs
    `[B, H, W, C]`: the mirror image of `encoder` (its `dense_layers` come before the trunk), or
    with `broadcast` a spatial broadcast decoder (`zoo.networks.broadcast.decoder`, whatever the
    backbone). C is `output_shape[-1]`: as many channels as the likelihood has parameters per pixel."""
    if broadcast:  # stride-1 convs: any image size
        _check_options(backbone, depth, norm)
        return _broadcast_decoder(units, output_shape, width=width, name=name)
    levels = _check(output_shape, backbone, depth, norm)
    if levels == 0:
        return mlp.decoder(units, output_shape, hidden=hidden, name=name)
    if backbone == "resnet":
        return resnet.decoder(units, output_shape, width=width, hidden=hidden, dense_layers=dense_layers, depth=depth,
                              norm=norm, name=name)
    return conv.decoder(units, output_shape, width=width, hidden=hidden, dense_layers=dense_layers, name=name)


def spatial_encoder(input_shape, channels, *, backbone="conv", width=32, hidden=256, depth=1, norm="none",
                    name="encoder"):
    """Maps images `[B, H, W, C]` to a grid of vectors `[B, h, w, channels]` (see `grid_shape`):
    the trunk without its Flatten/Dense head, ending in a 1x1 conv; an MLP for small images."""
    levels = _check(input_shape, backbone, depth, norm)
    if levels == 0:
        return mlp.spatial_encoder(input_shape, grid_shape(input_shape), channels, hidden=hidden, name=name)
    if backbone == "resnet":
        return resnet.spatial_encoder(input_shape, channels, width=width, depth=depth, norm=norm, name=name)
    return conv.spatial_encoder(input_shape, channels, width=width, name=name)


def spatial_decoder(grid, output_shape, *, backbone="conv", width=32, hidden=256, depth=1, norm="none",
                    name="decoder"):
    """Maps a grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) to raw image outputs `[B, H, W, C]`."""
    levels = _check(output_shape, backbone, depth, norm)
    if levels == 0:
        return mlp.spatial_decoder(grid, output_shape, hidden=hidden, name=name)
    if backbone == "resnet":
        return resnet.spatial_decoder(grid, output_shape, width=width, depth=depth, norm=norm, name=name)
    return conv.spatial_decoder(grid, output_shape, width=width, name=name)


def _check(image_shape, backbone, depth, norm):
    """The number of stride-2 levels for `image_shape`, once the arguments are known to be valid."""
    _check_options(backbone, depth, norm)
    levels = _levels(min(image_shape[:2]))
    if levels:
        conv.check_sides(image_shape, levels)
    return levels


def _check_options(backbone, depth, norm):
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone '{backbone}': expected one of {BACKBONES}.")
    if norm not in NORMS:
        raise ValueError(f"Unknown norm '{norm}': expected one of {NORMS}.")
    if int(depth) < 1:
        raise ValueError(f"Expected depth >= 1, received depth={depth}.")
