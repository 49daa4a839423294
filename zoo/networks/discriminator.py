"""The discriminator of the adversarially trained models (the VAE-GAN): images -> the features of
one hidden layer, and a real-versus-generated logit.

Its trunk is the conv backbone's encoder trunk (`zoo.networks.conv`), with 5x5 kernels as in
Larsen et al. (2016) and LeakyReLU(0.2) as in DCGAN: one stride-2 conv per level, `_filters`
filters, group normalisation, LeakyReLU, then Flatten and a linear logit. Images too small for a
conv trunk (8x8 digits) get two hidden dense layers, layer-normalised, instead.

The normalisation is what makes the features a measure of likeness: Larsen et al. normalise theirs
with batch norm; without any, a freshly initialised discriminator's features are so small that
their Gaussian log-likelihood barely changes with the reconstruction, and the encoder, which
trades it against the KL, stops encoding (measured on mnist5k after 2 epochs at gamma 0.01: a KL
of 1 nat without normalisation, 28 with group norm). Per-image normalisation (group or layer
norm) instead of batch norm keeps apart the real and generated images that share a batch. It is a
training-time network only: nothing exports it.
"""

import math

import keras
from keras import layers

from zoo.networks.conv import _filters, _levels, check_sides

KERNEL = 5
GROUPS = 8  # at most, as in the residual backbone's group norm
SLOPE = 0.2  # LeakyReLU's negative slope
MLP_LAYERS = 2


def feature_layers(input_shape):
    """How many hidden layers a discriminator of images `input_shape` has, any of which
    `feature_layer` may name: its conv levels, or its dense layers for images under 16 pixels."""
    return _levels(min(input_shape[:2])) or MLP_LAYERS


def discriminator(input_shape, *, width=32, hidden=256, feature_layer=None, name="discriminator"):
    """Maps images `[B, H, W, C]` to `(features, logits)`: the activations of hidden layer
    `feature_layer` (`[B, h, w, c]` for a conv level, `[B, hidden]` for a dense layer) and one
    logit per image `[B, 1]` (positive: real).

    Args:
        input_shape: `(H, W, C)`.
        width: filters of the first conv level (doubled per level, up to 4x).
        hidden: units of the dense layers of the MLP discriminator (images under 16 pixels).
        feature_layer: the hidden layer whose features are returned, from 1 (the first) to
            `feature_layers(input_shape)`; None: the last.

    Raises:
        ValueError: a `feature_layer` out of range, or sides that do not divide by the trunk's `2**levels`.

    Example:
        net = discriminator((28, 28, 1), width=32)  # two 5x5 stride-2 levels: 28 -> 14 -> 7
        features, logits = net(images)  # [B, 7, 7, 64], [B, 1]
    """
    count, levels = feature_layers(input_shape), _levels(min(input_shape[:2]))
    feature_layer = count if feature_layer is None else feature_layer
    if int(feature_layer) != feature_layer or not 1 <= feature_layer <= count:
        raise ValueError(f"Expected a feature_layer from 1 to {count} (the discriminator's hidden layers for "
                         f"{'x'.join(map(str, input_shape))} images), received feature_layer={feature_layer!r}.")
    if levels:
        check_sides(input_shape, levels)
    x = inputs = keras.Input(input_shape)
    hidden_outputs = []
    if not levels:
        x = layers.Flatten()(x)
    for level in range(count):
        if levels:
            filters = _filters(level, width)
            x = layers.Conv2D(filters, KERNEL, strides=2, padding="same")(x)
            x = layers.GroupNormalization(groups=math.gcd(filters, GROUPS))(x)
        else:
            x = layers.LayerNormalization()(layers.Dense(hidden)(x))
        x = layers.LeakyReLU(SLOPE)(x)
        hidden_outputs.append(x)
    logits = layers.Dense(1)(layers.Flatten()(x) if levels else x)
    return keras.Model(inputs, [hidden_outputs[int(feature_layer) - 1], logits], name=name)
