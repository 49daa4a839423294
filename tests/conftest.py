import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory):
    """Cached classifiers go to a test folder, not the user's ~/.cache/vae-zoo."""
    os.environ["VAE_ZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))

# Shapes of the backbones: conv for 28x28x1, 64x64x1 and 32x32x3, MLP for 8x8x1.
SHAPES = [(28, 28, 1), (64, 64, 1), (32, 32, 3), (8, 8, 1)]


@pytest.fixture(scope="session")
def mnist_small():
    """400 training and 100 test images of mnist5k, 40 / 10 per class."""
    from zoo import data

    (x, y), (xt, yt) = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    pick = lambda labels, n: np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)])
    i, j = pick(y, 40), pick(yt, 10)
    return (x[i], y[i]), (xt[j], yt[j])


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory, mnist_small):
    """The small MNIST subset as a keras-style .npz file, for recipe runs."""
    (x, y), (xt, yt) = mnist_small
    path = tmp_path_factory.mktemp("data") / "mnist_small.npz"
    np.savez(path, x_train=(x * 255).astype(np.uint8)[..., 0], y_train=y,
             x_test=(xt * 255).astype(np.uint8)[..., 0], y_test=yt)
    return str(path)


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


def write_run(out, model, variant, **fields):
    """A finished run directory of `model`, written as a recipe writes it but without training:
    `model.keras`, `saved_model/` and, last, the manifest with `fields`. Returns `out`."""
    from zoo import artifacts

    artifacts.begin_run(out)
    artifacts.save_model(model, out)
    artifacts.write_manifest(out, variant=variant, **{"config": model.get_config(), **fields})
    return out
