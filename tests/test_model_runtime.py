"""The exported encoder and `export.runtime.load_model`: every variant's encoder file against the
model, and the numpy scores against the model's own log weights, likelihoods and bounds.

Runs are written from untrained tiny models (parity needs the same model on both sides, not a
good one); the outlier calibration reads scikit-learn's digits, which are offline.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

import zoo
from conftest import write_run
from export import pipeline
from export.__main__ import main
from export.runtime import complexity_bits, load_encoder, load_model, png_bytes
from export.runtime import densities
from zoo import likelihoods

QUIET = dict(print_fn=lambda *a, **k: None)
OUTPUTS = {"ae": ["z"], "vqvae": ["codes"], "hvae": ["loc", "scale", "z"]}  # the rest: loc and scale


def tiny(name, shape=(8, 8, 1), **kwargs):
    return zoo.create(name, input_shape=shape, latent_dim=3, width=8, hidden=16, **kwargs)


def images(shape, n=5, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def exported(tmp_path, model, variant, formats=("onnx",), dataset=None):
    run = write_run(str(tmp_path), model, variant, **({"dataset": dataset} if dataset else {}))
    report = pipeline.export_run(run, formats, parts="decoder,encoder", **QUIET)
    return run, report


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    """A conditional model on scikit-learn's digits (8x8), exported with its encoder in ONNX and TFLite."""
    model = tiny("cvae", num_classes=10)
    run, report = exported(tmp_path_factory.mktemp("cvae"), model, "cvae", ("onnx", "tflite"),
                           {"name": "digits", "class_names": [str(c) for c in range(10)]})
    return run, report, model


@pytest.mark.parametrize("variant", zoo.list_models())
def test_every_variant_exports_an_encoder_that_matches_the_model(variant, tmp_path):
    shape = (8, 8, 1) if variant != "hvae" else (28, 28, 1)
    model = tiny(variant, shape, **({"num_classes": 10} if zoo.get_class(variant).conditional else {}))
    run, report = exported(tmp_path, model, variant)
    assert report["encoder-onnx"]["passed"] and report["encoder-onnx"]["max_rel"] <= 1e-5, report
    encoder = load_encoder(os.path.join(run, "encoder.onnx"))
    assert encoder.outputs == OUTPUTS.get(variant, ["loc", "scale"]) and encoder.input_shape == shape
    assert encoder.facts["part"] == "encoder" and encoder.facts["outlier"] is None  # no test split here


def test_the_onnx_and_tflite_models_reconstruct_and_restyle_like_the_saved_model(cvae):
    run, report, model = cvae
    assert report["encoder-tflite"]["passed"]
    x, y = images((8, 8, 1), 7), np.arange(7) % 10
    saved = tf.saved_model.load(os.path.join(run, "saved_model"))
    expected = saved.signatures["reconstruct"](x=tf.constant(x), labels=tf.constant(y, tf.int32))["mean"].numpy()
    loc = saved.signatures["encode"](x=tf.constant(x), labels=tf.constant(y, tf.int32))["loc"]
    as_three = saved.signatures["decode"](z=loc, labels=tf.fill([7], 3))["mean"].numpy()
    for fmt, tolerance in (("onnx", 1e-5), ("tflite", 1e-4)):
        runtime = load_model(run, fmt)
        np.testing.assert_allclose(runtime.reconstruct(x, y), expected, atol=tolerance)
        np.testing.assert_allclose(runtime.restyle(x, y, 3), as_three, atol=tolerance)


def test_log_weights_are_the_models_for_the_same_noise(cvae):
    """z = loc + scale * noise, and log p(x|z) + log p(z) - log q(z|x) as the model computes it."""
    run, _, model = cvae
    x, y = (images((8, 8, 1), 6) > 0.5).astype(np.float32), np.arange(6) % 10
    noise = np.random.default_rng(1).standard_normal((3, 6, model.latent_dim))
    got = load_model(run).log_weights(x, y, k=3, noise=noise)
    q = model.encode(x, y)
    for i in range(3):
        z = q.mean() + q.stddev() * tf.constant(noise[i], tf.float32)
        want = model.decode(z, y).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
        np.testing.assert_allclose(got[:, i], want.numpy(), atol=1e-3)


def test_score_is_the_negative_elbo_at_k1_and_a_tighter_bound_with_more_samples(cvae):
    run, _, _ = cvae
    runtime, x, y = load_model(run), (images((8, 8, 1), 50) > 0.5).astype(np.float32), np.arange(50) % 10
    weights = runtime.log_weights(x, y, k=200, seed=0)
    np.testing.assert_allclose(runtime.score(x, y, k=1, seed=0), -runtime.log_weights(x, y, k=1, seed=0)[:, 0])
    assert np.mean(runtime.score(x, y, k=200, seed=0)) <= -np.mean(weights)  # NLL_k <= -ELBO, Jensen
    labels_out = runtime.score(x, k=4, seed=0)  # p(x) = mean over classes of p(x|c)
    per_class = np.stack([-runtime.score(x, np.full(50, c), k=4, seed=c) for c in range(10)], -1)
    np.testing.assert_allclose(labels_out, -(densities.logsumexp(per_class, -1) - math.log(10)))


def test_the_outlier_calibration_and_verdicts(cvae):
    run, _, _ = cvae
    runtime = load_model(run)
    outlier = runtime.facts["outlier"]
    values = [outlier["quantiles"][key] for key in ("1", "50", "90", "99", "99.9")]
    assert outlier["score"] == "complexity" and outlier["k"] == 16 and outlier["images"] > 100
    assert values == sorted(values)
    scores = np.array([values[1], values[2] + 1e-6, (values[3] + values[4]) / 2, values[4] + 1])
    assert runtime.verdict(scores) == ["typical: like the test images", "unusual: above 90% of the test images",
                                       "rare: above 99% of the test images", "an outlier: above 99.9% of the test images"]
    np.testing.assert_allclose(runtime.percentile(values[1:3]), [50, 90])


def test_the_complexity_correction_subtracts_the_png_size(cvae):
    run, _, _ = cvae
    runtime, x = load_model(run), images((8, 8, 1), 4)
    bits = runtime.outlier_score(x, method="nll", seed=0) / math.log(2) - complexity_bits(runtime.prepared(x))
    np.testing.assert_allclose(runtime.outlier_score(x, seed=0), bits)


def test_png_bytes_are_a_png_of_the_image_and_complexity_counts_them():
    rng = np.random.default_rng(0)
    for image in (rng.random((7, 5, 1)), rng.random((4, 6, 3)), np.zeros((8, 8, 1))):
        decoded = tf.io.decode_png(png_bytes(image)).numpy()
        np.testing.assert_array_equal(decoded, np.round(image * 255).astype(np.uint8))
        assert complexity_bits(image[None])[0] == 8 * len(png_bytes(image))
    flat, noisy = np.zeros((1, 28, 28, 1)), rng.random((1, 28, 28, 1))
    assert complexity_bits(flat)[0] < complexity_bits(noisy)[0] / 10


@pytest.mark.parametrize("likelihood", likelihoods.NAMES)
def test_numpy_likelihoods_match_the_tfp_ones(likelihood):
    shape, channels = (2, 4, 4, 3), 3
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(*shape[:3], likelihoods.output_channels(likelihood, channels))).astype(np.float32)
    log_scale = tf.constant([-1.0, 0.0, 0.5]) if likelihood == "gaussian" else None
    params = likelihoods.parameters(tf.constant(raw), likelihood, channels, log_scale)
    x = rng.random(shape).astype(np.float32)
    x = (x > 0.5).astype(np.float32) if likelihood == "bernoulli" else np.round(x * 255) / 255
    want = likelihoods.distribution(params, likelihood).log_prob(x).numpy()
    facts = {"name": likelihood, **({"scale": np.asarray(params["scale"]).tolist()} if likelihood == "gaussian" else {})}
    got = densities.log_likelihood(x, {k: np.asarray(v) for k, v in params.items()}, facts)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_hierarchical_log_weights_use_the_encoder_noise(tmp_path):
    model = tiny("hvae", (28, 28, 1), latent_channels=(2, 0))
    run, _ = exported(tmp_path, model, "hvae")
    x = (images((28, 28, 1), 3) > 0.5).astype(np.float32)
    noise = np.random.default_rng(2).standard_normal((2, 3, model.latent_dim))
    got = load_model(run).log_weights(x, k=2, noise=noise)
    for i in range(2):
        eps, loc, scale = model.encode_with_noise(x, noise[i])
        normal = lambda m, s: tf.reduce_sum(-0.5 * ((eps - m) / s) ** 2 - tf.math.log(s * math.sqrt(2 * math.pi)), -1)
        want = model.decode(eps).log_prob(x) + normal(0.0, 1.0) - normal(loc, scale)
        np.testing.assert_allclose(got[:, i], want.numpy(), atol=1e-2)


def test_models_without_a_likelihood_and_missing_files_say_so(tmp_path):
    run, _ = exported(tmp_path / "ae", tiny("ae"), "ae")
    runtime = load_model(run)
    assert runtime.reconstruct(images((8, 8, 1))).shape == (5, 8, 8, 1)
    with pytest.raises(ValueError, match="no likelihood to score with"):
        runtime.score(images((8, 8, 1)))
    with pytest.raises(ValueError, match="restyle needs a conditional model"):
        runtime.restyle(images((8, 8, 1)), [0] * 5, 1)
    with pytest.raises(ValueError, match=r"Expected pixel values in \[0, 1\]"):
        runtime.encode(images((8, 8, 1)) + 1)
    os.remove(os.path.join(run, "encoder.onnx"))
    with pytest.raises(ValueError, match="--parts decoder,encoder"):
        load_model(run)


def test_cli_takes_parts_and_refuses_unknown_ones(tmp_path, capsys):
    run = write_run(str(tmp_path), tiny("vae"), "vae")
    assert main([run, "--formats", "onnx", "--parts", "decoder,brain"]) == 2
    assert "Unknown part(s) ['brain']" in capsys.readouterr().err
    assert main([run, "--formats", "onnx", "--parts", "encoder"]) == 0
    assert os.path.exists(os.path.join(run, "encoder.onnx")) and not os.path.exists(os.path.join(run, "decoder.onnx"))


def test_the_runtime_parity_benchmark_writes_and_checks_a_reference(cvae, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("runtime_parity", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "runtime_parity.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    run, reference = cvae[0], str(tmp_path / "reference.npz")
    assert benchmark.main([run, "--write", reference]) == 0
    assert benchmark.main([run, "--check", reference]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "max abs" in line]
    assert len(lines) == 4 and all(line.endswith(" ok") for line in lines)  # onnx and tflite, reconstruct and restyle
