"""Tiling images into one picture, with numpy alone: the apps import it without TensorFlow or matplotlib."""

import numpy as np

PAD = 2  # pixels between the images of a grid


def offsets(count, size, pad=PAD):
    """Where each of `count` cells of `size` pixels starts along one axis of a `mosaic`."""
    return [pad + i * (size + pad) for i in range(count)]


def mosaic(images, rows, cols, pad=PAD, fill=0.5):
    """Tiles `rows * cols` images `[N, H, W, C]` into one `[H', W', C]` array with `pad`-pixel lines."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) != rows * cols:
        raise ValueError(f"Expected {rows * cols} images of shape (N, H, W, C), received shape {images.shape}.")
    n, h, w, c = images.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.float32)
    tops, lefts = offsets(rows, h, pad), offsets(cols, w, pad)
    for i, image in enumerate(images):
        top, left = tops[i // cols], lefts[i % cols]
        out[top: top + h, left: left + w] = image
    return out
