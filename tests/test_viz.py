"""Pictures: each figure renders to a non-blank PNG, `draw_run` draws what applies to each model, and
apps/generate.py writes its grid."""

import json
import os
import runpy

import numpy as np
import pytest
from matplotlib.image import imread

import zoo
from test_runtime import facts, read_grey_png, write_onnx  # the app's other tests' tiny decoder and PNG reader
from zoo import grid, viz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png(fig, path):
    viz.save(fig, str(path))
    image = imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # something is drawn
    return image


def test_mosaic_places_each_image_in_its_cell():
    images = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((6, 3, 4, 1), np.float32)
    tile = grid.mosaic(images, rows=2, cols=3, pad=1, fill=-1)
    assert tile.shape == (2 * 4 + 1, 3 * 5 + 1, 1)
    assert tile[1, 1, 0] == 0 and tile[1, 6, 0] == 1 and tile[5, 11, 0] == 5 and tile[0, 0, 0] == -1
    with pytest.raises(ValueError, match=r"Expected 4 images of shape \(N, H, W, C\), received shape \(6, 3, 4, 1\)"):
        grid.mosaic(images, rows=2, cols=2)


def test_figures_render(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(12, 8, 8, 1)).astype(np.float32)
    png(viz.grid_figure(images, 3, 4, "a grid", row_labels=["a", "b", "c"], col_labels=list("wxyz")),
        tmp_path / "grid.png")
    png(viz.grid_figure(rng.uniform(size=(4, 8, 8, 3)), 2, 2, "colour"), tmp_path / "colour.png")
    z = np.linspace(-2, 2, 3)
    png(viz.manifold_figure(rng.uniform(size=(9, 8, 8, 1)), z, z, "manifold"), tmp_path / "manifold.png")
    png(viz.latent_map_figure(rng.normal(size=(60, 5)), rng.integers(0, 3, 60), "map", class_names=viz.SHAPE_NAMES),
        tmp_path / "map.png")
    png(viz.codebook_figure(np.r_[rng.integers(1, 50, 12), np.zeros(4)], "codes"), tmp_path / "codes.png")
    with pytest.raises(ValueError, match=r"Expected latent means of shape \(N, D >= 2\), received \(5, 1\)"):
        viz.latent_map_figure(np.zeros((5, 1)), np.zeros(5, int), "map")


def test_training_curves_from_history(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,kl,loss,val_kl,val_loss\n0,9,300,8,280\n1,7,250,7,245\n2,6,240,6,241\n")
    png(viz.training_curves_figure(str(history), "curves"), tmp_path / "curves.png")
    history.write_text("epoch,loss,val_loss\n0,300,NA\n1,250,NA\n")  # no validation split
    png(viz.training_curves_figure(str(history), "curves"), tmp_path / "curves.png")
    history.write_text("epoch,loss\n")
    with pytest.raises(ValueError, match="has no epochs to plot"):
        viz.training_curves_figure(str(history), "curves")


def tiny(name, latent_dim=2):
    kwargs = {"num_classes": 10} if zoo.get_class(name).conditional else {}
    return zoo.create(name, input_shape=(28, 28, 1), latent_dim=latent_dim, width=8, hidden=32, **kwargs)


@pytest.mark.parametrize("name, latent_dim, expected", [
    ("vae", 2, {"samples", "manifold", "latent_map"}),
    ("vae", 5, {"samples", "latent_map"}),
    ("cvae", 3, {"class_grid", "latent_map", "restyle"}),
    ("ae", 3, {"latent_map"}),
])
def test_draw_run_draws_what_applies(tmp_path, mnist_small, name, latent_dim, expected):
    _, (x, y) = mnist_small
    model = tiny(name, latent_dim)
    means = model.encode(x, y if model.num_classes else None).mean().numpy()
    drawn = viz.draw_run(model, str(tmp_path), x, y, means=means, name=f"{name} test")
    always = {"reconstructions", "traversals", "interpolation"}
    assert set(drawn) == {f"{p}.png" for p in always | expected}
    for filename in drawn:
        imread(str(tmp_path / filename))


def reddened(name, num_classes=None):
    """A tiny untrained 32x32x3 model whose decoder draws every pixel pure red, whatever z: sigmoid of
    +-6 in each channel."""
    model = zoo.create(name, input_shape=(32, 32, 3), latent_dim=2, width=8, hidden=32, likelihood="gaussian",
                       **({"num_classes": num_classes} if num_classes else {}))
    last = model.decoder.layers[-1]
    kernel, _ = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.array([6.0, -6.0, -6.0], np.float32)])
    return model


@pytest.mark.parametrize("name, expected", [
    ("vae", {"samples", "manifold"}),
    ("cvae", {"class_grid", "manifold", "restyle"}),
])
def test_draw_run_draws_colour_runs_in_colour(tmp_path, monkeypatch, name, expected):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(12, 32, 32, 3)).astype(np.float32), np.arange(12) % 3
    model = reddened(name, 3 if name == "cvae" else None)
    rows, latent_map = {}, viz.latent_map_figure
    monkeypatch.setattr(viz, "latent_map_figure", lambda *a, **k: rows.update(legend=k["class_names"]) or
                        latent_map(*a, **k))
    means = model.encode(x, y if model.num_classes else None).mean().numpy()
    drawn = viz.draw_run(model, str(tmp_path), x, y, means=means, name=f"{name} colour",
                         class_names=["cat", "dog", "owl"])
    pictures = {"reconstructions", "traversals", "interpolation"} | expected
    assert set(drawn) == {f"{p}.png" for p in pictures | {"latent_map"}}
    for picture in pictures:
        image = imread(str(tmp_path / f"{picture}.png"))
        red = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
        assert red.sum() > 500, f"{picture}.png does not show the decoder's red images"
    assert rows["legend"] == ["cat", "dog", "owl"]


def test_class_grid_rows_are_named_by_the_manifests_class_names(tmp_path, monkeypatch):
    labels, grid_figure = {}, viz.grid_figure
    monkeypatch.setattr(viz, "grid_figure", lambda images, rows, cols, title, **options: labels.update(
        {title.split(",")[0]: options.get("row_labels")}) or grid_figure(images, rows, cols, title, **options))
    model, x = reddened("cvae", 3), np.zeros((6, 32, 32, 3), np.float32)
    viz.draw_run(model, str(tmp_path), x, np.arange(6) % 3, class_names=["cat", "dog", "owl"])
    assert labels["Class-conditional samples"] == ["cat", "dog", "owl"]
    viz.draw_run(model, str(tmp_path), x, np.arange(6) % 3)
    assert labels["Class-conditional samples"] == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"Expected one class name for each of the model's 3 classes, received 2: "
                                         r"\['cat', 'dog'\]"):
        viz.draw_run(model, str(tmp_path), x, np.arange(6) % 3, class_names=["cat", "dog"])


def test_draw_run_colours_dsprites_by_shape_and_names_each_latents_factor(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(30, 28, 28, 1)) > 0.8).astype(np.float32)
    factors = np.stack([rng.integers(0, s, 30) for s in (3, 6, 40, 32, 32)], 1)
    model = tiny("vae", 3)
    labels, grid_figure = {}, viz.grid_figure

    def spy(images, rows, cols, title, **options):  # records each figure's row labels
        labels[title] = options.get("row_labels")
        return grid_figure(images, rows, cols, title, **options)

    monkeypatch.setattr(viz, "grid_figure", spy)
    drawn = viz.draw_run(model, str(tmp_path), x, factors, means=model.encode(x).mean().numpy(),
                         kl=np.array([0.5, 2.0, 0.0]), main_factor={"z2:x": 0.85})
    assert "latent_map.png" in drawn and "interpolation.png" in drawn
    traversal_rows = next(rows for title, rows in labels.items() if title.startswith("Latent traversals"))
    assert "z2 (KL 2.0)\nx 0.85" in traversal_rows and "z1 (KL 0.5)" in traversal_rows


def test_draw_run_for_a_vq_model(tmp_path, mnist_small):
    _, (x, y) = mnist_small
    counts = np.r_[np.arange(12) * 10, np.zeros(4)]
    vq = zoo.create("vqvae", input_shape=(28, 28, 1), latent_dim=2, num_codes=16, width=8, hidden=32)
    drawn = viz.draw_run(vq, str(tmp_path), x, y, code_counts=counts, name="vq")
    assert drawn == ["codebook_usage.png", "reconstructions.png", "samples.png"]
    vq = zoo.create("vqvae", input_shape=(28, 28, 1), latent_dim=2, num_codes=16, width=8, hidden=32,
                    prior="pixelcnn", prior_filters=8, prior_layers=2)
    os.makedirs(tmp_path / "pixelcnn")
    drawn = viz.draw_run(vq, str(tmp_path / "pixelcnn"), x, y, name="vq")  # beside the baseline prior's samples
    assert drawn == ["reconstructions.png", "samples.png", "samples_frequencies.png"]


# --- apps/generate.py: the PNG grid of generated digits ------------------------------------------

GENERATE = os.path.join(ROOT, "apps", "generate.py")


def test_generate_writes_pictures_enlarged_by_scale(tmp_path):
    app = runpy.run_path(GENERATE)  # not __main__: defines main and tile, generates nothing
    decoder = os.path.join(ROOT, "zoo", "pretrained", "cvae-mnist5k", "decoder.onnx")
    for scale in (1, 4):
        assert app["main"]([decoder, "3", "7", "--per-class", "2", "--scale", str(scale),
                            "--out", str(tmp_path / f"x{scale}.png")]) == 0
    small, big = read_grey_png(tmp_path / "x1.png"), read_grey_png(tmp_path / "x4.png")
    assert small.shape == (2 * 28 + 3 * grid.PAD, 2 * 28 + 3 * grid.PAD)
    assert big.shape == (4 * small.shape[0], 4 * small.shape[1])
    np.testing.assert_array_equal(big, small.repeat(4, axis=0).repeat(4, axis=1))  # nearest neighbour
    assert app["main"]([decoder, "--out", str(tmp_path / "default.png")]) == 0
    assert read_grey_png(tmp_path / "default.png").shape == (4 * (10 * 28 + 11 * grid.PAD),) * 2  # --scale 4


def test_generate_help_shows_each_default_once(capsys):
    app = runpy.run_path(GENERATE)
    with pytest.raises(SystemExit):
        app["main"](["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "class names (when the decoder has them) or ids, one row each (default: every class)" in text
    assert "(default: None)" not in text
    assert "enlarge the picture this many times (each pixel a block; 1: actual size) (default: 4)" in text
    for bad in (["x", "--scale", "0"], ["x", "--per-class", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            app["main"](bad)
        assert exit_.value.code == 2 and f"argument {bad[1]}: expected a positive integer" in capsys.readouterr().err


def test_generate_takes_class_names_and_says_which_row_is_which(tmp_path, capsys):
    app = runpy.run_path(GENERATE)
    props = {k: json.dumps(v) for k, v in {**facts(), "class_names": ["cat", "dog", "owl"]}.items()}
    decoder = write_onnx(tmp_path / "decoder.onnx", metadata=props)
    out = str(tmp_path / "grid.png")
    assert app["main"]([decoder, "owl", "0", "--per-class", "2", "--scale", "1", "--out", out]) == 0
    assert capsys.readouterr().out.endswith("; rows: owl, cat\n")
    with open(out, "rb") as f:
        assert b"tEXtDescription\x00rows: owl, cat" in f.read()
    by_id = str(tmp_path / "by_id.png")
    assert app["main"]([decoder, "2", "0", "--per-class", "2", "--scale", "1", "--out", by_id]) == 0
    np.testing.assert_array_equal(read_grey_png(by_id), read_grey_png(out))
    assert app["main"]([decoder, "cow", "--out", out]) == 2
    assert capsys.readouterr().err == ("error: Unknown class 'cow': expected a class name (cat, dog, owl) or a "
                                       "class id from 0 to 2.\n")


def test_generate_writes_colour_pictures(tmp_path):
    app = runpy.run_path(GENERATE)
    images = np.random.default_rng(0).uniform(size=(4, 5, 6, 3)).astype(np.float32)
    app["write_png"](str(tmp_path / "rgb.png"), app["tile"](images, 2, scale=2))
    pixels = np.round(imread(str(tmp_path / "rgb.png")) * 255)
    assert pixels.shape == (2 * (2 * 5 + 3 * grid.PAD), 2 * (2 * 6 + 3 * grid.PAD), 3)
    np.testing.assert_array_equal(pixels[2 * grid.PAD:2 * grid.PAD + 10:2, 2 * grid.PAD:2 * grid.PAD + 12:2],
                                  np.round(images[0] * 255))
