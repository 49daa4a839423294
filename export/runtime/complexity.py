"""An image's complexity as the size of its PNG file, for the outlier score of Serrà et al. 2020
("Input complexity and out-of-distribution detection with likelihood-based generative models").

Likelihood models give simple images (flat backgrounds, few strokes) a high likelihood whatever
they show, so -log p(x) ranks dSprites' sparse shapes as *more* typical than digits. Subtracting
what a generic lossless compressor needs for the same image, L(x), leaves what the model knows
beyond "simple images are likely":

    S(x) = -log2 p(x) - L(x)   (bits; higher = more anomalous)

L(x) here is the byte size of a PNG file of the image (8-bit grey or RGB, one IDAT chunk, filter
type 0 on every row, zlib level 9), times 8. It is computed from the zlib stream alone, so a
browser can reproduce it with pako: the other chunks add a constant 57 bytes.
"""

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_OVERHEAD = 57  # signature 8 + IHDR 25 + IDAT's length, type and CRC 12 + IEND 12
COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: grey, RGB


def png_bytes(image):
    """A PNG file of one image `[H, W, C]` in [0, 1] (C = 1 or 3), as `complexity_bits` counts it."""
    pixels = _pixels(image)
    h, w, c = pixels.shape
    header = struct.pack(">IIBBBBB", w, h, 8, COLOUR_TYPES[c], 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(_scanlines(pixels), 9))
            + _chunk(b"IEND", b""))


def complexity_bits(images):
    """L(x) in bits for each image of `[B, H, W, C]` in [0, 1]: `[B]` float64."""
    return np.array([8.0 * (PNG_OVERHEAD + len(zlib.compress(_scanlines(_pixels(image)), 9))) for image in images])


def corrected(nll, images):
    """S(x) = -log2 p(x) - L(x) in bits, from -log p(x) in nats `[B]` and the images as scored."""
    return np.asarray(nll, np.float64) / np.log(2) - complexity_bits(images)


def _pixels(image):
    pixels = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    if pixels.ndim != 3 or pixels.shape[-1] not in COLOUR_TYPES:
        raise ValueError(f"Expected an image of shape (H, W, 1) or (H, W, 3), received {pixels.shape}.")
    return pixels


def _scanlines(pixels):
    rows = pixels.reshape(pixels.shape[0], -1)
    return np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1).tobytes()


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
