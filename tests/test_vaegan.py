"""The VAE-GAN: its discriminator, its three losses and updates, and the discriminator's save,
reload and resume with its optimizer. The registry-driven tests (test_models, test_export,
test_model_runtime) cover it beside every other variant."""

import os
import runpy

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import callbacks, cli, training
from zoo.networks.discriminator import discriminator, feature_layers

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "train_vaegan.py")
SHAPE = (28, 28, 1)
TINY = dict(latent_dim=4, width=8, hidden=16, discriminator_width=8)


def tiny(shape=SHAPE, **kwargs):
    return zoo.create("vaegan", input_shape=shape, **{**TINY, **kwargs})


def binary(n=16, shape=SHAPE, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, *shape)) > 0.5).astype(np.float32)


def snapshot(network):
    return [w.numpy().copy() for w in network.trainable_weights]


def test_the_discriminator_gives_the_features_of_the_layer_asked_for_and_a_logit():
    x = binary(3)
    assert feature_layers(SHAPE) == 2 and feature_layers((8, 8, 1)) == 2 and feature_layers((64, 64, 3)) == 4
    for layer, features in ((1, (3, 14, 14, 8)), (2, (3, 7, 7, 16)), (None, (3, 7, 7, 16))):
        f, logits = discriminator(SHAPE, width=8, feature_layer=layer)(x)
        assert (tuple(f.shape), tuple(logits.shape)) == (features, (3, 1))
    f, logits = discriminator((8, 8, 1), hidden=16, feature_layer=1)(binary(3, (8, 8, 1)))  # the MLP's
    assert (tuple(f.shape), tuple(logits.shape)) == ((3, 16), (3, 1))
    with pytest.raises(ValueError, match=r"Expected a feature_layer from 1 to 2 \(the discriminator's hidden layers "
                                         r"for 28x28x1 images\), received feature_layer=3"):
        tiny(feature_layer=3)
    with pytest.raises(ValueError, match="Expected gamma >= 0, received gamma=-1"):
        tiny(gamma=-1)


def test_the_losses_are_the_pixel_elbo_and_the_papers_terms():
    """The terms against numpy, for the same draws of z ~ q(z|x) and z_p ~ p(z)."""
    model, x = tiny(), binary(8)
    tf.random.set_seed(5)
    terms = {k: float(v) for k, v in model.loss_terms(x).items()}
    tf.random.set_seed(5)
    q = model.encode(x)
    z = q.sample()
    x_tilde, x_p = (model.decode(v).mean() for v in (z, model.prior().sample(8)))
    features, logits = (np.asarray(v, np.float64) for v in model.discriminator(tf.concat([x, x_tilde, x_p], 0)))
    f = features.reshape(3, 8, -1)
    feature_nll = 0.5 * ((f[0] - f[1]) ** 2).sum(-1) + f.shape[-1] / 2 * np.log(2 * np.pi)  # -log N(f(x); f(x~), I)
    bce = lambda t, label: np.mean(np.logaddexp(0, t) - label * t)
    real, fake = logits[:8], logits[8:]
    assert terms["feature_reconstruction"] == pytest.approx(feature_nll.mean(), rel=1e-5)
    assert terms["discriminator_loss"] == pytest.approx(bce(real, 1) + bce(fake, 0), rel=1e-5)
    assert terms["adversarial_loss"] == pytest.approx(bce(fake, 1), rel=1e-5)  # non-saturating, on x~ and x_p
    pixel = -model.decode(z).log_prob(x)
    assert terms["reconstruction"] == pytest.approx(float(np.mean(pixel)), rel=1e-5)
    assert terms["loss"] == pytest.approx(terms["reconstruction"] + terms["kl"], rel=1e-5)  # the pixel -ELBO
    losses = {k: float(v) for k, v in model.network_losses(model.loss_terms(x)).items()}
    assert set(losses) == {"encoder", "decoder", "discriminator"}


@pytest.mark.parametrize("likelihood, shape, free", [("bernoulli", (8, 8, 1), 0), ("gaussian_pixel", (8, 8, 1), 1),
                                                   ("logistic_mixture", (8, 8, 3), 5 * 3)])
def test_the_pixel_likelihood_reaches_only_its_spread(likelihood, shape, free):
    """The pixel NLL's gradient reaches none of the decoder's channels that set the mean D sees:
    it reaches a per-pixel Gaussian's scale channel and a mixture's component scales (the last
    5 components x 3 colours), and nothing of a Bernoulli's logits."""
    model = tiny(shape, likelihood=likelihood)
    x = np.round(binary(2, shape) * 255) / 255
    raw = tf.Variable(model.decoder_outputs(model.encode(x).mean()))
    with tf.GradientTape() as tape:
        nll = -model.likelihood_of(model.spread_only(raw)).log_prob(x)
    reached = np.abs(tape.gradient(nll, raw).numpy()).sum(axis=(0, 1, 2)) > 0
    assert reached.tolist() == [False] * (raw.shape[-1] - free) + [True] * free
    np.testing.assert_allclose(nll, -model.likelihood_of(raw).log_prob(x))  # the same value: only the gradient differs


def test_a_train_step_changes_all_three_networks_each_with_its_optimizer():
    model = tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = {name: snapshot(getattr(model, name)) for name in ("encoder", "decoder", "discriminator")}
    model.fit(binary(16), batch_size=16, epochs=1, verbose=0)
    for name, weights in before.items():
        after = snapshot(getattr(model, name))
        assert all(not np.array_equal(a, b) for a, b in zip(weights, after, strict=True)), name
    assert int(model.optimizer.iterations) == int(model.discriminator_optimizer.iterations) == 1
    encoder, decoder, critic = model.variable_groups()
    assert len(encoder) + len(decoder) + len(critic) == len(model.trainable_variables)
    assert {id(v) for v in critic} == {id(v) for v in model.discriminator.trainable_variables}


def test_get_config_round_trip_keeps_the_discriminator_settings():
    model = tiny(gamma=0.5, feature_layer=1, discriminator_learning_rate=1e-4)
    config = model.get_config()
    assert {k: config[k] for k in ("gamma", "discriminator_width", "feature_layer", "discriminator_learning_rate")} \
        == {"gamma": 0.5, "discriminator_width": 8, "feature_layer": 1, "discriminator_learning_rate": 1e-4}
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert clone.discriminator.outputs[0].shape[1:] == (14, 14, 8)  # layer 1's features


def test_the_discriminator_and_its_optimizer_survive_save_and_reload(tmp_path):
    model = tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(binary(16), batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model.discriminator.get_weights(), reloaded.discriminator.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(reloaded.discriminator_optimizer.iterations) == int(model.discriminator_optimizer.iterations) == 4
    for a, b in zip(model.discriminator_optimizer.variables, reloaded.discriminator_optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = binary(4)
    np.testing.assert_allclose(reloaded(x), model(x), atol=1e-6)


def test_a_resumed_run_restores_the_discriminator_and_its_optimizer(tmp_path):
    """What a killed run leaves: the checkpoint of its last step; a rerun restores it into a new model
    (built as the recipe builds it) and goes on counting D's steps from there."""
    x = binary(32)

    def build():
        return training.build_model("vaegan", input_shape=SHAPE, **TINY)

    model = build()
    model.fit(x, batch_size=8, epochs=2, verbose=0, callbacks=[callbacks.Checkpoint(str(tmp_path), {"test": 1})])
    resumed = build()
    assert callbacks.Checkpoint(str(tmp_path), {"test": 1}).restore(resumed)["epoch"] == 2
    for a, b in zip(model.get_weights(), resumed.get_weights(), strict=True):  # D's weights among them
        np.testing.assert_array_equal(a, b)
    assert int(resumed.discriminator_optimizer.iterations) == 8
    for a, b in zip(model.discriminator_optimizer.variables, resumed.discriminator_optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    resumed.fit(x, batch_size=8, epochs=3, initial_epoch=2, verbose=0)
    assert int(resumed.discriminator_optimizer.iterations) == int(resumed.optimizer.iterations) == 12


def test_the_recipe_passes_its_options_to_the_model_and_keeps_no_validation_split():
    recipe = runpy.run_path(RECIPE)  # not __main__: trains nothing
    parser = cli.build_parser("vaegan", recipe["__doc__"], recipe["DEFAULTS"], recipe["OPTIONS"])
    args = vars(parser.parse_args(["--gamma", "0.3", "--feature-layer", "1", "--discriminator-width", "16",
                                   "--discriminator-learning-rate", "1e-4"]))
    assert args["validation_split"] == 0.0  # the last weights, not those of the best pixel ELBO
    options = {k: args[k] for k in ("gamma", "feature_layer", "discriminator_width", "discriminator_learning_rate")}
    assert zoo.create("vaegan", input_shape=SHAPE, **options).get_config()["feature_layer"] == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--gamma", "-1"])
