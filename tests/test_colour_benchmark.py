"""benchmarks/colour.py (issue 20) in small: the PNG rate, keras-io's VAE, the manifest's metrics, the figure.

The full benchmark trains the openmoji recipe (half an hour); these check its parts on tiny inputs.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def colour():
    """The benchmark script as a module (it imports its sibling `common`, as scripts do)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        spec = importlib.util.spec_from_file_location("colour_benchmark", os.path.join(BENCHMARKS, "colour.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(BENCHMARKS)


def test_png_rate_of_noise_is_near_8_bits_and_of_a_flat_image_far_below(colour):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.float32) / 255
    flat = np.full((3, 64, 64, 3), 0.5, np.float32)
    noisy, flat = colour.png_bits_per_dim(noise), colour.png_bits_per_dim(flat)
    assert noisy.shape == flat.shape == (3,)
    assert np.all((noisy > 7.9) & (noisy < 8.3))  # incompressible, plus the PNG headers
    assert np.all(flat < 0.1)


def test_png_rate_of_grey_images(colour):
    flat = colour.png_bits_per_dim(np.zeros((2, 64, 64, 1), np.float32))
    noise = colour.png_bits_per_dim(np.random.default_rng(1).integers(0, 256, (2, 64, 64, 1)) / 255)
    assert flat.shape == noise.shape == (2,)
    assert np.all(flat < 0.2) and np.all(noise > 7.9)  # one channel a pixel: 8 bits/dim at most, plus headers


@pytest.mark.parametrize("shape", [(64, 64, 3), (32, 32, 3)])
def test_keras_io_vae_builds_for_colour_shapes(colour, shape):
    model = colour.keras_io_vae(shape, latent_dim=5)
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype(np.float32)
    z_mean, z_log_var, z = model.encoder(x)
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == tuple(z.shape) == (2, 5)
    recon = np.asarray(model(x))
    assert recon.shape == (2, *shape) and recon.min() >= 0 and recon.max() <= 1
    assert tuple(model.decoder(np.zeros((3, 5), np.float32)).shape) == (3, *shape)


def test_keras_io_vae_refuses_sizes_it_cannot_halve_twice(colour):
    with pytest.raises(ValueError, match="divisible by 4"):
        colour.keras_io_vae((30, 30, 3), latent_dim=2)


def test_keras_io_training_gives_finite_falling_loss_and_a_speed(colour):
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(size=(64, 32, 32, 3)).astype(np.float32) ** 4  # mostly dark pixels
    model = colour.keras_io_vae(x.shape[1:], latent_dim=4)
    before = float(model.losses_of(x)[2])
    lines = []
    speed = colour.train_keras_io(model, x, epochs=3, batch_size=16, print_fn=lambda *a, **k: lines.append(a[0]))
    after = float(model.losses_of(x)[2])
    assert np.isfinite(before) and np.isfinite(after) and after < before
    # the BCE is summed over pixels and channels: about H W C nats per image before training
    assert before > 0.3 * np.prod(x.shape[1:])
    assert speed > 0 and len(lines) == 3


def test_manifest_metric_finds_exact_and_suffixed_keys(colour):
    metrics = {"test_psnr": 21.5, "test_bits_per_dim_k100": 1.2, "test_bits_per_dim_k500": 1.1}
    assert colour.manifest_metric(metrics, "test_psnr") == ("test_psnr", 21.5)
    assert colour.manifest_metric(metrics, "test_bits_per_dim") == ("test_bits_per_dim_k100", 1.2)
    assert colour.manifest_metric({}, "test_psnr") == (None, None)


def test_side_by_side_samples_are_written_as_png(colour, tmp_path):
    from PIL import Image

    from zoo import viz

    rng = np.random.default_rng(0)
    panels = {"zoo: vae": rng.uniform(size=(64, 16, 16, 3)), "keras-io VAE": rng.uniform(size=(64, 16, 16, 3))}
    path = tmp_path / "samples.png"
    viz.save(colour.side_by_side_figure(panels, 8, 8, "64 samples of each"), str(path))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 1.5 * image.height  # two square panels side by side


def test_a_finished_run_is_never_retrained_without_reuse(colour, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"variant": "vae"}))
    args = colour.parse_args(["--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--reuse"):
        colour.train_zoo(args)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"variant": "vae"}


def test_reuse_needs_a_finished_run(colour, tmp_path):
    args = colour.parse_args(["--out", str(tmp_path / "none"), "--reuse"])
    with pytest.raises(SystemExit, match="not a finished run"):
        colour.train_zoo(args)


def test_table_names_every_row_and_the_verdict(colour):
    results = {
        "machine": "cpu", "command": "python benchmarks/colour.py", "pictures": ["a.png", "b.png"],
        "dataset": {"name": "openmoji", "train_images": 10, "test_images": 4, "image_shape": [64, 64, 3]},
        "zoo": {"run": "runs/x", "recipe_command": "python recipes/train_vae.py", "parameters": 1000, "latent_dim": 16,
                "epochs": 2, "train_images_per_second": 50.0, "images_per_second_from": "this run",
                "test_psnr_db": 22.0, "test_psnr_key": "test_psnr", "test_psnr_db_recomputed": 22.0,
                "test_bits_per_dim": 1.5, "test_bits_per_dim_key": "test_bits_per_dim"},
        "keras_io": {"parameters": 500, "latent_dim": 16, "epochs": 2, "train_images_per_second": 400.0,
                     "test_psnr_db": 18.0, "test_bits_per_dim": None},
        "png": {"bits_per_dim": 0.9, "bits_per_dim_median": 0.8},
        "zoo_psnr_higher": True,
    }
    text = colour.table(results)
    assert "| zoo VAE (runs/x) | 1,000 | 16 | 2 | 50 | 22.00 | 1.500 |" in text
    assert "| keras-io conv VAE (BCE) | 500 | 16 | 2 | 400 | 18.00 | n/a (continuous BCE loss) |" in text
    assert "| lossless | 0.900 |" in text and "the zoo is higher" in text
