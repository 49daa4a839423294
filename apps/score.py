"""Score images by how unlike the training data they are, with an exported model: numpy + onnxruntime
(or ai-edge-litert) only.

Each SOURCE is an `.npz` (the array `x`, or its only array: [N, H, W, C] or [N, H, W], uint8 0-255 or
floats in [0, 1]) or a folder of PNG/JPEG files (read with Pillow, resized to the model's input).
Every image gets the model's default outlier score (-log2 p(x) minus its PNG size in bits, higher is
more anomalous; `export.runtime.Model.outlier_score`), raw -log p(x) in nats, its percentile among the
test images and a verdict in words. The table has one row per source; with several sources, the
AUROC of each one against the first (the inliers) for both scores. A CSV gets one row per image, a
PNG the most anomalous images.

    python -m export runs/cvae --parts decoder,encoder          # once, with TensorFlow
    python apps/score.py runs/cvae test_digits.npz dsprites.npz noise.npz --csv scores.csv --png odd.png
"""

import argparse
import csv
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # the runtime from this checkout, and the app beside this one
from export.runtime import load_model  # noqa: E402
from generate import tile, write_png  # noqa: E402  (the app beside this one)
from zoo.cli import COUNT, POSITIVE_INT, HelpFormatter  # noqa: E402  (argparse only)

IMAGE_FILES = (".png", ".jpg", ".jpeg")


def read_source(path, shape):
    """`(images [N, H, W, C] float32 in [0, 1], names)` from an `.npz` or a folder of images.

    Raises:
        ValueError: a missing path, an array of the wrong shape or range, no images in a folder.
    """
    if os.path.isdir(path):
        return read_folder(path, shape)
    if not path.endswith(".npz") or not os.path.isfile(path):
        raise ValueError(f"{path}: expected an .npz file or a folder of {'/'.join(IMAGE_FILES)} images.")
    with np.load(path) as arrays:
        if "x" not in arrays and len(arrays.files) != 1:
            raise ValueError(f"{path}: expected an array named `x` (or a single array), found {arrays.files}.")
        x = arrays["x" if "x" in arrays else arrays.files[0]]
    x = x[..., None] if x.ndim == 3 else x
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{path}: expected images of shape (N, {', '.join(map(str, shape))}), received {x.shape}.")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{path}: expected uint8 pixels or floats in [0, 1], received [{x.min():g}, {x.max():g}].")
    return x, [f"{os.path.basename(path)}[{i}]" for i in range(len(x))]


def read_folder(path, shape):
    try:
        from PIL import Image
    except ImportError as err:
        raise ValueError(f"Reading the images of {path} needs Pillow: pip install pillow (or pass an .npz).") from err
    names = sorted(name for name in os.listdir(path) if name.lower().endswith(IMAGE_FILES))
    if not names:
        raise ValueError(f"{path}: no {'/'.join(IMAGE_FILES)} files.")
    h, w, c = shape
    mode = "L" if c == 1 else "RGB"
    x = np.stack([np.asarray(Image.open(os.path.join(path, name)).convert(mode).resize((w, h), Image.BILINEAR),
                             np.float32).reshape(h, w, c) / 255 for name in names])
    return x, names


def auroc(inliers, outliers):
    """P(an outlier scores higher than an inlier), ties counting half (the Mann-Whitney U statistic)."""
    ordered = np.sort(np.asarray(inliers, np.float64))
    below = np.searchsorted(ordered, outliers, side="left")  # inliers under each outlier
    tied = np.searchsorted(ordered, outliers, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(ordered) * len(outliers)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("model", help="a run directory or folder with encoder.onnx and decoder.onnx "
                                      "(python -m export RUN_DIR --parts decoder,encoder)")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help=".npz files or image folders; the first is "
                                                                     "the reference for the AUROC column")
    parser.add_argument("--format", choices=("onnx", "tflite"), default="onnx", help="which exported files to run")
    parser.add_argument("--k", type=POSITIVE_INT, default=None,
                        help="importance samples per image (default: the k the model was calibrated with)")
    parser.add_argument("--seed", type=COUNT, default=0, help="seed of the importance samples")
    parser.add_argument("--csv", default="scores.csv", help="CSV file with one row per image")
    parser.add_argument("--png", default="most_anomalous.png", help="PNG of the most anomalous images")
    parser.add_argument("--top", type=POSITIVE_INT, default=32, help="images in the PNG")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, args.format)
        rows = [score_source(model, path, args.k, args.seed) for path in args.sources]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_table(rows)
    write_csv(args.csv, rows)
    write_most_anomalous(args.png, rows, args.top)
    print(f"wrote {args.csv} ({sum(len(row['names']) for row in rows)} images) and {args.png}")
    return 0


def score_source(model, path, k, seed):
    x, names = read_source(path, model.input_shape)
    scores = model.outlier_scores(x, k=k, seed=seed)  # one importance-sampled NLL for both
    nll, score = scores["nll"], scores["complexity"]
    calibrated = bool(model.facts.get("outlier"))
    return {"source": path, "names": names, "x": x, "nll": nll, "score": score,
            "percentile": model.percentile(score) if calibrated else np.full(len(x), np.nan),
            "verdict": model.verdict(score) if calibrated else ["(no calibration)"] * len(x)}


def print_table(rows):
    first = rows[0]
    print("| source | images | -log p(x) (nats) | outlier score (bits) | above the test set's 99th percentile | "
          "AUROC vs first, outlier score | AUROC vs first, -log p(x) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        above = np.mean(row["percentile"] > 99) if not np.isnan(row["percentile"]).all() else float("nan")
        versus = (f"{auroc(first['score'], row['score']):.4f} | {auroc(first['nll'], row['nll']):.4f}"
                  if row is not first else "(reference) | (reference)")
        print(f"| {row['source']} | {len(row['names'])} | {np.mean(row['nll']):.2f} | {np.mean(row['score']):.1f} | "
              f"{above:.1%} | {versus} |")


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "image", "nll_nats", "outlier_score_bits", "test_percentile", "verdict"])
        for row in rows:
            for i, name in enumerate(row["names"]):
                writer.writerow([row["source"], name, f"{row['nll'][i]:.4f}", f"{row['score'][i]:.4f}",
                                 f"{row['percentile'][i]:.2f}", row["verdict"][i]])


def write_most_anomalous(path, rows, top):
    x = np.concatenate([row["x"] for row in rows])
    worst = np.argsort(-np.concatenate([row["score"] for row in rows]), kind="stable")[:top]
    columns = min(8, len(worst))
    cells = np.concatenate([x[worst], np.zeros((-len(worst) % columns, *x.shape[1:]), np.float32)])
    write_png(path, tile(cells, len(cells) // columns, scale=2), "most anomalous first, row by row")


if __name__ == "__main__":
    sys.exit(main())
