"""The conditional VAE's restyle: the same latent decoded with another label, its picture, and its
evaluation on OpenMoji's pairs "same emoji, other tone"."""

import os

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

import zoo
from zoo import data, report, viz
from zoo.data import openmoji


def tiny_cvae(size=16, num_classes=3):
    return zoo.create("cvae", input_shape=(size, size, 3), latent_dim=2, num_classes=num_classes, width=4, hidden=8,
                      likelihood="gaussian")


def colour(n, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def moji():
    """OpenMoji's test split, the same images in the same order as `zoo.data.load("openmoji", "test")`:
    only its SVGs are rasterized (1 s, not the 27 s of all 4,495 into the tests' empty cache)."""
    paths, _ = openmoji.svg_files()
    parsed = {path: openmoji.parse(os.path.basename(path)[:-len(".svg")]) for path in paths}
    test = [path for path, base_tone in parsed.items() if base_tone and openmoji.in_test(base_tone[0])]
    return openmoji.load("test", files=test, print_fn=lambda message: None)


def test_restyle_decodes_the_posterior_mean_with_the_other_label():
    model, x = tiny_cvae(), colour(4)
    labels, to = np.array([0, 1, 2, 0]), np.array([2, 2, 1, 0], np.int32)
    restyled = model.restyle(x, labels, to).numpy()
    expected = model.decode(model.encode(x, labels).mean(), to).mean().numpy()
    assert restyled.shape == (4, 16, 16, 3) and restyled.min() >= 0 and restyled.max() <= 1
    np.testing.assert_array_equal(restyled, expected)
    other = model.decode(model.encode(x, labels).mean(), labels).mean().numpy()
    assert np.abs(restyled[:3] - other[:3]).max() > 0  # the label given to the decoder is to_labels


@pytest.mark.parametrize("labels, to, message", [
    ([0, 1], [0, 1, 2, 0], r"Expected one class id in `labels` for each of the 4 images, received shape \(2,\)"),
    ([0, 1, 2, 0], [1, 1, 1], r"Expected one class id in `to_labels` for each of the 4 images, received shape \(3,\)"),
    ([0, 1, 2, 0], [[1, 1, 1, 1]], r"`to_labels` for each of the 4 images, received shape \(1, 4\)"),
    ([0, 1, 2, 0], [0, 1, 2, 3], r"Labels must lie in \[0, 2\], received \[0, 3\]"),
    ([0, 1, 2, 0], [0.0, 1.0, 2.0, 0.0], r"Expected integer class ids for `labels`, received dtype float32"),
    ([0, 1, 2, 0], None, r"This model is conditional on 3 classes: pass `labels`"),
])
def test_restyle_rejects_bad_labels(labels, to, message):
    with pytest.raises(ValueError, match=message):
        tiny_cvae().restyle(colour(4), labels, to)


def test_restyle_rejects_bad_images():
    model = tiny_cvae()
    with pytest.raises(ValueError, match=r"Expected images of shape \(batch, 16, 16, 3\), received \(2, 8, 8, 3\)"):
        model.restyle(colour(2, size=8), [0, 1], [1, 0])
    with pytest.raises(ValueError, match=r"Expected pixel values in \[0, 1\]"):
        model.restyle(colour(2) + 1, [0, 1], [1, 0])


def test_restyle_errors_on_known_images():
    targets = np.zeros((2, 2, 2, 3))
    copies = targets.copy()
    copies[0, 0, 0] = [0.3, 0.3, 0.3]  # pair 0: one pixel of four changes (0.9 summed over channels)
    copies[0, 1, 1] = [0.02, 0.02, 0.02]  # below the threshold: anti-aliasing, not a change
    restyled = copies.copy()
    restyled[0, 0, 0] = [0.1, 0.1, 0.1]  # the restyle moved the changed pixel two thirds of the way
    restyled[1] = 0.5
    errors = report.restyle_errors(restyled, copies, targets, threshold=0.1)
    np.testing.assert_allclose(errors["changed_fraction"], [0.25, 0.0])
    np.testing.assert_allclose(errors["copy_changed"][:1], [0.3])
    np.testing.assert_allclose(errors["restyle_changed"][:1], [0.1])
    np.testing.assert_allclose(errors["copy_image"], [(0.3 + 0.02) / 4, 0.0])
    np.testing.assert_allclose(errors["restyle_image"], [(0.1 + 0.02) / 4, 0.5])
    assert np.isnan(errors["copy_changed"][1]) and np.isnan(errors["restyle_changed"][1])  # nothing changed
    same = report.restyle_errors(targets, copies, targets)
    assert same["restyle_image"].max() == 0 and same["restyle_changed"][0] == 0


def test_draw_run_draws_restyle_png_with_inputs_and_each_label(tmp_path, monkeypatch):
    shown, grid_figure = {}, viz.grid_figure
    monkeypatch.setattr(viz, "grid_figure", lambda images, rows, cols, title, **options: shown.update(
        {title.split(",")[0]: (images, rows, cols, options)}) or grid_figure(images, rows, cols, title, **options))
    model, x, y = tiny_cvae(), colour(12), np.array([2, 2, 1, 0, 1, 0, 2, 1, 0, 0, 1, 2])
    drawn = viz.draw_run(model, str(tmp_path), x, y, class_names=["cat", "dog", "owl"])
    assert "restyle.png" in drawn and imread(str(tmp_path / "restyle.png")).shape[0] > 100
    images, rows, cols, options = shown["Restyles"]
    assert (rows, cols) == (3, 4) and options["col_labels"] == ["input", "cat", "dog", "owl"]
    assert options["row_labels"] == ["cat", "dog", "owl"]  # the first image of each class: 3, 2, 0
    grid = images.reshape(3, 4, 16, 16, 3)
    np.testing.assert_array_equal(grid[:, 0], x[[3, 2, 0]])
    np.testing.assert_allclose(grid[1, 1:], model.restyle(np.repeat(x[2:3], 3, 0), [1, 1, 1], [0, 1, 2]).numpy(),
                               atol=1e-6)  # another batch size: float rounding only

    viz.draw_run(model, str(tmp_path), x, y, restyle_rows=[5, 6])
    images, rows, cols, options = shown["Restyles"]
    assert (rows, cols) == (2, 4) and options["row_labels"] == ["0", "2"]
    assert "restyle.png" not in viz.draw_run(zoo.create("vae", input_shape=(16, 16, 3), latent_dim=2, width=4,
                                                        hidden=8), str(tmp_path), x, y)


def test_openmoji_restyle_metrics_score_each_pair_per_target_tone(moji):
    x, y = moji
    pairs, reason = report.openmoji_pairs(x, y)
    assert reason is None and len(pairs) == 990 and (y[pairs[:, 0]] != y[pairs[:, 1]]).all()

    class Copier:  # restyles by returning the input: its errors are the copy's
        def restyle(self, images, labels, to_labels):
            return tf.constant(images)

    out = report.restyle_metrics(Copier(), x, y, pairs, data.OPENMOJI_CLASSES, batch_size=100)
    errors = np.abs(x[pairs[:, 0]] - x[pairs[:, 1]])
    changed = errors.sum(-1) > report.RESTYLE_THRESHOLD
    per_pair = (errors.mean(-1) * changed).sum((1, 2)) / changed.sum((1, 2))
    assert out["copy_mae_image"] == out["restyle_mae_image"] == round(float(errors.mean()), 4)
    assert out["copy_mae_changed"] == out["restyle_mae_changed"] == round(float(per_pair.mean()), 4)
    assert 0.1 < out["restyle_changed_fraction"] < 0.15 and out["restyle_pairs"] == 990
    assert list(out["restyle_per_tone"]) == list(data.OPENMOJI_CLASSES)
    assert {t["pairs"] for t in out["restyle_per_tone"].values()} == {165}
    dark = pairs[y[pairs[:, 1]] == 5]
    assert out["restyle_per_tone"]["dark"]["copy_mae_image"] == round(float(
        np.abs(x[dark[:, 0]] - x[dark[:, 1]]).mean()), 4)

    model = tiny_cvae(64, 6)
    real = report.restyle_metrics(model, x, y, pairs[:130], data.OPENMOJI_CLASSES, batch_size=65)
    assert real["restyle_pairs"] == 130 and real["restyle_mae_image"] != real["copy_mae_image"]


def test_openmoji_pairs_are_refused_for_another_order_or_size(moji):
    x, y = moji
    assert "not openmoji's 408 test images in order" in report.openmoji_pairs(x[::-1], y[::-1])[1]
    assert "not openmoji's 408 test images in order" in report.openmoji_pairs(x[:10], y[:10])[1]
    assert "not at the 64x64x3" in report.openmoji_pairs(x[:, ::2, ::2], y)[1]


def test_compute_adds_the_restyle_block_for_a_conditional_openmoji_run(moji, monkeypatch):
    x, y = moji
    monkeypatch.setattr(report, "conditional_accuracy", lambda *a, **k: {})  # trains a classifier: not tested here
    settings = {"k": 0, "max_images": 10, "ood_k": 0, "ood_size": 10, "seed": 0}
    model = tiny_cvae(64, 6)
    out, _ = report.compute(model, x, y, "openmoji", settings, print_fn=lambda *a, **k: None)
    assert out["restyle_pairs"] == 990 and "restyle_mae" not in out["skipped"]
    assert {"restyle_mae_changed", "copy_mae_changed", "restyle_mae_image", "copy_mae_image"} <= set(out)
    groups = data.openmoji_groups("test")
    assert [int(y[i]) for i in out["restyle_examples"]] == list(range(6))
    assert all(i in groups for i in out["restyle_examples"])  # person emoji that exist in other tones
    assert "restyle_per_tone dark" in report.table(out)

    other, _ = report.compute(model, x[:20], y[:20], "folder", settings, print_fn=lambda *a, **k: None)
    assert "restyle_pairs" not in other and "openmoji" in other["skipped"]["restyle_mae"]
