"""The spatial broadcast decoder (Watters et al., 2019): z tiled over the image with the pixel
coordinates appended, then stride-1 convs, so position is read from coordinates rather than
painted by upsampling convs."""

import keras
import numpy as np
from keras import layers, ops


def decoder(units, output_shape, *, width=32, name="decoder"):
    """`[B, units]` -> raw image outputs `[B, H, W, C]`: `SpatialBroadcast`, four 3x3 convs of
    `width` filters at full resolution, then the output conv (no dense layers: z goes straight to
    the grid)."""
    h, w, c = output_shape
    net = [keras.Input((units,)), SpatialBroadcast(h, w)]
    net += [layers.Conv2D(width, 3, padding="same", activation="relu") for _ in range(4)]
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
