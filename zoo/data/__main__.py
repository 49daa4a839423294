"""Packs a dataset into TFRecord shards, or checks a packed one.

    python -m zoo.data pack SRC OUT_DIR --shards 8 [--image-size H[xW]] [--channels 1|3] [--fit crop|pad]
    python -m zoo.data verify OUT_DIR

SRC is a folder of images, an `.npz` file or IDX folder, or a dataset name. The flags are parsed
before TensorFlow is imported, so `--help` answers at once; bad input exits 2 with one line.
"""

import argparse
import sys
import time

import zoo
from zoo import data
from zoo.cli import COUNT, POSITIVE_INT, HelpFormatter, add_verbose


def _image_size(text):
    try:
        return data.parse_image_size(text)
    except data.DatasetError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m zoo.data", description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", formatter_class=HelpFormatter,
                               help="write both splits of SRC as TFRecord shards and index.json into OUT_DIR")
    pack.add_argument("src", metavar="SRC", help="a folder of images, an .npz file or IDX folder, or a dataset name")
    pack.add_argument("out", metavar="OUT_DIR", help="folder to write (refused if it exists and is not empty)")
    pack.add_argument("--shards", type=POSITIVE_INT, default=8,
                      help="shards per split (fewer when a split has fewer images); multi-worker training "
                           "needs at least one per worker")
    pack.add_argument("--image-size", type=_image_size, default=None, metavar="H[xW]",
                      help="resize every image (default: 64 for folders, as stored for arrays)")
    pack.add_argument("--channels", type=int, choices=(1, 3), default=None,
                      help="1 grey or 3 RGB (default: 3 for folders, as stored for arrays)")
    pack.add_argument("--fit", choices=data.FITS, default="crop",
                      help="crop: centre crop to the aspect ratio of --image-size; pad: pad with white to it")
    pack.add_argument("--seed", type=COUNT, default=0,
                      help="order of the images in the shards, and a folder's held-out test split")
    pack.add_argument("--skip-bad-files", action="store_true",
                      help="leave unreadable images out (listed, and in index.json) instead of stopping")
    pack.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    add_verbose(pack)
    verify = commands.add_parser("verify", formatter_class=HelpFormatter,
                                 help="check the index and every shard's size and sha256 of a packed folder")
    verify.add_argument("out", metavar="OUT_DIR", help="a folder written by `pack`")
    return parser


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, else a line every 10 s."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.start, self.last = stream, time.monotonic(), time.monotonic()
        self.tty = stream.isatty()

    def __call__(self, split, done, total):
        now = time.monotonic()
        if done == 0:  # a split starts: its rate counts from here
            self.start = self.last = now
            return
        if done < total and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        line = f"packing {split}: {done:,} / {total:,} images ({rate:,.0f} images/s)"
        self.stream.write(f"\r{line}\033[K" + ("\n" if done == total else "") if self.tty else line + "\n")
        self.stream.flush()


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "verify":
            return _verify(args.out)
        zoo.import_tensorflow(args.verbose)
        index = data.pack(args.src, args.out, shards=args.shards, image_size=args.image_size,
                          channels=args.channels, fit=args.fit, seed=args.seed, skip_bad_files=args.skip_bad_files,
                          overwrite=args.overwrite, progress=Progress())
    except (data.DatasetError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, entry in index["splits"].items():
        for file, reason in entry["skipped"]:
            print(f"skipped {file}: {reason}")
    shape = "x".join(map(str, index["image_shape"]))
    counts = ", ".join(f"{split} {_n(e['count'], 'image')} in {_n(len(e['shards']), 'shard')}"
                       for split, e in index["splits"].items())
    classes = f"; classes {', '.join(index['class_names'])}" if index["class_names"] else ""
    print(f"packed {args.src} into {args.out}: {counts}, {shape} pixels{classes}")
    return 0


def _verify(folder):
    bad = data.records.verify(folder)
    if bad:
        more = f" (and {len(bad) - 1} more shards)" if len(bad) > 1 else ""
        print(f"error: {bad[0][0]}: {bad[0][1]}{more}", file=sys.stderr)
        return 2
    index = data.records.read_index(folder)
    shards = sum(len(e["shards"]) for e in index["splits"].values())
    counts = ", ".join(f"{split} {_n(e['count'], 'image')}" for split, e in index["splits"].items())
    print(f"{folder}: ok, {_n(shards, 'shard')} match their size and sha256 ({counts})")
    return 0


def _n(count, noun):
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
