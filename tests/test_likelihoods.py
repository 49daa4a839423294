"""The likelihoods p(x|z) against values computed by hand: masses that sum to 1 over the 256 levels,
log-probabilities of a few pixels, the served parameters, and bits per dimension."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import likelihoods, metrics

LEVELS = np.arange(256) / 255.0


def logistic_cdf(v, loc, scale):
    return 1 / (1 + np.exp(-(v - loc) / scale))


def level_mass(level, loc, scale):
    """A discretized logistic's mass on one 8-bit level, by hand, with open outer bins."""
    upper = 1.0 if level == 255 else logistic_cdf((level + 0.5) / 255, loc, scale)
    lower = 0.0 if level == 0 else logistic_cdf((level - 0.5) / 255, loc, scale)
    return upper - lower


def mixture_params(seed=0, pixels=4, k=3, c=2):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(pixels, k)).astype(np.float32), rng.uniform(-0.1, 1.1, (pixels, k, c)).astype(np.float32),
            rng.uniform(0.002, 0.2, (pixels, k, c)).astype(np.float32))


def test_the_mixture_masses_over_all_256_levels_sum_to_one_per_pixel():
    logits, loc, scale = mixture_params(c=1)
    pixel = likelihoods.DiscretizedLogisticMixture(logits, loc, scale)
    grid = np.broadcast_to(LEVELS[:, None, None], (256, len(logits), 1)).astype(np.float32)
    masses = np.exp(pixel.log_prob(grid).numpy())  # [256 levels, pixels]
    np.testing.assert_allclose(masses.sum(0), 1.0, atol=1e-5)
    assert (masses > 0).all()


def test_the_mixture_log_prob_matches_a_hand_computation():
    logits, loc, scale = mixture_params()
    pixel = likelihoods.DiscretizedLogisticMixture(logits, loc, scale)
    levels = np.array([[0, 255], [17, 128], [254, 1], [200, 200]])
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    by_hand = [np.log(sum(weights[p, k] * np.prod([level_mass(levels[p, c], loc[p, k, c], scale[p, k, c])
                                                   for c in range(2)]) for k in range(3))) for p in range(4)]
    np.testing.assert_allclose(pixel.log_prob((levels / 255).astype(np.float32)), by_hand, rtol=1e-4)
    # Grey values between levels count as their nearest level.
    np.testing.assert_allclose(pixel.log_prob((levels / 255 + 0.3 / 255).astype(np.float32)), by_hand, rtol=1e-4)


def test_the_closed_form_equals_tfps_quantized_logistic_mixture():
    logits, loc, scale = mixture_params(seed=3, pixels=64, k=4, c=3)
    pixel = likelihoods.DiscretizedLogisticMixture(logits, loc, scale)
    levels = np.random.default_rng(4).integers(0, 256, size=(64, 3))
    levels[:3] = [[0, 255, 128], [255, 0, 1], [254, 0, 255]]  # the outer bins
    x = (levels / 255).astype(np.float32)
    np.testing.assert_allclose(pixel.log_prob(x), pixel.levels().log_prob(levels.astype(np.float32)), rtol=1e-4,
                               atol=1e-4)


def test_the_mixture_stays_finite_far_in_the_tails():
    loc = np.array([[[26]], [[230]], [[128]]], np.float32) / 255  # on levels, at the narrowest scale
    pixel = likelihoods.DiscretizedLogisticMixture(np.zeros([3, 1], np.float32), loc,
                                                   np.full([3, 1, 1], likelihoods.MIN_LOGISTIC_SCALE, np.float32))
    log_prob = pixel.log_prob(np.array([[230], [26], [128]], np.float32) / 255).numpy()
    assert np.isfinite(log_prob).all() and log_prob[:2].max() < -1000 and log_prob[2] > -0.02  # 1 - 2 sigmoid(-5)


def test_served_parameters_rebuild_the_same_distribution():
    """An outside tool can recompute log p(x|z) from the decode outputs alone."""
    channels = 3
    raw = tf.random.stateless_normal([2, 4, 6, likelihoods.output_channels("logistic_mixture", channels)], [0, 1])
    params = likelihoods.parameters(raw, "logistic_mixture", channels)
    k = likelihoods.COMPONENTS
    assert params["mixture_logits"].shape == (2, 4, 6, k) and params["loc"].shape == (2, 4, 6, k, channels)
    assert params["mean"].shape == (2, 4, 6, channels)
    mean = params["mean"].numpy()
    assert mean.min() >= 0 and mean.max() <= 1
    x = np.round(np.random.default_rng(0).uniform(size=(2, 4, 6, channels)) * 255) / 255
    px = likelihoods.distribution(params, "logistic_mixture")
    assert px.event_shape == (4, 6, channels) and px.batch_shape == (2,)
    pixel = likelihoods.DiscretizedLogisticMixture(params["mixture_logits"][0, 1, 2], params["loc"][0, 1, 2],
                                                   params["scale"][0, 1, 2])
    whole = px.log_prob(x.astype(np.float32)).numpy()
    per_pixel = sum(likelihoods.DiscretizedLogisticMixture(params["mixture_logits"][0, i, j], params["loc"][0, i, j],
                                                           params["scale"][0, i, j]).log_prob(x[0, i, j]).numpy()
                    for i in range(4) for j in range(6))
    np.testing.assert_allclose(whole[0], per_pixel, rtol=1e-5)
    np.testing.assert_allclose(pixel.mean(), mean[0, 1, 2], rtol=1e-5)


def test_bernoulli_and_gaussians_by_hand():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 3, 1)).astype(np.float32)
    x = (rng.uniform(size=logits.shape) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    bernoulli = likelihoods.parameters(logits, "bernoulli", 1)
    np.testing.assert_allclose(bernoulli["mean"], p, rtol=1e-6)
    np.testing.assert_allclose(likelihoods.distribution(bernoulli, "bernoulli").log_prob(x),
                               np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3)), rtol=1e-5)

    grey = np.full((1, 2, 2, 1), 0.25, np.float32)
    px = likelihoods.image_likelihood(np.zeros((1, 2, 2, 1), np.float32), "gaussian", 1, np.zeros(1, np.float32))
    sigma = 1 + likelihoods.MIN_SCALE
    np.testing.assert_allclose(px.log_prob(grey),
                               [4 * (-0.5 * ((0.25 - 0.5) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi)))], rtol=1e-5)

    raw = np.concatenate([np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.3)], -1).astype(np.float32)
    params = likelihoods.parameters(raw, "gaussian_pixel", 1)
    sigma = np.log1p(np.exp(0.3)) + likelihoods.MIN_PIXEL_SCALE
    np.testing.assert_allclose(params["scale"], np.full((1, 2, 2, 1), sigma), rtol=1e-6)
    np.testing.assert_allclose(likelihoods.distribution(params, "gaussian_pixel").log_prob(grey),
                               [4 * (-0.5 * ((0.25 - 0.5) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi)))], rtol=1e-5)


def test_bits_per_dim():
    assert metrics.bits_per_dim(784 * np.log(2), (28, 28, 1)) == pytest.approx(1.0)
    # A uniform distribution over the 256 levels is 8 bits per dimension.
    assert metrics.bits_per_dim(64 * 64 * 3 * np.log(256), (64, 64, 3)) == pytest.approx(8.0)


def test_auto_picks_the_mixture_for_colour_and_unknown_names_are_refused():
    colour = np.random.default_rng(0).uniform(size=(20, 8, 8, 3)).astype(np.float32)
    assert likelihoods.choose(colour)[0] == "logistic_mixture"
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
        likelihoods.choose(colour, "poisson")
    from zoo import cli

    assert cli.LIKELIHOODS == ("auto", *likelihoods.NAMES)


@pytest.mark.parametrize("likelihood", ["gaussian_pixel", "logistic", "logistic_mixture"])
def test_a_model_trains_and_serves_each_likelihood(likelihood):
    """One training step on 8-bit colour images lowers nothing to NaN, and the decode signature
    serves the mean in [0, 1] with the parameters."""
    model = zoo.create("vae", input_shape=(16, 16, 3), latent_dim=2, width=4, hidden=8, likelihood=likelihood)
    model.compile(optimizer="adam")
    x = np.round(np.random.default_rng(0).uniform(size=(8, 16, 16, 3)) * 255).astype(np.float32) / 255
    before = model.evaluate(x, verbose=0, return_dict=True)["loss"]
    model.fit(x, epochs=3, batch_size=8, verbose=0)
    after = model.evaluate(x, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < before
    served = model.serve_decode(tf.zeros([2, 2]))
    assert served["mean"].shape == (2, 16, 16, 3) and 0 <= served["mean"].numpy().min() <= served["mean"].numpy().max() <= 1
    assert set(served) == ({"mean", "scale"} if likelihood == "gaussian_pixel" else
                           {"mean", "mixture_logits", "loc", "scale"})
    if likelihood == "logistic":  # one component
        assert served["mixture_logits"].shape == (2, 16, 16, 1) and served["loc"].shape == (2, 16, 16, 1, 3)
    np.testing.assert_allclose(served["mean"], model.decode(tf.zeros([2, 2])).mean(), rtol=1e-5, atol=1e-6)
