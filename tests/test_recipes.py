"""Recipes end to end, as a user runs them: a subprocess per command; and their command lines."""

import argparse
import csv
import glob
import json
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

from zoo import artifacts, cli, data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "train_*.py")))
VARIANTS = [os.path.basename(path)[len("train_"):-len(".py")] for path in RECIPES]
# A line of TensorFlow's C++ logger ("I0000 00:00:17... port.cc:153] oneDNN ...") or of its notices.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |cuInit|oneDNN|TF-TRT|absl::InitializeLog|cuda drivers|rebuild TensorFlow",
                         re.MULTILINE)


def user_env():
    """The environment of a user who set no TensorFlow log level (the test session sets one)."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_recipe(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", f"train_{name}.py"), *args],
                          capture_output=True, text=True, timeout=600, env=user_env())


def recipe_parser(variant):
    """The command line of `recipes/train_<variant>.py`, built as the recipe builds it."""
    module = runpy.run_path(os.path.join(ROOT, "recipes", f"train_{variant}.py"))  # not __main__: trains nothing
    return cli.build_parser(variant, module["__doc__"], module.get("DEFAULTS"), module.get("OPTIONS", ()))


@pytest.mark.parametrize("name", ["vae", "ae"])
def test_recipe_writes_a_complete_run(name, tmp_path, mnist_npz):
    out = tmp_path / "run"
    result = run_recipe(name, "--dataset", mnist_npz, "--epochs", "2", "--latent-dim", "4", "--width", "8",
                        "--nll-samples", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and "img/s" in result.stdout
    assert not TF_LOG_LINE.search(result.stdout + result.stderr), result.stderr  # TensorFlow's logs stay hidden
    assert "likelihood: bernoulli (9" in result.stdout  # the digits' pixels are near-binary (about 91%)
    assert re.search(r"^test: .*  epochs_trained 2  ", result.stdout, re.MULTILINE)  # an int, not 2.00
    # The evaluation says what it computes and how long each step took.
    assert re.search(r"^evaluating: reconstructions \(100 test images\)\.\.\. \d+\.\d s$", result.stdout, re.MULTILINE)
    assert re.search(r"^evaluating: outlier detection \(.*\)\.\.\. \d+\.\d s$", result.stdout, re.MULTILINE)
    assert bool(re.search(r"^evaluating: test NLL \(k=5, 100 images, bernoulli likelihood\)\.\.\. \d+\.\d s$",
                          result.stdout, re.MULTILINE)) == (name == "vae")

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variant"] == name and manifest["config"]["latent_dim"] == 4
    assert manifest["dataset"] == {"name": mnist_npz, "train": 360, "validation": 40, "test": 100,
                                   "binarize": "dynamic", "image_shape": [28, 28, 1], "class_names": None,
                                   "image_size": None, "channels": None, "fit": "crop", "skipped": []}
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_help_gives_every_flag_a_text_and_its_default(variant):
    parser = recipe_parser(variant)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0]
        assert action.help, f"{flag} has no help text"
        assert "(default: " in formatter._expand_help(action), f"{flag} does not show its default"
    text = parser.format_help()
    commands = [line for line in parser.description.splitlines() if line.strip().startswith("python ")]
    assert commands and all(line in text.splitlines() for line in commands)  # not rewrapped: still copyable


def test_help_loads_no_tensorflow_and_prints_no_logs():
    code = ("import runpy, sys\n"
            "sys.argv = [sys.argv[1], '--help']\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as done:\n    assert done.code == 0\n"
            "print('tensorflow' in sys.modules)")
    for path in [*RECIPES, os.path.join(ROOT, "apps", "generate.py")]:
        result = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120,
                                env=user_env(), cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "False", f"{path} --help imported TensorFlow"
        assert "usage:" in result.stdout and not TF_LOG_LINE.search(result.stdout + result.stderr)
    for module in ("zoo.evaluate", "export"):
        code = (f"import runpy, sys\nsys.argv = ['{module}', '--help']\n"
                f"try:\n    runpy.run_module('{module}', run_name='__main__', alter_sys=True)\n"
                "except SystemExit as done:\n    assert done.code == 0\n"
                "print('tensorflow' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                env=user_env(), cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "False", f"python -m {module} --help imported TensorFlow"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_number_flag_refuses_nan_and_infinity(variant, capsys):
    parser = recipe_parser(variant)
    numeric = [a for a in parser._actions if a.type is not None]
    assert len(numeric) >= 10
    for action in numeric:
        flag = action.option_strings[0]
        assert action.type not in (int, float), f"{flag} takes a bare {action.type.__name__}: use a zoo.cli type"
        for bad in ("nan", "inf", "-inf"):
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args([flag, bad])
            assert exit_.value.code == 2
            assert f"argument {flag}: expected " in capsys.readouterr().err


@pytest.mark.parametrize("variant, args, message", [
    ("beta_vae", ["--beta", "-1"], "argument --beta: expected a finite number >= 0, received '-1'"),
    ("beta_vae", ["--warmup-steps", "-5"], "argument --warmup-steps: expected an integer >= 0, received '-5'"),
    ("beta_vae", ["--capacity-steps", "0"], "argument --capacity-steps: expected a positive integer, received '0'"),
    ("beta_vae", ["--capacity", "-3"], "argument --capacity: expected a finite number >= 0, received '-3'"),
    ("beta_vae", ["--gamma", "0"], "argument --gamma: expected a positive number, received '0'"),
    ("cvae", ["--beta", "-0.5"], "argument --beta: expected a finite number >= 0, received '-0.5'"),
    ("iwae", ["--samples", "0"], "argument --samples: expected a positive integer, received '0'"),
    ("vqvae", ["--num-codes", "0"], "argument --num-codes: expected a positive integer, received '0'"),
    ("vqvae", ["--commitment", "-1"], "argument --commitment: expected a finite number >= 0, received '-1'"),
    ("vae", ["--nll-samples", "-1"], "argument --nll-samples: expected an integer >= 0, received '-1'"),
    ("vae", ["--width", "1.5"], "argument --width: expected a positive integer, received '1.5'"),
    ("vae", ["--likelihood", "poisson"], "argument --likelihood: invalid choice: 'poisson'"),
])
def test_bad_model_flags_exit_2_naming_the_flag(variant, args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        recipe_parser(variant).parse_args(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_beta_nan_exits_2_before_training(tmp_path):
    result = run_recipe("beta_vae", "--beta", "nan", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: argument --beta: expected a finite number >= 0, received 'nan'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dataset, expected", [("mnist5k", "bernoulli"), ("dsprites", "bernoulli"),
                                               ("digits", "gaussian")])
def test_auto_likelihood_follows_the_pixels(dataset, expected):
    from zoo import likelihoods

    x = data.load(dataset, "train", **({"size": 200} if dataset == "dsprites" else {}))[0]
    chosen, share = likelihoods.choose(x)
    assert chosen == expected and (share >= likelihoods.BINARY_SHARE) == (expected == "bernoulli")
    assert likelihoods.choose(x, "gaussian") == ("gaussian", share)  # asked for: kept
    grey = np.full((10, 4, 4, 1), 0.5, np.float32)
    assert likelihoods.choose(grey) == ("gaussian", 0.0)
    black_and_white = np.repeat(np.round(x[:50]), 3, axis=-1)  # binary pixels, but in colour: 8-bit levels
    assert likelihoods.choose(black_and_white) == ("logistic_mixture", 1.0)


def test_epoch_lines_show_the_codebook_of_a_vq_vae():
    from zoo import callbacks

    lines = []
    progress = callbacks.Progress(100, 3, print_fn=lambda line, **kw: lines.append(line))
    progress.on_epoch_begin(0)
    progress.on_epoch_end(0, {"loss": 0.5, "reconstruction": 0.4, "commitment": 0.1, "perplexity": 23.4,
                              "usage": 0.9, "val_loss": 0.6, "val_perplexity": 20.0})
    assert re.match(r"epoch 1/3  loss 0\.50  perplexity 23\.40  usage 0\.90  val_loss 0\.60  \d+ img/s$", lines[0])


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


def test_verbose_shows_tensorflow_logs_and_quiet_hides_them():
    code = ("import logging, os, sys, zoo\n"
            "tf = zoo.import_tensorflow(verbose=sys.argv[1] == 'verbose')\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], tf.get_logger().getEffectiveLevel() >= logging.ERROR)")
    for mode, expected in (("verbose", "0 False"), ("quiet", "3 True")):
        result = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120,
                                env=user_env())
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[0] == expected
        if mode == "quiet":
            assert not TF_LOG_LINE.search(result.stderr), result.stderr
