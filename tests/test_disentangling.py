"""The disentangling VAEs (beta_tcvae, factor_vae, dip_vae) and `zoo.decomposition`: the total
correlation estimators against distributions whose total correlation is known, the DIP-VAE
regulariser, the objectives, and FactorVAE's discriminator through save, reload and resume.

The estimators are tested on a minibatch that is a Gaussian mixture: M means drawn from
N(0, Sigma), each the centre of a posterior N(mu_j, h^2 I). As M grows that mixture, the aggregate
posterior, tends to N(0, Sigma + h^2 I), whose total correlation is -0.5 log det of its
correlation matrix.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import callbacks, decomposition, training
from zoo.models.dip_vae import covariance_penalties

CORRELATION = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.6], [0.5, 0.6, 1.0]])
SCALE = 0.5  # h: wide enough for the mixture of M = 2000 to be smooth
BATCH = 2000
DISCRIMINATOR = dict(discriminator_units=8, discriminator_layers=2)


def gaussian_tc(covariance):
    std = np.sqrt(np.diag(covariance))
    return -0.5 * np.linalg.slogdet(covariance / np.outer(std, std))[1]


def mixture_batch(correlation, seed, m=BATCH, h=SCALE):
    """`(z, loc, scale)`: M posteriors N(mu_j, h^2 I), mu_j ~ N(0, correlation), and z_j ~ q(z|x_j)."""
    rng = np.random.default_rng(seed)
    loc = rng.standard_normal((m, len(correlation))) @ np.linalg.cholesky(correlation).T
    z = loc + h * rng.standard_normal(loc.shape)
    return [tf.constant(a, tf.float32) for a in (z, loc, np.full(loc.shape, h))]


def estimated_tc(correlation, dataset_size, estimator, seeds=4):
    return np.mean([decomposition.total_correlation(*mixture_batch(correlation, seed), dataset_size, estimator)
                    for seed in range(seeds)])


def tiny(name, shape=(28, 28, 1), **kwargs):
    options = dict(DISCRIMINATOR) if name == "factor_vae" else {}
    return zoo.create(name, input_shape=shape, latent_dim=4, width=8, hidden=16, **{**options, **kwargs})


def binary(n=16, shape=(28, 28, 1), seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, *shape)) > 0.5).astype(np.float32)


# --- the estimators ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, correlation", [("independent", np.eye(3)), ("correlated", CORRELATION)])
def test_stratified_estimator_finds_the_known_total_correlation(name, correlation):
    """MSS with the minibatch as the whole data set (N = M) is the mixture's own density."""
    expected = gaussian_tc(correlation + SCALE ** 2 * np.eye(3))  # 0 when independent, 0.404 nats when correlated
    assert abs(estimated_tc(correlation, BATCH, "mss") - expected) < 0.02


@pytest.mark.parametrize("dataset_size", [1, 100_000])
@pytest.mark.parametrize("name, correlation", [("independent", np.eye(3)), ("correlated", CORRELATION)])
def test_minibatch_weighted_sampling_is_the_known_tc_raised_by_its_log_n(name, correlation, dataset_size):
    """MWS weighs every pair 1/(NM): on a smooth mixture its TC is the true one plus (D - 1) log N."""
    expected = gaussian_tc(correlation + SCALE ** 2 * np.eye(3)) + 2 * np.log(dataset_size)
    assert abs(estimated_tc(correlation, dataset_size, "mws") - expected) < 0.02


def test_the_estimators_tell_correlation_apart_at_a_training_batch_size():
    """At M = 64 the estimates are rough, but the correlated batch has the larger TC for both estimators."""
    for estimator in decomposition.ESTIMATORS:
        tc = {name: estimated_tc(c, 18_000, estimator, seeds=1) for name, c in (("i", np.eye(3)), ("c", CORRELATION))}
        assert tc["c"] > tc["i"]


def test_importance_weights_of_each_sample_sum_to_their_design():
    mss = np.exp(decomposition.log_importance_weights(5, 1000, "mss").numpy())
    np.testing.assert_allclose(mss.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(mss), 1 / 1000)
    np.testing.assert_allclose(mss[4, 0], (1000 - 4) / (1000 * 4), rtol=1e-6)  # the next one, cyclically
    mws = np.exp(decomposition.log_importance_weights(5, 1000, "mws").numpy())
    np.testing.assert_allclose(mws, 1 / 5000, rtol=1e-6)


def test_the_three_parts_add_up_to_the_one_sample_kl():
    z, loc, scale = mixture_batch(CORRELATION, seed=0, m=32)
    log_normal = lambda u, log_scale: tf.reduce_sum(-0.5 * u ** 2 - log_scale - 0.5 * np.log(2 * np.pi), -1)
    prior = log_normal(z, 0.0)
    kl_sample = log_normal((z - loc) / scale, tf.math.log(scale)) - prior  # log q(z|x) - log p(z), by hand
    for estimator in decomposition.ESTIMATORS:
        parts = decomposition.decompose(z, loc, scale, prior, 1000, estimator)
        np.testing.assert_allclose(parts["mi"] + parts["tc"] + parts["dwkl"], kl_sample, rtol=1e-4, atol=1e-3)


def test_permuted_dimensions_keep_each_marginal_and_lose_the_correlation():
    z, _, _ = mixture_batch(CORRELATION, seed=1)
    permuted = decomposition.permute_dims(z).numpy()
    np.testing.assert_array_equal(np.sort(permuted, axis=0), np.sort(z.numpy(), axis=0))
    assert np.abs(np.corrcoef(z.numpy().T)[0, 1]) > 0.5
    assert np.abs(np.corrcoef(permuted.T) - np.eye(3)).max() < 0.1


def test_bad_estimator_settings_say_what_was_expected():
    with pytest.raises(ValueError, match=r"Unknown estimator 'iwae': expected one of \('mws', 'mss'\)"):
        tiny("beta_tcvae", estimator="iwae")
    with pytest.raises(ValueError, match="Expected a positive integer for `dataset_size` .* received dataset_size=0"):
        tiny("beta_tcvae", dataset_size=0)
    with pytest.raises(ValueError, match="Expected beta >= 0, received beta=-1"):
        tiny("beta_tcvae", beta=-1)
    with pytest.raises(ValueError, match="Expected lambda_od >= 0, received lambda_od=-2"):
        tiny("dip_vae", lambda_od=-2)
    with pytest.raises(ValueError, match="Expected a positive integer for `discriminator_layers`"):
        tiny("factor_vae", discriminator_layers=0)


# --- DIP-VAE ----------------------------------------------------------------------------------


def test_aggregate_covariance_is_the_mean_posterior_variance_plus_the_covariance_of_means():
    rng = np.random.default_rng(0)
    loc, scale = rng.standard_normal((50, 3)), rng.uniform(0.1, 1.0, (50, 3))
    expected = np.diag(np.mean(scale ** 2, axis=0)) + np.cov(loc.T, bias=True)
    np.testing.assert_allclose(decomposition.aggregate_covariance(loc, scale), expected, rtol=1e-5, atol=1e-6)


def test_dip_regulariser_is_zero_for_identity_covariance_and_grows_with_correlation():
    def penalties(rho, m=20_000):
        """An aggregate posterior of covariance [[1, rho], [rho, 1]]: means of covariance (1 - s^2) C plus s^2 I."""
        s = 0.6
        cov = (1 - s ** 2) * np.array([[1.0, rho / (1 - s ** 2)], [rho / (1 - s ** 2), 1.0]])
        loc = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=m)
        covariance = decomposition.aggregate_covariance(loc.astype(np.float32), np.full(loc.shape, s, np.float32))
        return [float(p) for p in covariance_penalties(covariance)]

    off, diagonal = penalties(0.0)
    assert off < 1e-3 and diagonal < 1e-3
    offs = [penalties(rho)[0] for rho in (0.0, 0.2, 0.4, 0.6)]
    assert offs == sorted(offs) and offs[-1] == pytest.approx(2 * 0.6 ** 2, rel=0.05)  # two entries of 0.36
    np.testing.assert_allclose(covariance_penalties(tf.constant([[2.0, 0.5], [0.5, 1.0]])), [0.5, 1.0])


# --- the objectives ----------------------------------------------------------------------------


def test_beta_tcvae_adds_beta_minus_one_tcs_to_the_elbo():
    model = tiny("beta_tcvae", beta=6.0, dataset_size=1000)
    terms = model.loss_terms(binary())
    assert {"mi", "tc", "dwkl"} <= set(terms)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"] + 5.0 * terms["tc"], rtol=1e-5)
    weighted = tiny("beta_tcvae", beta=1.0, alpha=2.0, gamma=3.0, estimator="mss")
    terms = weighted.loss_terms(binary())
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"] + terms["mi"] + 2 * terms["dwkl"],
                               rtol=1e-5)


def test_dip_vae_adds_its_weighted_penalties_to_the_elbo():
    terms = tiny("dip_vae", lambda_od=3.0, lambda_d=7.0).loss_terms(binary())
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"] + 3.0 * terms["off_diagonal"]
                               + 7.0 * terms["diagonal"], rtol=1e-5)


def test_factor_vae_adds_gamma_tcs_to_the_elbo():
    terms = tiny("factor_vae", gamma=35.0).loss_terms(binary())
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"] + 35.0 * terms["tc"], rtol=1e-5)
    assert 0.0 <= float(terms["discriminator_accuracy"]) <= 1.0


@pytest.mark.parametrize("name, options", [
    ("beta_tcvae", dict(beta=3.0, alpha=0.5, gamma=2.0, estimator="mss", dataset_size=1234)),
    ("dip_vae", dict(lambda_od=2.0, lambda_d=20.0)),
    ("factor_vae", dict(gamma=10.0, discriminator_units=8, discriminator_layers=3, discriminator_learning_rate=3e-4))])
def test_each_model_trains_a_step_and_round_trips_its_options(name, options):
    model = tiny(name, **options)
    config = model.get_config()
    assert {key: config[key] for key in options} == options
    assert type(model).from_config(config).get_config() == config
    model.compile(optimizer="adam")
    before = [w.copy() for w in model.get_weights()]
    logs = model.fit(binary(), batch_size=8, epochs=1, verbose=0).history
    assert set(model.metric_names) <= set(logs) and all(np.isfinite(v[-1]) for v in logs.values())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# --- FactorVAE's discriminator: its own step, save, reload, resume ------------------------------


def test_the_discriminator_has_its_own_optimizer_and_the_vae_optimizer_leaves_it_alone():
    model = tiny("factor_vae")
    model.compile(optimizer="adam")
    vae, critic = model.variable_groups()
    assert len(critic) == 2 * 3 and len(vae) + len(critic) == len(model.trainable_variables)
    assert model.extra_optimizers == [model.discriminator_optimizer]
    before = [v.numpy().copy() for v in critic]
    model.fit(binary(), batch_size=8, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == int(model.discriminator_optimizer.iterations) == 2
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, critic))
    for optimizer, variables in ((model.optimizer, vae), (model.discriminator_optimizer, critic)):
        alone = keras.optimizers.Adam()
        alone.build(variables)  # the same slots: each optimizer holds moments for its own network only
        assert len(optimizer.variables) == len(alone.variables)


def discriminator_state(model):
    return ([v.numpy() for v in model.discriminator.weights],
            int(model.discriminator_optimizer.iterations), [v.numpy() for v in model.discriminator_optimizer.variables])


def assert_same_discriminator(a, b):
    weights_a, step_a, slots_a = discriminator_state(a)
    weights_b, step_b, slots_b = discriminator_state(b)
    assert step_a == step_b > 0
    for x, y in zip(weights_a + slots_a, weights_b + slots_b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_discriminator_and_its_optimizer_survive_save_and_load(tmp_path):
    model = tiny("factor_vae")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(binary(), batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert_same_discriminator(model, reloaded)
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    x = binary(4)
    np.testing.assert_allclose(reloaded(x), model(x), atol=1e-6)


def test_a_resumed_run_restores_the_discriminator_and_its_optimizer(tmp_path):
    """What a killed run leaves: the checkpoint of its last step; a rerun restores it into a new model."""
    x = binary(32)

    def build():
        return training.build_model("factor_vae", input_shape=x.shape[1:], latent_dim=4, width=8, hidden=16,
                                    **DISCRIMINATOR)

    model = build()
    checkpoint = callbacks.Checkpoint(str(tmp_path), fingerprint={"test": 1}, every_steps=3)
    model.fit(x, batch_size=8, epochs=2, verbose=0, callbacks=[checkpoint])  # 8 steps
    resumed = build()
    state = callbacks.Checkpoint(str(tmp_path), fingerprint={"test": 1}).restore(resumed)
    assert state["epoch"] == 2
    assert_same_discriminator(model, resumed)
    for a, b in zip(model.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    resumed.fit(x, batch_size=8, epochs=3, initial_epoch=2, verbose=0)
    assert int(resumed.discriminator_optimizer.iterations) == 12  # went on counting from the restored step


def test_beta_tcvae_runs_take_their_training_images_as_the_estimators_n(tmp_path, mnist_npz):
    manifest = training.train("beta_tcvae", out=str(tmp_path / "run"), dataset=mnist_npz, epochs=1, latent_dim=3,
                              width=8, hidden=16, nll_samples=0, dataset_size=None, print_fn=lambda *a, **k: None)
    assert manifest["config"]["dataset_size"] == manifest["dataset"]["train"] == 360
