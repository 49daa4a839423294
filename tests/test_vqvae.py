"""The VQ-VAE: quantisation, straight-through gradients, the EMA codebook, restarts, code statistics,
saving and sampling."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zoo
from conftest import images, write_run
from zoo import data
from zoo.models.vqvae import code_usage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(**kwargs):
    kwargs = {"input_shape": (28, 28, 1), "latent_dim": 2, "num_codes": 3, "width": 8, "hidden": 32, **kwargs}
    return zoo.create("vqvae", **kwargs)


def set_codebook(model, codebook):
    """Puts the codebook and a matching EMA state (one vector per code) in place; no code is stale."""
    codebook = np.asarray(codebook, np.float32)
    model.codebook.assign(codebook)
    model.code_sums.assign(codebook)
    model.code_counts.assign(np.ones(len(codebook), np.float32))
    model.steps_unused.assign(np.zeros(len(codebook), np.float32))


def test_quantise_picks_the_nearest_code():
    model = build(input_shape=(8, 8, 1))  # a 2x2 grid of codes
    set_codebook(model, [[0, 0], [1, 0], [0, 1]])
    vectors = tf.constant([[[[0.1, 0.1], [0.9, 0.2]], [[0.2, 0.7], [-5.0, 0.0]]]])  # [1, 2, 2, D]
    codes = model.quantise(vectors)
    assert codes.dtype == tf.int32
    np.testing.assert_array_equal(codes, [[[0, 1], [2, 0]]])


def test_encode_gives_the_codes_of_the_encoder_grid():
    model = build()
    x = images((28, 28, 1))
    q = model.encode(x)
    assert q.event_shape == (7, 7) and q.batch_shape == (4,) and q.mean().dtype == tf.int32
    np.testing.assert_array_equal(q.mean(), model.quantise(model.encoder(x)))
    np.testing.assert_allclose(model(x), model.decode(q.mean()).mean(), atol=1e-6)


@pytest.mark.parametrize("ema", [True, False])
def test_straight_through_gradient_reaches_the_encoder(ema):
    model = build(commitment=0.0, ema=ema)  # no commitment: the encoder learns only through the decoder
    with tf.GradientTape() as tape:
        loss = model.loss_terms(images((28, 28, 1)))["loss"]
    grads = dict(zip([w.path for w in model.trainable_weights], tape.gradient(loss, model.trainable_weights)))
    encoder_grads = [g for path, g in grads.items() if path.startswith("encoder/")]
    assert encoder_grads and all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in encoder_grads)
    assert (model.codebook.path in grads) == (not ema)  # with EMA the codebook is a non-trainable weight
    if not ema:
        assert float(tf.reduce_max(tf.abs(grads[model.codebook.path]))) > 0  # the codebook loss moves it


def test_ema_moves_codes_toward_their_assigned_vectors():
    model = build(input_shape=(8, 8, 1), num_codes=2, decay=0.5)
    set_codebook(model, [[0, 0], [1, 1]])
    vectors = tf.constant([[[[0.2, 0.0], [0.4, 0.0]], [[0.2, 0.0], [0.4, 0.0]]]])  # all nearest to code 0
    model.update_codebook(vectors, model.quantise(vectors))
    # N_0 = 0.5 * 1 + 0.5 * 4 = 2.5, m_0 = 0.5 * (0, 0) + 0.5 * (1.2, 0) = (0.6, 0): e_0 = (0.24, 0),
    # from 0 toward the assigned mean (0.3, 0); unused code 1 stays (its sum and count both decay).
    np.testing.assert_allclose(model.codebook.numpy(), [[0.24, 0.0], [1.0, 1.0]], atol=1e-4)
    np.testing.assert_allclose(model.code_counts.numpy(), [2.5, 0.5])


def test_unused_codes_are_reset_to_encoder_vectors():
    model = build(input_shape=(8, 8, 1), restart_after=2)
    set_codebook(model, [[0, 0], [100, 100], [-100, -100]])
    vectors = tf.constant([[[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]]])  # all nearest to code 0
    model.update_codebook(vectors, model.quantise(vectors))
    np.testing.assert_allclose(model.codebook.numpy()[1:], [[100, 100], [-100, -100]], rtol=1e-3)  # unused once
    model.update_codebook(vectors, model.quantise(vectors))
    batch = vectors.numpy().reshape(-1, 2)
    for code in model.codebook.numpy()[1:]:  # unused twice: each is now one of the batch's vectors
        assert np.isclose(batch, code).all(axis=1).any(), code
    np.testing.assert_array_equal(model.steps_unused.numpy(), [0, 0, 0])


def test_code_usage_on_a_known_assignment():
    half = code_usage(tf.constant([[0, 0], [1, 1]]), num_codes=4)  # two codes, equally often
    np.testing.assert_allclose([half["perplexity"], half["usage"]], [2.0, 0.5], rtol=1e-6)
    every = code_usage(tf.constant([0, 1, 2, 3]), num_codes=4)
    np.testing.assert_allclose([every["perplexity"], every["usage"]], [4.0, 1.0], rtol=1e-6)
    one = code_usage(tf.constant([3, 3, 3]), num_codes=4)
    np.testing.assert_allclose([one["perplexity"], one["usage"]], [1.0, 0.25], rtol=1e-6)


@pytest.fixture(scope="module")
def trained(mnist_small):
    """A tiny VQ-VAE fitted for a few steps, so its codebook and p(z) have left their initial values."""
    (x, _), _ = mnist_small
    model = build(latent_dim=4, num_codes=8)
    model.compile(optimizer="adam")
    history = model.fit(data.pipeline(x[:96], batch_size=32), epochs=2, verbose=0).history
    return model, history


def test_fit_reports_code_statistics_and_updates_the_codebook(trained):
    model, history = trained
    assert {"commitment", "perplexity", "usage"} <= set(history)
    assert 1 <= history["perplexity"][-1] <= 8 and 0 < history["usage"][-1] <= 1
    assert not model.codebook.trainable and np.abs(model.code_counts.numpy()).sum() > 0
    np.testing.assert_allclose(model.code_frequencies.numpy().sum(-1), 1.0, rtol=1e-5)


def test_get_config_round_trip_records_num_codes():
    model = build(num_codes=16, commitment=0.5, ema=False, decay=0.9, restart_after=7)
    config = model.get_config()
    assert (config["num_codes"], config["commitment"], config["ema"], config["restart_after"]) == (16, 0.5, False, 7)
    clone = type(model).from_config(config)
    assert clone.get_config() == config and clone.codebook.shape == (16, 2) and clone.codebook.trainable


def test_pixelcnn_prior_config_round_trip_and_reload(tmp_path):
    model = build(prior="pixelcnn", prior_epochs=7, prior_filters=8, prior_layers=2, prior_dropout=0.2)
    config = model.get_config()
    assert (config["prior"], config["prior_epochs"], config["prior_filters"], config["prior_layers"],
            config["prior_dropout"]) == ("pixelcnn", 7, 8, 2, 0.2)
    clone = type(model).from_config(config)
    assert clone.get_config() == config and clone.prior_network.count_params() == model.prior_network.count_params()
    assert not any(w.path.startswith("pixelcnn/") for w in model.trainable_weights)  # stage 2 trains it, alone
    for weight in model.prior_network.weights:
        weight.assign(np.random.default_rng(0).normal(0, 0.3, weight.shape).astype(np.float32))

    out = write_run(str(tmp_path / "run"), model, "vqvae")
    reloaded = zoo.load_model(out)
    for mine, theirs in zip(model.prior_network.weights, reloaded.prior_network.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    codes = model.prior().sample(3, seed=0)
    np.testing.assert_array_equal(reloaded.prior().sample(3, seed=0), codes)
    np.testing.assert_allclose(reloaded.prior().log_prob(codes), model.prior().log_prob(codes), rtol=1e-6)


def test_frequency_prior_is_the_default_and_reads_old_configs():
    model = build()
    assert model.get_config()["prior"] == "frequencies" and model.prior_network is None
    old = {**model.get_config(), "prior": "normal"}  # a config saved before the PixelCNN prior
    assert type(model).from_config(old).get_config()["prior"] == "frequencies"
    codes = np.zeros((5, 7, 7), np.int32)
    np.testing.assert_allclose(model.prior().log_prob(codes), np.full(5, 49 * np.log(1 / 3)), rtol=1e-5)


def test_keras_and_saved_model_round_trips(trained, tmp_path):
    model, _ = trained
    x = images((28, 28, 1))
    out = write_run(str(tmp_path), model, "vqvae")

    reloaded = zoo.load_model(out)
    for name in ("codebook", "code_counts", "code_sums", "steps_unused", "code_frequencies"):
        np.testing.assert_array_equal(getattr(reloaded, name).numpy(), getattr(model, name).numpy())
    codes = model.encode(x).mean()
    np.testing.assert_array_equal(reloaded.encode(x).mean(), codes)

    sigs = tf.saved_model.load(f"{out}/saved_model").signatures
    assert {"encode", "decode", "reconstruct"} <= set(sigs) and "prior_log_prob" not in sigs
    encoded = sigs["encode"](x=x)["codes"]
    assert encoded.dtype == tf.int32 and encoded.shape == (4, 7, 7)
    np.testing.assert_array_equal(encoded, codes)
    decoded = sigs["decode"](codes=codes)
    np.testing.assert_allclose(decoded["mean"], model.decode(codes).mean(), atol=1e-6)
    np.testing.assert_allclose(decoded["logits"], model.decode(codes).distribution.logits, atol=1e-5)
    np.testing.assert_allclose(sigs["reconstruct"](x=x)["mean"], model(x), atol=1e-6)


def test_sample_draws_codes_from_the_code_frequencies(trained, mnist_small):
    model, _ = trained
    samples = model.sample(5, seed=0)
    assert samples.shape == (5, 28, 28, 1)
    assert 0 <= float(tf.reduce_min(samples)) and float(tf.reduce_max(samples)) <= 1

    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    clone.code_frequencies.assign(np.eye(8, dtype=np.float32)[np.full((7, 7), 3)])  # always code 3
    np.testing.assert_array_equal(clone.prior().sample(2, seed=1), np.full((2, 7, 7), 3))
    np.testing.assert_allclose(clone.sample(2, seed=1), clone.decode(np.full((2, 7, 7), 3)).mean(), atol=1e-6)

    (x, _), _ = mnist_small
    clone.fit_prior(x[:50], batch_size=16)
    counts = tf.reduce_sum(tf.one_hot(model.encode(x[:50]).mean(), 8), 0).numpy()
    np.testing.assert_allclose(clone.code_frequencies.numpy(), counts / 50, atol=1e-6)


def test_bad_codes_and_arguments_are_rejected():
    model = build()
    with pytest.raises(ValueError, match=r"Expected integer codes of shape \(batch, 7, 7\), received float32 codes "
                                         r"of shape \(2, 7, 7\)"):
        model.decode(np.zeros((2, 7, 7), np.float32))
    with pytest.raises(ValueError, match=r"Expected integer codes of shape \(batch, 7, 7\), received int64 codes "
                                         r"of shape \(2, 4\)"):
        model.decode(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"Codes must lie in \[0, 2\], received \[0, 3\]"):
        model.decode(np.array([[[0] * 7] * 6 + [[3] * 7]]))
    with pytest.raises(ValueError, match="Expected a positive integer for `num_codes`, received num_codes=0"):
        build(num_codes=0)
    with pytest.raises(ValueError, match=r"Expected commitment >= 0 and 0 <= decay < 1, received commitment=-1"):
        build(commitment=-1)
    with pytest.raises(ValueError, match=r"expected num_classes=None and a prior from \('frequencies', 'pixelcnn'\), "
                                         "received num_classes=10, prior='frequencies'"):
        build(num_classes=10)
    with pytest.raises(ValueError, match="received num_classes=None, prior='mog'"):
        build(prior="mog")
    with pytest.raises(ValueError, match="Expected a positive integer for `prior_epochs`, received prior_epochs=0"):
        build(prior="pixelcnn", prior_epochs=0)
    with pytest.raises(ValueError, match="Expected 0 <= prior_dropout < 1, received prior_dropout=1"):
        build(prior="pixelcnn", prior_dropout=1)


def test_recipe_records_num_codes_and_no_ema(tmp_path, mnist_npz):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "train_vqvae.py"), "--dataset", mnist_npz,
                             "--epochs", "1", "--latent-dim", "4", "--width", "8", "--num-codes", "16",
                             "--commitment", "0.5", "--no-ema", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variant"] == "vqvae"
    config = manifest["config"]
    assert (config["num_codes"], config["commitment"], config["ema"]) == (16, 0.5, False)
    assert {"test_perplexity", "test_usage"} <= set(manifest["metrics"])
