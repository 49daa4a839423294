"""The hierarchical VAE: shapes, the noise-space decoder against the top-down inference path,
config and save/reload, export parity, the objective's warm-up and free bits, and log_weights
against the ELBO. Tiny untrained models (width 8), a few seconds each."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from conftest import write_run
from export import formats, pipeline
from export.runtime import load_decoder, sample_inputs
from zoo import evaluate
from zoo.networks import hierarchical


def tiny(**kwargs):
    return zoo.create("hvae", input_shape=(28, 28, 1), **{"latent_dim": 4, "latent_channels": (2, 1), "width": 8,
                                                          **kwargs})


def binary(n=4, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)) > 0.5).astype(np.float32)


def test_latent_is_the_noise_of_every_group():
    model = tiny()
    assert model.latent_dim == 4 + 7 * 7 * 2 + 14 * 14 * 1 == sum(hierarchical.noise_sizes(
        hierarchical.group_plan((28, 28, 1), (2, 1), 1), 4))
    assert tiny(groups=2).latent_dim == 4 + 2 * (7 * 7 * 2 + 14 * 14 * 1)
    assert tiny(latent_channels=(3,)).latent_dim == 4 + 7 * 7 * 3  # no 14x14 group
    assert model.metric_names == ("loss", "reconstruction", "kl", "kl_top", "kl_7x7", "kl_14x14")


def test_shapes_of_encode_decode_sample_and_log_weights():
    model, x = tiny(), binary()
    q = model.encode(x)
    assert q.batch_shape == (4,) and q.event_shape == (model.latent_dim,)
    assert model.decode(q.sample()).event_shape == (28, 28, 1) and model.sample(3, seed=0).shape == (3, 28, 28, 1)
    weights = model.log_weights(x)
    assert set(weights) == {"log_weight", "log_likelihood"}
    assert weights["log_weight"].shape == weights["log_likelihood"].shape == (4,)


def test_the_decoder_is_the_inference_path_fed_with_its_noise():
    """decode(eps) with the noise that inference drew gives inference's own outputs: the exported
    generator and the top-down posterior share every layer; encode's mean is the posterior-mean path."""
    model, x = tiny(), binary()
    noise = tf.random.normal([len(x), model.latent_dim], seed=1)
    raw, parts = model.infer(tf.constant(x), noise)
    eps = tf.concat([p[2] for p in parts], -1)
    np.testing.assert_allclose(model.decoder(eps), raw, atol=1e-5)
    np.testing.assert_allclose(model.encode_with_noise(x, noise)[0], eps, atol=1e-6)  # what the exported encoder gives
    mean_raw, _ = model.infer(tf.constant(x), tf.zeros_like(noise))
    np.testing.assert_allclose(model(x), tf.sigmoid(mean_raw), atol=1e-6)
    assert not np.allclose(raw, mean_raw, atol=1e-3)  # the noise reaches the outputs


@pytest.mark.parametrize("shape, likelihood", [((8, 8, 1), "bernoulli"), ((32, 32, 3), "logistic_mixture"),
                                               ((28, 28, 1), "gaussian")])
def test_other_sizes_and_likelihoods(shape, likelihood):
    model = zoo.create("hvae", input_shape=shape, latent_dim=4, latent_channels=(2, 1), width=8,
                       likelihood=likelihood)
    x = np.round(np.random.default_rng(0).uniform(size=(2, *shape)) * 255).astype(np.float32) / 255
    terms = model.loss_terms(x)
    assert all(np.isfinite(v.numpy()) for v in terms.values())
    assert model.log_weights(x)["log_weight"].shape == (2,) and model.sample(2).shape == (2, *shape)


@pytest.mark.parametrize("option", [{"num_classes": 10}, {"prior": "mog"}, {"broadcast_decoder": True},
                                    {"backbone": "conv"}, {"dense_layers": 2}])
def test_options_it_cannot_honour_are_refused(option):
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"hvae does not take {name}="):
        tiny(**option)


@pytest.mark.parametrize("option", [{"groups": 0}, {"free_bits": -1.0}, {"warmup_steps": -1},
                                    {"latent_channels": (2, -1)}])
def test_bad_values_are_refused(option):
    with pytest.raises(ValueError, match="Expected"):
        tiny(**option)


def test_config_round_trip_save_and_reload(tmp_path):
    model = tiny(groups=2, warmup_steps=100, free_bits=0.25, norm="weight")
    config = model.get_config()
    assert config["latent_dim"] == 4 and config["latent_channels"] == [2, 1] and config["free_bits"] == 0.25
    assert type(model).from_config(config).get_config() == config
    model, x = tiny(latent_channels=(2,)), binary()
    run = write_run(str(tmp_path), model, "hvae")
    reloaded = zoo.load_model(run)
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_allclose(reloaded(x), model(x), atol=1e-6)
    eps = np.random.default_rng(1).standard_normal((3, model.latent_dim)).astype(np.float32)
    signatures = tf.saved_model.load(os.path.join(run, "saved_model")).signatures
    np.testing.assert_allclose(signatures["decode"](z=eps)["mean"], model.decode(eps).mean(), atol=1e-6)
    np.testing.assert_allclose(signatures["encode"](x=x)["loc"], model.encode(x).mean(), atol=1e-5)
    assert signatures["log_weights"](x=x)["log_weight"].shape == (4,)


def test_onnx_and_tflite_decoders_match_the_saved_model(tmp_path):
    """The export pipeline checks each file against the SavedModel's decode (its parity report);
    here the files also agree with each other at another batch size, and sample."""
    run = write_run(str(tmp_path), tiny(latent_channels=(2,)), "hvae")
    report = pipeline.export_run(run, ["onnx", "tflite"], print_fn=lambda *a, **k: None)
    assert report["onnx"]["passed"] and report["tflite"]["passed"], report
    decoders = [load_decoder(os.path.join(run, formats.FORMATS[name].filename)) for name in ("onnx", "tflite")]
    z = sample_inputs(decoders[0].facts, 5, seed=3)["z"]
    for decoder in decoders:
        assert decoder.latent_dim == 4 + 98 and decoder.variant == "hvae"
        assert decoder.generate(2, seed=0).shape == (2, 28, 28, 1)
    np.testing.assert_allclose(decoders[0].decode(z), decoders[1].decode(z), atol=1e-4)


def test_a_training_step_lowers_the_loss(mnist_small):
    from zoo import data

    (x, _), _ = mnist_small
    keras.utils.set_random_seed(0)
    model = tiny()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(data.pipeline(data.binarize(x[:64]), batch_size=32), epochs=2, verbose=0).history
    assert set(model.metric_names) <= set(history)
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(history["loss"][-1], history["reconstruction"][-1] + history["kl"][-1], rtol=1e-4)


def test_warm_up_scales_the_kl_with_the_optimizer_step():
    model, x = tiny(warmup_steps=100), binary()
    model.compile(optimizer="adam")
    for step, weight in [(0, 0.0), (25, 0.25), (100, 1.0), (400, 1.0)]:
        model.optimizer.iterations.assign(step)
        terms = model.loss_terms(x, training=True)
        np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + weight * terms["kl"], rtol=1e-5)
    model.optimizer.iterations.assign(0)
    for terms in (model.loss_terms(x), tiny(warmup_steps=100).loss_terms(x, training=True)):
        # validation and test, or not compiled: the negative ELBO
        np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"], rtol=1e-5)


def test_free_bits_hold_each_group_at_its_floor():
    """Each group's KL counts as max(free_bits, its batch mean): with a floor above every group's
    KL the loss is the reconstruction plus groups * floor, whatever the KL."""
    x = binary()
    model = tiny(free_bits=1e4)
    terms = model.loss_terms(x, training=True)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 3 * 1e4, rtol=1e-6)
    terms = model.loss_terms(x)  # validation and test: the negative ELBO
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"], rtol=1e-5)
    terms = tiny(free_bits=1e-3).loss_terms(x, training=True)
    kls = [terms[f"kl_{level}"] for level in ("top", "7x7", "14x14")]
    expected = terms["reconstruction"] + sum(np.maximum(kl, 1e-3) for kl in kls)
    np.testing.assert_allclose(terms["loss"], expected, rtol=1e-5)


def test_log_weights_average_to_the_elbo_and_their_log_mean_exp_is_tighter():
    keras.utils.set_random_seed(0)
    model, x = tiny(), binary(2)
    k = 400
    tiled = np.repeat(x, k, axis=0)
    weights = tf.reshape(model.log_weights(tiled)["log_weight"], [2, k]).numpy().astype(np.float64)
    elbo = []
    for image in x:
        terms = model.loss_terms(np.repeat(image[None], k, axis=0))
        elbo.append(-(terms["reconstruction"].numpy() + terms["kl"].numpy()))
    standard_error = weights.std(1) / np.sqrt(k)
    assert np.all(np.abs(weights.mean(1) - elbo) < 4 * standard_error + 0.05), (weights.mean(1), elbo)
    bound = evaluate.log_mean_exp(weights)
    assert np.all(bound >= weights.mean(1)) and np.all(bound > np.array(elbo))
