"""Datasets that `keras.datasets` downloads: `mnist`, `fashion_mnist`, `cifar10`."""

import numpy as np

from zoo.data.errors import DatasetError
from zoo.data.files import to_float

ONLINE = ("mnist", "fashion_mnist", "cifar10")


def load(name, split):
    """`(x, y)` of a `keras.datasets` dataset; a DatasetError says how to work offline."""
    import keras

    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as err:  # keras raises plain Exception subclasses for network failures
        raise DatasetError(
            f"Could not download '{name}' through keras.datasets ({type(err).__name__}: {err}). "
            f"Offline, download it elsewhere and pass its path: --dataset path/to/{name}.npz "
            "(keys x_train, y_train, x_test, y_test) or a folder of MNIST IDX files; "
            "or use an offline dataset: mnist5k, digits, dsprites."
        ) from err
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    return to_float(x), np.asarray(y).reshape(-1).astype(np.int64)
