"""Every registered model: built per backbone, trained a step, saved, reloaded, served."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from conftest import SHAPES, images, write_run
from zoo import artifacts, evaluate, networks
from zoo.models import LatentVariableModel

MODELS = zoo.list_models()


def build(name, shape=(28, 28, 1), **kwargs):
    if zoo.get_class(name).conditional:
        kwargs.setdefault("num_classes", 10)
    return zoo.create(name, input_shape=shape, latent_dim=4, width=8, hidden=32, **kwargs)


def labels_for(model, n=4):
    return np.arange(n, dtype=np.int32) % 10 if model.num_classes else None


def targets_for(model, labels, n=4):
    """What `loss_terms` and `fit` take as labels: a supervised model's (dbvae) are 0 / 1 targets."""
    return np.arange(n, dtype=np.int32) % 2 if model.supervised else labels


def test_registry_lists_the_variants():
    assert {"ae", "vae"} <= set(MODELS)
    with pytest.raises(ValueError, match="Unknown model 'vea'. Known models: .*vae"):
        zoo.create("vea", input_shape=(28, 28, 1))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shapes_per_backbone(name, shape):
    model = build(name, shape)
    x, labels = images(shape), labels_for(build(name))
    q = model.encode(x, labels)
    latent = model.serving_endpoints()["decode"][1][0]  # z [B, 4], or a vqvae's codes [B, h, w]
    assert q.event_shape == latent.shape[1:] and q.batch_shape == (4,)
    px = model.decode(q.sample(), labels)
    assert px.event_shape == shape and px.batch_shape == (4,)
    assert model(x, labels).shape == (4, *shape)


@pytest.mark.parametrize("name", MODELS)
def test_every_variant_takes_the_resnet_backbone_and_the_colour_likelihood(name):
    """Residual networks and the logistic mixture on 8-bit colour images, in every variant."""
    shape = (32, 32, 3)
    model = build(name, shape, backbone="resnet", likelihood="logistic_mixture")
    x, labels = np.round(images(shape) * 255) / 255, labels_for(model)
    terms = model.loss_terms(x, targets_for(model, labels))
    assert np.isfinite(terms["loss"].numpy()) and terms["reconstruction"].numpy() > 0
    assert model(x, labels).shape == (4, *shape)
    served = model.serve_decode(model.serve_encode(x, labels).get("codes", model.encode(x, labels).mean()), labels)
    assert {"mean", "mixture_logits", "loc", "scale"} <= set(served)
    assert model.get_config()["backbone"] == "resnet"


@pytest.mark.parametrize("name", MODELS)
def test_train_step_reports_the_loss_terms(name, mnist_small):
    from zoo import data

    (x, y), _ = mnist_small
    keras.utils.set_random_seed(0)
    model = build(name)
    model.compile(optimizer="adam")
    ds = data.pipeline(x[:64], targets_for(model, y[:64] if model.num_classes else None, n=64), batch_size=32)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert set(model.metric_names) <= set(history)
    assert history["loss"][1] < history["loss"][0]
    plain_elbo = (type(model).loss_terms is LatentVariableModel.loss_terms
                  and type(model).objective is LatentVariableModel.objective)
    if plain_elbo:  # the loss is exactly the negative ELBO: reconstruction + KL
        np.testing.assert_allclose(history["loss"][-1], history["reconstruction"][-1] + history["kl"][-1], rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_get_config_round_trip(name):
    cls = zoo.get_class(name)  # the learned prior where the variant takes it (hvae's is N(0, I) over its noise)
    model = build(name, prior="mog") if cls.has_prior and "mog" in getattr(cls, "priors", ("mog",)) else build(name)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()


@pytest.mark.parametrize("name", MODELS)
def test_keras_and_saved_model_round_trips(name, tmp_path):
    model = build(name)
    x, labels = images((28, 28, 1)), labels_for(model)
    out = write_run(str(tmp_path), model, name)

    reloaded = zoo.load_model(out)
    np.testing.assert_allclose(reloaded(x, labels), model(x, labels), atol=1e-6)

    sigs = tf.saved_model.load(f"{out}/saved_model").signatures
    kw = {} if labels is None else {"labels": tf.constant(labels)}
    q = model.encode(x, labels)
    z = q.sample(seed=1)  # what the decoder takes: float z, or a vqvae's int codes
    latent = model.serving_endpoints()["decode"][1][0].name  # "z", or "codes"
    np.testing.assert_allclose(sigs["reconstruct"](x=x, **kw)["mean"], model(x, labels), atol=1e-6)
    decoded = sigs["decode"](**{latent: z}, **kw)
    np.testing.assert_allclose(decoded["mean"], model.decode(z, labels).mean(), atol=1e-6)
    np.testing.assert_allclose(tf.sigmoid(decoded["logits"]), decoded["mean"], atol=1e-6)
    encoded = sigs["encode"](x=x, **kw)
    if model.has_prior:
        assert set(sigs) >= {"encode", "decode", "prior_log_prob", "reconstruct", "log_weights"}
        np.testing.assert_allclose(encoded["loc"], q.mean(), atol=1e-6)
        np.testing.assert_allclose(encoded["scale"], q.stddev(), atol=1e-6)
        np.testing.assert_allclose(sigs["prior_log_prob"](z=z)["log_prob"], model.prior().log_prob(z), atol=1e-5)
    else:
        assert "prior_log_prob" not in sigs
        expected = model.serve_encode(x, labels)  # ae {"z"}, vqvae {"codes"}
        assert set(encoded) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(encoded[key], value, atol=1e-6)


def test_saved_model_and_live_model_give_the_same_nll(tmp_path, mnist_small):
    _, (xt, _) = mnist_small
    model = build("vae")
    out = str(tmp_path)
    artifacts.save_model(model, out)
    x = (xt[:6] > 0.5).astype(np.float32)
    live = evaluate.likelihood_metrics(evaluate.model_functions(model), x, k=400)
    saved = evaluate.likelihood_metrics(evaluate.saved_model_functions(f"{out}/saved_model"), x, k=400)
    assert live["nll"] == pytest.approx(saved["nll"], abs=0.1)  # the z's differ: Monte Carlo noise only
    assert live["elbo"] == pytest.approx(saved["elbo"], abs=0.3)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 32, 32, 1), np.float32), r"Expected images of shape \(batch, 28, 28, 1\), received \(2, 32, 32, 1\)"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 28, 28, 1), 3.0, np.float32), r"Expected pixel values in \[0, 1\], received \[3, 3\]"),
])
def test_bad_images_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        build("vae").encode(bad)


def test_bad_latents_and_labels_are_rejected():
    model = build("vae", num_classes=10)
    with pytest.raises(ValueError, match=r"Expected latents of shape \(batch, 4\), received \(2, 3\)"):
        model.decode(np.zeros((2, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 9\], received \[0, 12\]"):
        model.decode(np.zeros((2, 4), np.float32), [0, 12])
    with pytest.raises(ValueError, match="conditional on 10 classes: pass `labels`"):
        model.decode(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="Expected integer class ids"):
        model.decode(np.zeros((2, 4), np.float32), np.array([0.0, 1.0]))


@pytest.mark.parametrize("kwargs, message", [
    ({"latent_dim": 0}, r"Expected a positive integer for `latent_dim`, received latent_dim=0"),
    ({"input_shape": (28, 28)}, r"Expected `input_shape` as \(height, width, channels\)"),
    ({"likelihood": "poisson"}, "Unknown likelihood 'poisson'"),
    ({"prior": "flat"}, "Unknown prior 'flat'"),
    ({"dense_layers": -1}, "Expected dense_layers >= 0, received dense_layers=-1"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.create("vae", **{"input_shape": (28, 28, 1), **kwargs})


def test_dense_layers_join_the_conv_trunk_to_z():
    def dense_sizes(network):
        return [layer.units for layer in network.layers if isinstance(layer, keras.layers.Dense)]

    model = build("beta_vae", dense_layers=2)
    assert dense_sizes(model.encoder) == [32, 32, 8] and dense_sizes(model.decoder) == [32, 32, 7 * 7 * 16]
    assert type(model).from_config(model.get_config()).dense_layers == 2
    assert model.decode(model.encode(images((28, 28, 1))).sample()).event_shape == (28, 28, 1)
    mlp = build("vae", (8, 8, 1), dense_layers=2)  # an MLP backbone keeps its two hidden layers
    assert dense_sizes(mlp.encoder) == [32, 32, 8]
    with pytest.raises(ValueError, match="expected dense_layers=0 and broadcast_decoder=False, received dense_layers=2"):
        build("vqvae", dense_layers=2)


def test_broadcast_decoder_reads_position_from_pixel_coordinates():
    model = build("cvae", (64, 64, 1), broadcast_decoder=True, dense_layers=2)
    grid = model.decoder.layers[0]
    assert isinstance(grid, networks.SpatialBroadcast)
    z = np.arange(2 * 14, dtype=np.float32).reshape(2, 14)  # 4 latents + a 10-class one-hot
    tiled = keras.ops.convert_to_numpy(grid(z))
    assert tiled.shape == (2, 64, 64, 16)
    np.testing.assert_array_equal(tiled[:, 5, 9, :14], z)  # every pixel sees all of z
    np.testing.assert_allclose(tiled[0, 0, 0, 14:], [-1, -1])  # channels x, then y (down the image)
    np.testing.assert_allclose(tiled[1, 0, 63, 14:], [1, -1])
    np.testing.assert_allclose(tiled[0, 63, 0, 14:], [-1, 1])
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.decoder.layers)  # z goes straight to the grid
    assert sum(isinstance(layer, keras.layers.Dense) for layer in model.encoder.layers) == 3
    labels = np.array([3, 7], np.int32)
    assert model.decode(model.encode(images((64, 64, 1), 2), labels).sample(), labels).event_shape == (64, 64, 1)
    again = type(model).from_config(model.get_config())
    assert again.broadcast_decoder and isinstance(again.decoder.layers[0], networks.SpatialBroadcast)
    with pytest.raises(ValueError, match="broadcast_decoder=False, received dense_layers=0, broadcast_decoder=True"):
        build("vqvae", broadcast_decoder=True)


def test_autoencoder_cannot_sample():
    with pytest.raises(ValueError, match="no prior to sample from"):
        build("ae").sample(2)
