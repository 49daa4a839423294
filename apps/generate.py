"""Write a PNG grid of generated images with an exported decoder: numpy + onnxruntime only.

One row per class asked for, by id or, when the decoder's facts name its classes, by name (a name
wins over an id spelt the same), with `--per-class` images in each (z drawn from the model's prior,
in numpy); an unconditional decoder gives `--rows` rows. Each pixel becomes a `--scale` x `--scale`
block, so 28x28 digits are big enough to see. Grey or colour, as the decoder gives. The rows'
classes are printed and kept in the PNG's Description text. No TensorFlow, no imaging library: the
PNG is written with zlib.

    python apps/generate.py runs/cvae 3 7 --per-class 8 --seed 0 --out sevens_and_threes.png
    python apps/generate.py runs/cvae-pets cat dog --out cats_and_dogs.png
    python apps/generate.py runs/cvae/decoder.onnx --out all_classes.png
"""

import argparse
import os
import struct
import sys
import zlib

import numpy as np

# A checkout works without installing the zoo (which would pull in TensorFlow): the runtime is
# imported from the repository this app sits in.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from export.runtime import load_decoder  # noqa: E402
from zoo.cli import COUNT, POSITIVE_INT, HelpFormatter  # noqa: E402  (argparse only)
from zoo.grid import mosaic  # noqa: E402  (numpy only; importing zoo does not import TensorFlow)


def tile(images, rows, scale=1):
    """Lays `images` [rows * cols, H, W, C] in [0, 1] out as one uint8 picture, row by row, on black,
    each pixel repeated into a `scale` x `scale` block (nearest-neighbour enlargement)."""
    canvas = mosaic(images, rows, len(images) // rows, fill=0.0)
    pixels = np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def class_ids(decoder, asked):
    """The class id of each of `asked` (names or ids, as typed); every class when none is asked.

    Raises:
        ValueError: a word that is neither a class name nor an id.
    """
    names = decoder.class_names or []
    if not asked:
        return list(range(decoder.num_classes))
    ids = []
    for word in asked:
        if word in names:
            ids.append(names.index(word))
        elif word.isascii() and word.isdigit():  # out of range: refused by the decoder, which names the valid range
            ids.append(int(word))
        else:
            known = f"a class name ({', '.join(names)}) or " if names else ""
            raise ValueError(f"Unknown class {word!r}: expected {known}a class id from 0 to {decoder.num_classes - 1}.")
    return ids


def write_png(path, pixels, description=None):
    """Writes uint8 pixels [H, W] (grey) or [H, W, 3] (RGB) as an 8-bit PNG, with an optional
    Description text chunk (Latin-1)."""
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    scanlines = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0: raw rows

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    text = chunk(b"tEXt", b"Description\x00" + description.encode("latin-1", "replace")) if description else b""
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + text
                + chunk(b"IDAT", zlib.compress(scanlines, 9)) + chunk(b"IEND", b""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("decoder", help="an exported decoder (.onnx, or .tflite), or a run directory "
                                        "holding decoder.onnx")
    parser.add_argument("classes", nargs="*", help="class names (when the decoder has them) or ids, one row each "
                                                   "(default: every class)")
    parser.add_argument("--per-class", type=POSITIVE_INT, default=10, help="images per row")
    parser.add_argument("--rows", type=POSITIVE_INT, default=4, help="rows of an unconditional decoder")
    parser.add_argument("--scale", type=POSITIVE_INT, default=4,
                        help="enlarge the picture this many times (each pixel a block; 1: actual size)")
    parser.add_argument("--seed", type=COUNT, default=0, help="seed of the latents z")
    parser.add_argument("--out", default="generated.png", help="PNG file to write")
    args = parser.parse_args(argv)
    path = os.path.join(args.decoder, "decoder.onnx") if os.path.isdir(args.decoder) else args.decoder
    try:
        decoder = load_decoder(path)
        if decoder.num_classes:
            classes = class_ids(decoder, args.classes)
            labels, rows = np.repeat(classes, args.per_class), len(classes)
        elif args.classes:
            raise ValueError(f"{path} is not conditional: expected no classes, received {args.classes}.")
        else:
            labels, rows = None, args.rows
        images = decoder.generate(rows * args.per_class, labels=labels, seed=args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = decoder.class_names or [str(c) for c in range(decoder.num_classes or 0)]
    described = f"rows: {', '.join(names[c] for c in classes)}" if labels is not None else None
    write_png(args.out, tile(images, rows, args.scale), described)
    print(f"wrote {args.out}: {rows} x {args.per_class} images from {path}" + (f"; {described}" if described else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
