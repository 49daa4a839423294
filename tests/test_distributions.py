"""The distributions and the ELBO against values computed by hand."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import distributions as dists


def softplus(v):
    return np.log1p(np.exp(v))


def test_gaussian_posterior_uses_softplus_scales():
    params = np.array([[0.5, -1.0, 0.0, 2.0]], np.float32)
    q = dists.gaussian_posterior(params)
    np.testing.assert_allclose(q.mean(), [[0.5, -1.0]])
    np.testing.assert_allclose(q.stddev(), softplus(np.array([[0.0, 2.0]])) + dists.MIN_SCALE, rtol=1e-6)


def test_closed_form_kl_against_standard_normal():
    loc, scale = np.array([[0.3, -1.2]]), np.array([[0.5, 2.0]])
    q = dists.tfd.Independent(dists.tfd.Normal(loc.astype(np.float32), scale.astype(np.float32)), 1)
    by_hand = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale))
    z = q.sample()
    np.testing.assert_allclose(dists.kl_divergence(q, dists.standard_normal(2), z), [by_hand], rtol=1e-5)


def test_monte_carlo_kl_for_a_mixture_prior():
    layer = dists.MixturePrior(latent_dim=2, components=3)
    q = dists.gaussian_posterior(np.zeros((1, 4), np.float32))
    z = np.array([[0.1, -0.2]], np.float32)
    p = layer.distribution()
    expected = q.log_prob(z) - p.log_prob(z)
    np.testing.assert_allclose(dists.kl_divergence(q, p, z), expected, rtol=1e-6)
    # The mixture's density by hand: sum_k pi_k N(z; mu_k, sigma_k).
    locs, sigma = layer.locs.numpy(), softplus(layer.raw_scales.numpy()) + dists.MIN_SCALE
    comp = np.prod(np.exp(-0.5 * ((z - locs) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma), axis=1)
    np.testing.assert_allclose(p.log_prob(z), [np.log(np.mean(comp))], rtol=1e-5)


def test_elbo_terms_match_a_hand_computation():
    """The VAE's loss is E_q[-log p(x|z)] + KL(q || p): check both parts at a fixed z."""
    model = zoo.create("vae", input_shape=(8, 8, 1), latent_dim=3, hidden=16)
    x = (np.random.default_rng(0).uniform(size=(5, 8, 8, 1)) > 0.5).astype(np.float32)
    loc, scale = model.encode(x).mean().numpy(), model.encode(x).stddev().numpy()
    kl_by_hand = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), axis=1)

    tf.random.set_seed(7)
    terms = model.loss_terms(x)
    np.testing.assert_allclose(terms["kl"], kl_by_hand.mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl"], rtol=1e-6)

    tf.random.set_seed(7)
    z = model.encode(x).sample().numpy()  # the same draw as inside loss_terms
    p = 1 / (1 + np.exp(-model.decoder(z).numpy()))
    rec_by_hand = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    np.testing.assert_allclose(terms["reconstruction"], rec_by_hand.mean(), rtol=1e-4)


def test_conditional_encoder_sees_the_label():
    model = zoo.create("vae", input_shape=(8, 8, 1), latent_dim=3, num_classes=4, hidden=16)
    x = np.full((2, 8, 8, 1), 0.5, np.float32)
    a, b = model.encode(x, [0, 0]).mean(), model.encode(x, [0, 3]).mean()
    np.testing.assert_allclose(a[0], b[0])
    assert not np.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="pass `labels`"):
        model.encode(x)
