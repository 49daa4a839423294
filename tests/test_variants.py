"""The objectives of beta-VAE and IWAE, and the learned prior, against hand computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo


def tiny(name, **kwargs):
    return zoo.create(name, input_shape=(8, 8, 1), latent_dim=3, hidden=16, **kwargs)


def binary(n=6, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)) > 0.5).astype(np.float32)


def at_step(model, step):
    model.compile(optimizer=keras.optimizers.Adam())
    model.optimizer.iterations.assign(step)
    return model


def test_beta_weights_the_kl_after_warmup():
    rec, kl = tf.constant([10.0, 20.0]), tf.constant([1.0, 3.0])
    model = at_step(tiny("beta_vae", beta=4.0, warmup_steps=100), 50)
    np.testing.assert_allclose(model.objective(rec, kl), 15.0 + 0.5 * 4.0 * 2.0)
    model.optimizer.iterations.assign(1000)
    np.testing.assert_allclose(model.objective(rec, kl), 15.0 + 4.0 * 2.0)


def test_capacity_objective_targets_a_rising_kl():
    model = at_step(tiny("beta_vae", capacity=25.0, capacity_steps=100, gamma=10.0), 40)
    rec, kl = tf.constant([10.0, 20.0]), tf.constant([4.0, 8.0])  # mean KL 6, target C = 10
    np.testing.assert_allclose(model.objective(rec, kl), 15.0 + 10.0 * abs(6.0 - 10.0))


def test_beta_vae_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Expected beta >= 0, received beta=-1"):
        tiny("beta_vae", beta=-1)
    with pytest.raises(ValueError, match="Expected a positive integer for `num_samples`"):
        tiny("iwae", num_samples=0)


def test_iwae_with_one_sample_is_the_elbo():
    model = tiny("iwae", num_samples=1)
    vae = tiny("vae")
    vae.set_weights(model.get_weights())
    x = binary()
    tf.random.set_seed(3)
    iwae_terms = model.loss_terms(x)
    tf.random.set_seed(3)
    vae_terms = vae.loss_terms(x)  # closed-form KL: equal to IWAE's in expectation, not per draw
    np.testing.assert_allclose(iwae_terms["reconstruction"], vae_terms["reconstruction"], rtol=1e-5)
    np.testing.assert_allclose(iwae_terms["loss"], iwae_terms["reconstruction"] + iwae_terms["kl"], rtol=1e-5)


def test_iwae_bound_is_tighter_than_the_elbo():
    model = tiny("iwae", num_samples=50)
    x = binary(n=32)
    tf.random.set_seed(0)
    terms = model.loss_terms(x)
    # -L_k <= -ELBO (averaged over the same draws), up to Monte Carlo noise.
    assert float(terms["loss"]) <= float(terms["reconstruction"] + terms["kl"]) + 1e-3


def test_learned_prior_is_used_by_the_elbo_and_the_signature():
    model = tiny("vae", prior="mog", prior_components=4)
    z = np.zeros((2, 3), np.float32)
    np.testing.assert_allclose(model.serve_prior_log_prob(z)["log_prob"], model.learned_prior.distribution().log_prob(z))
    names = {w.path for w in model.trainable_weights}
    assert any("learned_prior" in n for n in names)
    model.compile(optimizer="adam")
    before = model.learned_prior.locs.numpy().copy()
    model.fit(binary(n=16), epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(before, model.learned_prior.locs.numpy())  # the prior is trained
