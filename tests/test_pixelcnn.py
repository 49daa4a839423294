"""The gated PixelCNN prior over VQ-VAE codes: causality and receptive field, its log-probability,
the sampling loop, its export and the runtime's loop against the Keras prior, and the second
training stage (it lowers the codes' NLL, and resumes after a kill)."""

import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zoo
from conftest import write_run
from test_training_faults import start_and_signal
from export import export_run
from export.formats import PRIOR_FORMATS, Format
from export.runtime import load_decoder, load_prior, sample_codes
from zoo import artifacts, callbacks, evaluate, training
from zoo.networks import pixelcnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID, K = (4, 5), 6


def network(layers=4, **kwargs):
    return pixelcnn.gated_pixelcnn(GRID, K, filters=8, layers=layers, **kwargs)


def random_codes(n, seed=0, grid=GRID):
    return np.random.default_rng(seed).integers(0, K, (n, *grid)).astype(np.int32)


def test_causal_mask_keeps_what_each_stack_may_see():
    first_vertical = pixelcnn.causal_mask((3, 3), "vertical", include_centre=False)[..., 0, 0]
    vertical = pixelcnn.causal_mask((3, 3), "vertical", include_centre=True)[..., 0, 0]
    first_horizontal = pixelcnn.causal_mask((1, 3), "horizontal", include_centre=False)[..., 0, 0]
    horizontal = pixelcnn.causal_mask((1, 3), "horizontal", include_centre=True)[..., 0, 0]
    np.testing.assert_array_equal(first_vertical, [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(vertical, [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(first_horizontal, [[1, 0, 0]])
    np.testing.assert_array_equal(horizontal, [[1, 1, 0]])


def test_logits_depend_on_exactly_the_earlier_positions():
    """For every position q, changing the code at q changes the logits at every later position
    (no blind spot: 4 layers cover a 4x5 grid) and at no position up to q itself."""
    net = network(layers=4)
    for layer in net.layers:  # random biases and kernels everywhere, so no dependency hides behind a zero
        for weight in layer.weights:
            weight.assign(np.random.default_rng(1).normal(0, 0.5, weight.shape).astype(np.float32))
    codes = random_codes(1)
    base = net(codes).numpy()[0].reshape(-1, K)
    positions = GRID[0] * GRID[1]
    depends = np.zeros((positions, positions), bool)  # [position p, position q]: do p's logits depend on q's code?
    for q in range(positions):
        changed = codes.copy()
        changed[0, q // GRID[1], q % GRID[1]] = (codes[0, q // GRID[1], q % GRID[1]] + 1) % K
        diff = np.abs(net(changed).numpy()[0].reshape(-1, K) - base).max(-1)
        assert np.all((diff < 1e-6) | (diff > 1e-4)), diff  # either untouched or clearly moved
        depends[:, q] = diff > 1e-4
    np.testing.assert_array_equal(depends, np.tril(np.ones((positions, positions), bool), k=-1))


def test_log_prob_sums_the_positions_and_runs_in_chunks(monkeypatch):
    net = network()
    prior = pixelcnn.CodePrior(net)
    codes = random_codes(7)
    logits = net(codes).numpy().astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, codes[..., None], -1).sum((1, 2, 3))
    np.testing.assert_allclose(prior.log_prob(codes), expected, rtol=1e-5)
    monkeypatch.setattr(pixelcnn, "CHUNK", 3)  # 7 grids in chunks of 3, 3 and 1
    np.testing.assert_allclose(prior.log_prob(codes), expected, rtol=1e-5)
    assert prior.log_prob(codes[:0]).shape == (0,)


def test_sample_codes_inverts_each_positions_cdf():
    """A fake network whose logits at each position favour (previous code + 1) mod K; the uniforms
    pick codes by the inverse CDF, and every position sees the codes drawn before it."""
    def logits_fn(codes):
        previous = np.concatenate([np.zeros((len(codes), 1), np.int32), codes.reshape(len(codes), -1)[:, :-1]], 1)
        logits = np.where(np.arange(K) == ((previous + 1) % K)[..., None], np.log(0.9 * (K - 1) / 0.1), 0.0)
        return logits.reshape(*codes.shape, K)  # the favoured code has probability 0.9, the others 0.02 each

    almost_surely = np.full((3, *GRID), 0.5)  # u = 0.5 falls in the favoured code's 0.9
    codes = sample_codes(logits_fn, almost_surely, batch_size=2)
    np.testing.assert_array_equal(codes.reshape(3, -1), np.tile(np.arange(1, 21) % K, (3, 1)))
    first = np.zeros((1, *GRID))
    first[0, 0, 0] = 0.999  # the top of the CDF: the last code
    assert sample_codes(logits_fn, first)[0, 0, 0] == K - 1
    assert sample_codes(logits_fn, first).dtype == np.int32


def vqvae(**kwargs):
    return zoo.create("vqvae", **{"input_shape": (28, 28, 1), "latent_dim": 2, "num_codes": K, "width": 8,
                                  "prior": "pixelcnn", "prior_filters": 8, "prior_layers": 2, **kwargs})


def test_model_samples_with_the_pixelcnn_reproducibly():
    model = vqvae()
    prior = model.prior()
    codes = prior.sample(5, seed=3)
    assert codes.dtype == tf.int32 and codes.shape == (5, 7, 7)
    np.testing.assert_array_equal(codes, prior.sample(5, seed=3))
    assert not np.array_equal(codes, prior.sample(5, seed=4))
    uniforms = np.random.default_rng(3).random((5, 7, 7))
    np.testing.assert_array_equal(codes, sample_codes(lambda c: model.prior_network(c).numpy(), uniforms))
    np.testing.assert_allclose(model.sample(5, seed=3), model.decode(codes).mean(), atol=1e-6)
    assert prior.log_prob(codes).shape == (5,)


def test_exported_prior_passes_parity_and_the_runtime_draws_the_models_codes(tmp_path):
    model = vqvae()
    for weight in model.prior_network.weights:  # away from the near-uniform start: sharper, varied logits
        weight.assign(np.random.default_rng(2).normal(0, 0.3, weight.shape).astype(np.float32))
    run = write_run(str(tmp_path / "run"), model, "vqvae")
    report = export_run(run, "onnx,tflite", print_fn=lambda *a, **k: None)
    assert {"onnx", "tflite", "prior-onnx", "prior-tflite"} == set(report)
    assert all(entry["passed"] for entry in report.values()), report
    manifest = artifacts.read_manifest(run)
    assert manifest["export"]["prior-onnx"]["file"] == "prior.onnx" and "prior.tflite" in manifest["artifacts"]

    expected_codes = model.prior().sample(24, seed=7).numpy()
    for name in ("decoder.onnx", "decoder.tflite"):
        decoder = load_decoder(os.path.join(run, name))
        assert decoder.facts["prior"] == {"kind": "pixelcnn", "file": "prior"}
        np.testing.assert_array_equal(decoder.code_prior().sample(24, seed=7), expected_codes)  # exactly
        np.testing.assert_allclose(decoder.generate(24, seed=7), model.sample(24, seed=7), atol=1e-5)
    prior = load_prior(os.path.join(run, "prior.onnx"))
    codes = expected_codes[:3]
    np.testing.assert_allclose(prior.logits(codes), model.prior_network(codes), atol=1e-5)
    assert (prior.grid_shape, prior.num_codes) == ((7, 7), K)


def test_a_prior_failing_parity_is_removed_and_recorded(tmp_path, monkeypatch):
    run = write_run(str(tmp_path / "run"), vqvae(), "vqvae")
    monkeypatch.setitem(PRIOR_FORMATS, "prior-onnx", Format("prior.onnx", PRIOR_FORMATS["prior-onnx"].write,
                                                            "max_abs", -1.0))
    report = export_run(run, "onnx", print_fn=lambda *a, **k: None)
    assert report["onnx"]["passed"] and not report["prior-onnx"]["passed"]
    assert not os.path.exists(os.path.join(run, "prior.onnx"))
    assert artifacts.read_manifest(run)["export"]["prior-onnx"]["passed"] is False
    with pytest.raises(ValueError, match="prior.onnx, which is missing"):
        load_decoder(os.path.join(run, "decoder.onnx")).generate(2, seed=0)


def recipe(out, dataset, *extra):
    return [sys.executable, os.path.join(ROOT, "recipes", "train_vqvae.py"), "--dataset", dataset, "--epochs", "1",
            "--latent-dim", "4", "--width", "8", "--num-codes", "16", "--nll-samples", "0", "--prior", "pixelcnn",
            "--prior-filters", "16", "--prior-layers", "2", "--out", str(out), *extra]


def history(path):
    with open(path, newline="") as f:
        return [(int(row["epoch"]), float(row["val_loss"])) for row in csv.DictReader(f)]


def test_second_stage_lowers_the_codes_nll(tmp_path, mnist_npz, mnist_small, monkeypatch):
    out, lines = tmp_path / "run", []
    monkeypatch.setattr(evaluate, "write_evaluation", lambda *args, **kwargs: ({}, {}))  # not what is tested here
    manifest = training.train("vqvae", out=str(out), dataset=mnist_npz, epochs=1, latent_dim=4, width=8,
                              nll_samples=0, num_codes=16, prior="pixelcnn", prior_epochs=4, prior_filters=16,
                              prior_layers=2, print_fn=lambda line, **kw: lines.append(line))
    assert ("training the pixelcnn prior on the codes of 1800 train grids (the images and 4 translated copies) / 40 "
            "validation images, 18,976 parameters") in lines
    assert any(line.startswith("prior epoch 4/4  loss") for line in lines)
    assert manifest["config"]["prior"] == "pixelcnn" and manifest["config"]["prior_epochs"] == 4
    rows = history(out / "prior_history.csv")
    assert [epoch for epoch, _ in rows] == [0, 1, 2, 3]
    metrics = manifest["metrics"]
    assert metrics["prior_epochs_trained"] == 4 and metrics["prior_val_nll"] == pytest.approx(min(v for _, v in rows))
    uniform = 49 * np.log(16)  # the untrained network is close to uniform
    assert rows[-1][1] < rows[0][1] < uniform + 5 and metrics["prior_val_nll"] < uniform - 10

    model = zoo.load_model(str(out))  # the saved model holds the trained prior
    (x, _), _ = mnist_small
    codes = model.encode(x[:100]).mean()
    assert float(-tf.reduce_mean(model.prior().log_prob(codes))) < uniform - 10
    assert not model.prior_network.trainable  # the VQ-VAE's own training leaves it alone


def test_a_kill_in_the_second_stage_resumes_it_without_retraining_the_first(tmp_path, mnist_npz):
    out = tmp_path / "run"
    command = recipe(out, mnist_npz, "--prior-epochs", "12")
    code, _, _ = start_and_signal(command, "prior epoch 2/12", signal.SIGKILL)
    assert code == -signal.SIGKILL and not (out / "manifest.json").exists()
    assert callbacks.read_state(str(out / "checkpoints"))["epoch"] == 1  # stage 1: done
    done = callbacks.read_state(str(out / "checkpoints" / "prior"))["epoch"]
    assert 1 <= done < 12

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"resuming from {out / 'checkpoints'}: 1 of 1 epochs done" in lines
    assert f"resuming the prior from {out / 'checkpoints' / 'prior'}: {done} of 12 epochs done" in lines
    assert not any(line.startswith("epoch ") for line in lines)  # stage 1 trained nothing again
    assert any(line.startswith(f"prior epoch {done + 1}/12") for line in lines)
    assert not any(line.startswith("prior epoch 1/12") for line in lines)
    epochs = [epoch for epoch, _ in history(out / "prior_history.csv")]
    assert epochs == list(range(len(epochs))) and epochs[-1] + 1 == artifacts.read_manifest(str(out))["metrics"][
        "prior_epochs_trained"]
    assert not (out / "checkpoints").exists()


def test_translated_copies_move_the_images_and_fill_the_border_with_zeros():
    x = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6, 1) + 1
    moved = next(iter(training.translated(tf.data.Dataset.from_tensors(x), 2, -1))).numpy()
    np.testing.assert_array_equal(moved[:, 2:, :5], x[:, :3, 1:])  # down 2, left 1
    assert not moved[:, :2].any() and not moved[:, :, 5:].any()
