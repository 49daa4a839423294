"""Recipes end to end, as a user runs them: a subprocess per command."""

import csv
import json
import os
import subprocess
import sys

import pytest

from zoo import artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_recipe(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", f"train_{name}.py"), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", ["vae", "ae"])
def test_recipe_writes_a_complete_run(name, tmp_path, mnist_npz):
    out = tmp_path / "run"
    result = run_recipe(name, "--dataset", mnist_npz, "--epochs", "2", "--latent-dim", "4", "--width", "8",
                        "--nll-samples", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and "img/s" in result.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variant"] == name and manifest["config"]["latent_dim"] == 4
    assert manifest["dataset"] == {"name": mnist_npz, "train": 360, "validation": 40, "test": 100,
                                   "binarize": "dynamic"}
    assert manifest["versions"]["tensorflow"].startswith("2.")
    assert {"model.keras", "saved_model/saved_model.pb", "history.csv", "metrics.json",
            "pictures/reconstructions.png"} <= set(manifest["artifacts"])  # the recipe ran zoo.evaluate
    for rel in manifest["artifacts"]:
        artifacts.verify(str(out), rel)
    assert "test_loss" in manifest["metrics"] and manifest["metrics"]["train_images_per_second"] > 0
    assert ("test_nll_bin_k5" in manifest["metrics"]) == (name == "vae")
    with open(out / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    assert os.path.isdir(out / "logs")


def test_missing_dataset_file_exits_2_without_traceback(tmp_path):
    result = run_recipe("vae", "--dataset", "missing.npz", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "missing.npz" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_help_describes_the_flags():
    result = run_recipe("vae", "--help")
    assert result.returncode == 0
    for flag in ("--dataset", "--epochs", "--batch-size", "--latent-dim", "--learning-rate", "--seed", "--out"):
        assert flag in result.stdout
    beta_vae = " ".join(run_recipe("beta_vae", "--help").stdout.split())  # the networks that disentangle dSprites
    assert "(a broadcast decoder has none) (default: 2)" in beta_vae and "(default: dsprites)" in beta_vae
    assert "own (default: True)" in beta_vae


def test_unfinished_run_is_not_loadable(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"half-written")
    with pytest.raises(artifacts.RunError, match="is not a finished run: it has no manifest.json"):
        artifacts.load_model(str(tmp_path))


def test_corrupt_artifact_fails_its_checksum(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"abc")
    artifacts.write_manifest(str(tmp_path), variant="vae")
    (tmp_path / "model.keras").write_bytes(b"abd")
    with pytest.raises(artifacts.RunError, match="fails its checksum"):
        artifacts.load_model(str(tmp_path))


def test_unloadable_model_file_is_a_run_error(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(artifacts.RunError, match="model.keras could not be loaded: .*retrain it with its recipe"):
        artifacts.load_model(str(tmp_path / "model.keras"))
