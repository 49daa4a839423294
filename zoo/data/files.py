"""Datasets from local files: an `.npz` file or a folder of MNIST IDX files.

An `.npz` file holds `x_train`, `y_train`, `x_test`, `y_test`, or only `x`, `y`: then a seeded
`TEST_FRACTION` of its images is the test split (`lacks_test_split` says when), so a model is
never scored on the images it trained on.
"""

import gzip
import os

import numpy as np

from zoo.data.errors import DatasetError

TEST_FRACTION = 0.1  # of an .npz file with only `x`, `y`, held out (seeded) as its test split


def is_path(name):
    return os.path.sep in name or name.endswith(".npz") or os.path.exists(name)


def lacks_test_split(name):
    """True when `name` is an `.npz` file with only `x`, `y`, whose test split `load` holds out."""
    if not is_path(name) or not os.path.isfile(name):
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


def load(path, split, seed):
    """`(x, y)` of the `split` of an .npz file or IDX folder at `path`."""
    if not os.path.exists(path):
        raise DatasetError(f"Dataset file not found: {path}. Check the path, or use one of mnist5k, digits, dsprites.")
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
    x = to_float(x)
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
    return to_float(arrays[0]), arrays[1].astype(np.int64)


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


def to_float(x, chunk=4096):
    """Images as float32 NHWC; 8-bit ones divided by 255 as numpy divides them (in float64), a
    `chunk` of images at a time, so the float64 intermediate stays small."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if not np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32)
    out = np.empty(x.shape, np.float32)
    for start in range(0, len(x), chunk):
        out[start:start + chunk] = x[start:start + chunk] / 255.0
    return out
