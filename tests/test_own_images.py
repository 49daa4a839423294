"""A user's own folder of images through a recipe: classes, sizes, colour, bad files, export."""

import os

import numpy as np
import pytest
from PIL import Image

from zoo import artifacts, cli

TINY = ["--latent-dim", "2", "--width", "8", "--nll-samples", "0", "--epochs", "2"]


def write_folder(root, classes=("cat", "dog", "fox"), per_class=12, seed=0):
    """Class subfolders of PNG and JPEG files of mixed sizes and modes (RGB, grey, RGBA)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        os.makedirs(root / name)
        for i in range(per_class):
            h, w = rng.integers(20, 50, 2)
            pixels = (rng.uniform(size=(h, w, 3)) * 80 + 60 * c).astype(np.uint8)
            image = [Image.fromarray(pixels), Image.fromarray(pixels[..., 0]),
                     Image.fromarray(np.dstack([pixels, np.full((h, w), 128, np.uint8)]))][i % 3]
            image.save(root / name / f"{i}.{'jpg' if i % 3 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("images") / "pets")


def test_a_folder_of_classes_trains_a_conditional_run_that_names_them(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main("cvae", "", ["--dataset", str(folder), "--image-size", "32", "--channels", "3", *TINY,
                                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "images of 32x32x3, 3 classes" in printed
    manifest = artifacts.verify_run(str(out))
    assert manifest["dataset"]["class_names"] == ["cat", "dog", "fox"]
    assert manifest["dataset"]["image_shape"] == [32, 32, 3] and manifest["config"]["num_classes"] == 3
    assert manifest["dataset"]["train"] + manifest["dataset"]["validation"] + manifest["dataset"]["test"] == 36


def test_colour_images_end_to_end_with_the_colour_defaults(folder, tmp_path, capsys):
    """A colour folder with no likelihood or backbone flag: the logistic mixture on a residual
    backbone, bits/dim and PSNR in the manifest, and decoders that export with parity."""
    from export import pipeline
    from export.runtime import load_decoder

    out = tmp_path / "run"
    flags = ["--latent-dim", "2", "--epochs", "2", "--nll-samples", "2", "--image-size", "32"]
    assert cli.main("vae", "", ["--dataset", str(folder), *flags, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "likelihood: logistic_mixture" in printed and "networks: resnet backbone, width 32" in printed
    manifest = artifacts.verify_run(str(out))
    assert manifest["config"]["likelihood"] == "logistic_mixture" and manifest["config"]["backbone"] == "resnet"
    metrics = manifest["metrics"]
    nll = metrics["test_nll_logistic_mixture_k2"]  # nats of a mass over 8-bit levels: positive
    assert nll > 0 and metrics["test_bits_per_dim_logistic_mixture_k2"] == pytest.approx(nll / (32 * 32 * 3 * np.log(2)))
    assert metrics["test_psnr"] > 0
    report = pipeline.export_run(str(out), "onnx,tflite", print_fn=lambda *a, **k: None)
    assert all(entry["passed"] for entry in report.values())
    decoder = load_decoder(out / "decoder.onnx")
    assert decoder.facts["likelihood"] == {"name": "logistic_mixture"}
    images = decoder.generate(3, seed=0)
    assert images.shape == (3, 32, 32, 3) and 0 <= images.min() <= images.max() <= 1


def test_a_flat_folder_is_refused_by_a_conditional_model(tmp_path, capsys):
    flat = tmp_path / "flat"
    write_folder(tmp_path / "classes")
    os.rename(tmp_path / "classes" / "cat", flat)
    assert cli.main("cvae", "", ["--dataset", str(flat), *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs one subfolder per class" in err


def test_a_corrupt_file_stops_with_its_name_or_is_skipped_and_named(tmp_path, capsys):
    images = write_folder(tmp_path / "images", per_class=6)
    bad = images / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    argv = ["--dataset", str(images), "--image-size", "16", *TINY]
    assert cli.main("vae", "", [*argv, "--out", str(tmp_path / "stopped")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err
    assert not (tmp_path / "stopped" / "manifest.json").exists()

    assert cli.main("vae", "", [*argv, "--skip-bad-files", "--out", str(tmp_path / "skipped")]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {bad}" in printed and "1 unreadable file(s)" in printed
    manifest = artifacts.verify_run(str(tmp_path / "skipped"))
    assert [entry.split(":")[0] for entry in manifest["dataset"]["skipped"]] == [str(bad)]
    assert sum(manifest["dataset"][k] for k in ("train", "validation", "test")) == 18


def test_the_exported_decoder_names_the_classes(folder, tmp_path):
    from export import pipeline
    from export.runtime import load_decoder

    out = tmp_path / "run"
    assert cli.main("cvae", "", ["--dataset", str(folder), "--image-size", "16", *TINY, "--out", str(out)]) == 0
    pipeline.export_run(str(out), "onnx", print_fn=lambda *a, **k: None)
    decoder = load_decoder(out / "decoder.onnx")
    assert decoder.class_names == ["cat", "dog", "fox"]
    assert decoder.generate(3, labels=decoder.class_names.index("dog"), seed=0).shape == (3, 16, 16, 3)


def test_a_run_killed_while_streaming_a_folder_resumes(folder, tmp_path):
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(root, "recipes", "train_vae.py"), "--dataset", str(folder),
               "--image-size", "16", "--latent-dim", "2", "--width", "8", "--nll-samples", "0", "--epochs", "4",
               "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("epoch 2/4"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=300)
    assert not (out / "manifest.json").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stdout and "epoch 1/4" not in rerun.stdout
    with open(out / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1", "2", "3"]
