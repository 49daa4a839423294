"""A gated PixelCNN (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
Decoders") over a grid of discrete codes: the VQ-VAE's autoregressive prior p(z) = prod p(z_ij | z_<ij).

Codes enter through an embedding (a GATHER in ONNX and TFLite). Two stacks of masked convolutions
keep every output causal in raster order, with no blind spot:

- the vertical stack sees the rows above: its first conv masks the centre row, later ones keep
  it (the rows above the rows above are still above);
- the horizontal stack sees the current row left of the position: its first conv masks the
  centre, later ones keep it; each layer adds the vertical stack's features (1x1 conv) and has a
  residual connection.

Each layer is gated, tanh(a) * sigmoid(b), with dropout on the horizontal stack's gated features.
The network gives logits for every position at once, so training is one pass; sampling runs it
once per position (`export.runtime.sample_codes`).
"""

import keras
import numpy as np
import tensorflow as tf

MASKS = ("vertical", "horizontal")
CHUNK = 1024  # code grids per network call in `CodePrior.log_prob`


@keras.saving.register_keras_serializable(package="zoo")
class MaskedConv2D(keras.layers.Conv2D):
    """A 'same'-padded Conv2D whose kernel is multiplied by a fixed causal mask.

    Args:
        filters: output channels.
        kernel_size: `(kh, kw)`, odd sizes.
        mask: "vertical" keeps the kernel rows above the centre; "horizontal" keeps the
            centre row left of the centre.
        include_centre: also keep the centre row ("vertical") or the centre ("horizontal");
            False for a stack's first layer, which must not see the position it predicts.

    Example:
        MaskedConv2D(64, (3, 3), "vertical", include_centre=False)(keras.Input((7, 7, 32)))
    """

    def __init__(self, filters, kernel_size, mask="vertical", include_centre=True, **kwargs):
        kwargs["padding"] = "same"
        super().__init__(filters, kernel_size, **kwargs)
        if mask not in MASKS:
            raise ValueError(f"Unknown mask '{mask}': expected one of {MASKS}.")
        self.mask, self.include_centre = mask, bool(include_centre)
        self.kernel_mask = causal_mask(self.kernel_size, mask, include_centre)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * self.kernel_mask)

    def get_config(self):
        return {**super().get_config(), "mask": self.mask, "include_centre": self.include_centre}


def causal_mask(kernel_size, mask, include_centre):
    """The `[kh, kw, 1, 1]` float32 mask of a `MaskedConv2D` kernel (1 where a weight is used)."""
    kh, kw = kernel_size
    keep = np.zeros((kh, kw), np.float32)
    if mask == "vertical":
        keep[: kh // 2 + int(include_centre)] = 1
    else:
        keep[kh // 2, : kw // 2 + int(include_centre)] = 1
    return keep[:, :, None, None]


def gated_pixelcnn(grid, num_codes, *, filters=64, layers=6, kernel_size=3, dropout=0.1, name="pixelcnn"):
    """A gated PixelCNN: int32 codes `[B, h, w]` -> logits `[B, h, w, num_codes]`, where the
    logits at (i, j) depend only on the codes before (i, j) in raster order.

    Args:
        grid: `(h, w)`.
        num_codes: K, the codebook size.
        filters: channels of both stacks.
        layers: gated layers after the first (masked-centre) convs. With 3x3 kernels each one
            widens the view by a row up and a column each side; `max(h, w) - 1` of them see the
            whole causal context.
        kernel_size: odd side of the vertical stack's kernel (the horizontal one is 1 x side).
        dropout: dropout rate on each layer's gated horizontal features.
    """
    codes = keras.Input(tuple(grid), dtype="int32", name="codes")
    x = keras.layers.Embedding(num_codes, filters, name="embedding")(codes)
    k = int(kernel_size)
    v = MaskedConv2D(filters, (k, k), "vertical", include_centre=False, name="vertical_0")(x)
    h = MaskedConv2D(filters, (1, k), "horizontal", include_centre=False, name="horizontal_0")(x)
    for i in range(1, int(layers) + 1):
        v, h = _gated_layer(v, h, filters, k, dropout, f"{i}")
    h = keras.layers.Conv2D(filters, 1, activation="relu", name="head")(keras.ops.relu(h))
    logits = keras.layers.Conv2D(num_codes, 1, dtype="float32", name="logits")(h)
    return keras.Model(codes, logits, name=name)


def _gated_layer(v, h, filters, k, dropout, suffix):
    """One gated layer: vertical features feed the horizontal stack, never the other way."""
    v_features = MaskedConv2D(2 * filters, (k, k), "vertical", name=f"vertical_{suffix}")(v)
    h_features = MaskedConv2D(2 * filters, (1, k), "horizontal", name=f"horizontal_{suffix}")(h)
    h_features = h_features + keras.layers.Conv2D(2 * filters, 1, name=f"vertical_to_horizontal_{suffix}")(v_features)
    h_gated = keras.layers.Dropout(dropout, name=f"dropout_{suffix}")(_gate(h_features))
    h_out = h + keras.layers.Conv2D(filters, 1, name=f"residual_{suffix}")(h_gated)
    return _gate(v_features), h_out


def _gate(features):
    """tanh(a) * sigmoid(b) for the two halves a, b of the channels."""
    a, b = keras.ops.split(features, 2, axis=-1)
    return keras.ops.tanh(a) * keras.ops.sigmoid(b)


def code_nll(codes, logits):
    """-log p(codes) per grid, in nats: the sum over positions of the cross-entropy, `[B]`."""
    nll = keras.ops.sparse_categorical_crossentropy(keras.ops.cast(codes, "int32"), logits, from_logits=True)
    return keras.ops.sum(nll, axis=(1, 2))


class CodePrior:
    """p(z) of a PixelCNN network, as `model.prior()` gives it: `log_prob` and `sample`.

    Args:
        network: a `gated_pixelcnn`.

    Example:
        prior = CodePrior(model.pixelcnn)
        codes = prior.sample(16, seed=0)   # int32 [16, h, w]
        nats = prior.log_prob(codes)       # [16]
    """

    def __init__(self, network):
        self.network = network
        self.grid_shape = tuple(network.input_shape[1:])
        self.num_codes = int(network.output_shape[-1])

    def logits(self, codes):
        """Logits `[B, h, w, K]` of every position given the codes before it."""
        return self.network(tf.cast(codes, tf.int32), training=False)

    def log_prob(self, codes):
        """log p(codes) in nats per grid, `[B]`, for int codes `[B, h, w]` (any B: run in chunks)."""
        codes = tf.cast(codes, tf.int32)
        if not tf.executing_eagerly():
            return -code_nll(codes, self.logits(codes))
        chunks = [codes[i:i + CHUNK] for i in range(0, int(codes.shape[0]), CHUNK)]
        return tf.concat([-code_nll(chunk, self.logits(chunk)) for chunk in chunks], 0) if chunks else tf.zeros([0])

    def sample(self, n, seed=None):
        """`n` code grids, int32 `[n, h, w]`, drawn in raster order: the uniforms of
        `numpy.random.default_rng(seed)` through each position's inverse CDF, as
        `export.runtime` draws them, so both give the same codes for the same seed."""
        from export.runtime import sample_codes  # numpy only: the one sampling loop of the zoo

        uniforms = np.random.default_rng(seed).random((int(n), *self.grid_shape))
        return tf.constant(sample_codes(lambda codes: self.logits(codes).numpy(), uniforms, CHUNK))
