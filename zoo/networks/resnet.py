"""The residual backbone: pre-activation residual blocks (He et al., 2016), `depth` per level.

A block is norm -> swish -> conv3x3 -> norm -> swish -> conv3x3 plus the identity (a 1x1
projection when the block changes the channels). The encoder's stem is a stride-2 3x3 conv, so no
block runs at full resolution; each level's first block widens to `_filters(level)` and a
stride-2 3x3 conv leads to the next level. The decoder mirrors it: each level's last block
narrows to the next level's filters, then nearest upsampling and a 3x3 conv (not
Conv2DTranspose, which is slow in ONNX Runtime); at full resolution only a 3x3 conv of `width`
filters and a 1x1 conv to the output channels, so that a likelihood with many parameters per
pixel costs little. The levels are the conv backbone's (`_levels`).

Norms: "none"; "group" (GroupNormalization, up to 8 groups); "weight" (weight normalisation,
Salimans & Kingma 2016: every conv's kernel is `gain * v / ||v||` per output filter,
`WeightNormConv2D`, without the data-dependent initialisation). All export to ONNX and to
TFLite builtins.
"""

import math

import keras
from keras import layers, ops

from zoo.networks.conv import _filters, _levels, grid_shape

NORMS = ("none", "group", "weight")
GROUPS = 8


def encoder(input_shape, units, *, width=32, hidden=256, dense_layers=0, depth=1, norm="none", name="encoder"):
    """Images `[B, H, W, C]` -> `[B, units]`: the trunk, norm, swish, Flatten, `dense_layers`
    hidden dense layers (swish), then the output layer."""
    x = inputs = keras.Input(input_shape)
    x = layers.Flatten()(_activate(_trunk(x, width, depth, norm), norm))
    for _ in range(dense_layers):
        x = layers.Dense(hidden, activation="silu")(x)
    return keras.Model(inputs, layers.Dense(units)(x), name=name)


def decoder(units, output_shape, *, width=32, hidden=256, dense_layers=0, depth=1, norm="none", name="decoder"):
    """`[B, units]` -> raw image outputs `[B, H, W, C]`: `dense_layers` hidden dense layers, a
    linear dense layer to the smallest feature map, then the mirrored trunk."""
    x = inputs = keras.Input((units,))
    for _ in range(dense_layers):
        x = layers.Dense(hidden, activation="silu")(x)
    gh, gw = grid_shape(output_shape)
    top = _filters(_levels(min(output_shape[:2])) - 1, width)
    x = layers.Reshape((gh, gw, top))(layers.Dense(gh * gw * top)(x))
    return keras.Model(inputs, _mirrored_trunk(x, output_shape, width, depth, norm), name=name)


def spatial_encoder(input_shape, channels, *, width=32, depth=1, norm="none", name="encoder"):
    """Images `[B, H, W, C]` -> a grid of vectors `[B, h, w, channels]`: the trunk, norm, swish,
    then a 1x1 conv."""
    x = inputs = keras.Input(input_shape)
    x = _activate(_trunk(x, width, depth, norm), norm)
    return keras.Model(inputs, layers.Conv2D(channels, 1)(x), name=name)


def spatial_decoder(grid, output_shape, *, width=32, depth=1, norm="none", name="decoder"):
    """A grid of vectors `[B, h, w, D]` (`grid` is `(h, w, D)`) -> raw image outputs `[B, H, W, C]`:
    a 3x3 conv to the top level's filters, then the mirrored trunk."""
    x = inputs = keras.Input(tuple(grid))
    x = _conv(_filters(_levels(min(output_shape[:2])) - 1, width), 3, norm)(x)
    return keras.Model(inputs, _mirrored_trunk(x, output_shape, width, depth, norm), name=name)


def _trunk(x, width, depth, norm):
    """Stem (stride 2), then per level `depth` blocks and, between levels, a stride-2 conv."""
    levels = _levels(min(x.shape[1:3]))
    x = _conv(width, 3, norm, strides=2)(x)
    for level in range(levels):
        if level:
            x = _conv(x.shape[-1], 3, norm, strides=2)(x)
        for _ in range(depth):
            x = _block(x, _filters(level, width), norm)
    return x


def _mirrored_trunk(x, output_shape, width, depth, norm):
    """Per level (top first) `depth` blocks, the last narrowing to the next level's filters, then
    nearest upsampling and a 3x3 conv; at full resolution a 3x3 and a 1x1 conv to the outputs."""
    levels = _levels(min(output_shape[:2]))
    for level in reversed(range(levels)):
        for block in range(depth):
            last = block == depth - 1
            x = _block(x, _filters(max(level - 1, 0) if last else level, width), norm)
        if level:
            x = _conv(x.shape[-1], 3, norm)(_upsample(x))
    x = _upsample(_activate(x, norm))  # the blocks' sum is not activated yet
    x = layers.Activation("silu")(_conv(width, 3, norm)(x))
    return layers.Conv2D(output_shape[-1], 1)(x)


def _upsample(x):
    """Nearest upsampling by 2. The Reshape to the shape Keras knows restores the static shape that
    TensorFlow's repeat loses, without which TFLite's converter cannot legalise the weight-normalised
    conv that follows (it stays a Flex op)."""
    return layers.Reshape(tuple(2 * side for side in x.shape[1:3]) + (x.shape[-1],))(layers.UpSampling2D()(x))


def _block(x, filters, norm):
    """A pre-activation residual block from `x` to `filters` channels."""
    skip = x if x.shape[-1] == filters else _conv(filters, 1, norm)(x)
    h = _conv(filters, 3, norm)(_activate(x, norm))
    h = _conv(filters, 3, norm)(_activate(h, norm))
    return layers.Add()([skip, h])


def _activate(x, norm):
    """norm ("group" only: weight norm lives in the convs) -> swish."""
    if norm == "group":
        x = layers.GroupNormalization(groups=math.gcd(x.shape[-1], GROUPS))(x)
    return layers.Activation("silu")(x)


def _conv(filters, kernel_size, norm, strides=1):
    conv = WeightNormConv2D if norm == "weight" else layers.Conv2D
    return conv(filters, kernel_size, strides=strides, padding="same")


@keras.saving.register_keras_serializable(package="zoo")
class WeightNormConv2D(layers.Conv2D):
    """A Conv2D whose kernel is `gain * v / ||v||`, the norm over each output filter's weights
    (weight normalisation). `gain` starts at 1: about the norm of a Glorot-initialised filter
    whose fan-in and fan-out are alike, so the initial network is close to the plain one.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.gain = self.add_weight(shape=(self.filters,), initializer="ones", name="gain")

    def save_own_variables(self, store):
        """Conv2D saves its kernel and bias alone (as "0" and "1"); the gain follows them."""
        super().save_own_variables(store)
        if self.built:
            store[str(len(store))] = self.gain

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.gain.assign(store[str(len(store) - 1)])

    def convolution_op(self, inputs, kernel):
        """conv(x, v) * gain / ||v||: the same as conv(x, gain * v / ||v||), since the scale is per
        output filter, but the conv keeps a constant kernel, which TFLite's converter needs."""
        norm = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 1, 2)) + 1e-12)
        return super().convolution_op(inputs, kernel) * (self.gain / norm)
