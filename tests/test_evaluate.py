"""The metrics on cases with known answers, and `evaluate_run` / `python -m zoo.evaluate` on tiny runs."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import norm
from tensorflow_probability import distributions as tfd

import zoo
from conftest import write_run as finished_run
from zoo import artifacts, classifier, data, evaluate, likelihoods, metrics, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(k=10, max_images=60, ood_k=4, ood_size=12)  # evaluate_run settings that keep tests quick


# --- the metrics themselves --------------------------------------------------------------------


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, size, 10_000) for size in data.DSPRITES_SIZES], axis=1)


def test_mig_is_near_one_for_the_factors_and_near_zero_for_noise(factors):
    perfect, per_factor = metrics.mutual_info_gap(factors.astype(float), factors, num_bins=40)
    assert perfect > 0.95 and per_factor.min() > 0.95
    noise, _ = metrics.mutual_info_gap(np.random.default_rng(1).normal(size=(len(factors), 10)), factors)
    assert noise < 0.02
    # A code that mixes two factors in one latent loses the gap of both.
    mixed = factors.astype(float)
    mixed[:, 3] += 32 * mixed[:, 4]
    mixed[:, 4] = np.random.default_rng(2).normal(size=len(factors))
    assert metrics.mutual_info_gap(mixed, factors, num_bins=40)[0] < perfect - 0.2


def test_beta_vae_score_is_one_for_the_factors_and_chance_for_noise(factors):
    assert metrics.beta_vae_score(factors.astype(float), factors, num_train=1000, num_eval=500) > 0.99
    noise = metrics.beta_vae_score(np.random.default_rng(1).normal(size=(len(factors), 10)), factors,
                                   num_train=1000, num_eval=500)
    assert abs(noise - 1 / factors.shape[1]) < 0.1


def test_variance_explained_names_the_factor_a_latent_follows(factors):
    shares = metrics.variance_explained(factors.astype(float), factors)
    np.testing.assert_allclose(np.diag(shares), 1.0)  # each latent is its factor
    assert np.abs(shares - np.eye(len(shares))).max() < 0.01  # and the others do not move its mean
    x, y, scale = factors[:, 3], factors[:, 4], factors[:, 1]
    sign = np.random.default_rng(5).choice([-1.0, 1.0], len(factors))
    codes = np.c_[x + y, np.full(len(factors), 3.0), (scale + 1) * sign]
    mixed, constant, symmetric = metrics.variance_explained(codes, factors).T
    np.testing.assert_allclose(mixed[3:], 0.5, atol=0.03)
    assert not constant.any()
    assert symmetric.max() < 0.01  # size coded by |z| with a random sign: the mean does not move


def test_main_factors_lists_active_latents_with_their_factor(factors):
    noise = np.random.default_rng(5).normal(size=len(factors))
    codes = np.c_[factors[:, 3] / 31, 0.01 * noise, factors[:, 4] / 31 + 0.5 * noise]
    found = report.main_factors(codes, factors)
    assert list(found) == ["z1:x", "z3:y"] and found["z1:x"] == 1.0  # z2 does not vary enough to count
    assert 0.2 < found["z3:y"] < 0.4  # y's variance is 1/12, the noise's 1/4


def test_auroc_is_one_when_separable_and_a_half_by_chance():
    assert metrics.auroc([1.0, 2.0, 3.0], [3.5, 10.0]) == 1.0
    assert metrics.auroc([3.5, 10.0], [1.0, 2.0, 3.0]) == 0.0
    rng = np.random.default_rng(0)
    assert abs(metrics.auroc(rng.normal(size=4000), rng.normal(size=4000)) - 0.5) < 0.03
    with pytest.raises(ValueError, match="received 0 inliers and 2 outliers"):
        metrics.auroc([], [1.0, 2.0])


def test_frechet_distance_is_zero_for_a_set_against_itself_and_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(m, I) against N(0, 4I): |m|^2 + tr(I + 4I - 2 * 2I) = |m|^2 + 3
    b = 2.0 * rng.normal(size=(20000, 3)) + np.array([1.0, 2.0, 0.0])
    assert metrics.frechet_distance(b, a) == pytest.approx(5.0 + 3.0, rel=0.03)
    with pytest.raises(ValueError, match=r"two sets of at least 2 feature vectors of one size"):
        metrics.frechet_distance(a, a[:, :2])


def test_class_statistics_read_confidence_and_diversity():
    one_hot = np.eye(10)[np.arange(100) % 10]
    assert metrics.class_statistics(one_hot) == pytest.approx({"confidence": 1.0, "class_entropy": np.log(10)})
    collapsed = np.full((50, 10), 0.05)
    collapsed[:, 3] = 0.55
    assert metrics.class_statistics(collapsed) == pytest.approx({"confidence": 0.55, "class_entropy": 0.0})


def test_sample_quality_of_test_images_and_of_noise(mnist_small):
    """A "model" that samples the test images themselves scores as well as the test set; one that
    samples noise is far away and reads as one class."""
    _, (x, _) = mnist_small
    real, noise = SampleStandIn(x), SampleStandIn(np.random.default_rng(0).random(x.shape).astype(np.float32))
    good = report.sample_quality(real, x, "mnist5k", n=len(x))
    bad = report.sample_quality(noise, x, "mnist5k", n=len(x))
    assert good["sample_classifier_fd"] == pytest.approx(0.0, abs=1e-3)
    assert good["sample_confidence"] == pytest.approx(good["test_confidence"])
    assert good["sample_class_entropy"] == pytest.approx(good["test_class_entropy"]) and good["test_class_entropy"] > 2.2
    assert bad["sample_classifier_fd"] > 100 and bad["sample_class_entropy"] < 1.0
    assert good["sample_laplacian_variance"] == pytest.approx(good["test_laplacian_variance"])
    assert bad["sample_laplacian_variance"] > 5 * bad["test_laplacian_variance"]  # uniform noise is all edges


class SampleStandIn:
    """Draws fixed images in order, as `model.sample` would draw new ones."""
    num_classes = None

    def __init__(self, images):
        self.images, self.drawn = images, 0

    def sample(self, n, labels=None, seed=None):
        self.drawn += n
        return self.images[self.drawn - n:self.drawn]


def test_active_units_and_kl_per_dimension():
    rng = np.random.default_rng(0)
    loc = np.c_[rng.normal(size=(500, 2)), 0.01 * rng.normal(size=(500, 3))]
    count, activity = metrics.active_units(loc)
    assert count == 2 and activity.shape == (5,)
    scale = np.full_like(loc, 0.5)
    expected = np.mean(0.5 * (loc**2 + 0.25 - 1) - np.log(0.5), axis=0)
    np.testing.assert_allclose(metrics.kl_per_dimension(loc, scale), expected, rtol=1e-10)
    with pytest.raises(ValueError, match=r"Expected `loc` as a non-empty \[N, D\] array, received shape \(3,\)"):
        metrics.kl_per_dimension(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="Expected positive posterior scales"):
        metrics.kl_per_dimension(np.zeros((2, 2)), np.zeros((2, 2)))


def test_codebook_stats_on_a_stand_in_code_map():
    codes = np.tile(np.arange(8, dtype=np.int32), (6, 4, 2))  # [B, h, w] using 8 of 16 codes equally
    stats = metrics.codebook_stats(codes, num_codes=16)
    assert stats["perplexity"] == pytest.approx(8.0) and stats["codebook_usage"] == 0.5
    assert stats["codes_used"] == 8 and stats["counts"].sum() == codes.size
    assert metrics.codebook_stats(np.zeros((2, 3, 3), np.int32), 16)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"Code indices must lie in \[0, 15\], received \[0, 16\]"):
        metrics.codebook_stats(np.array([0, 16]), 16)
    with pytest.raises(ValueError, match="Expected integer code indices, received dtype float"):
        metrics.codebook_stats(np.array([0.5]), 16)


# --- the importance-weighted bound on a model whose likelihood is known --------------------------


def linear_model(proposal=(0.3, 0.8), pixels=16, seed=0):
    """A 1-D latent model p(z) = N(0, 1), p(x|z) = prod_i Bernoulli(sigmoid(w_i z + b_i)), and a fixed
    (deliberately poor) Gaussian proposal q(z|x), as a `log_weights` signature-style function, plus
    exact log p(x) by quadrature over z."""
    rng = np.random.default_rng(seed)
    w, b = 2.0 * rng.normal(size=pixels), rng.normal(size=pixels)
    side = int(np.sqrt(pixels))

    def log_weights(x):
        q = tfd.Normal(tf.fill([tf.shape(x)[0]], proposal[0]), proposal[1])
        z = q.sample()
        logits = z[:, None] * w.astype(np.float32) + b.astype(np.float32)
        log_px = tf.reduce_sum(tfd.Bernoulli(logits=logits).log_prob(tf.reshape(x, [-1, pixels])), -1)
        return {"log_weight": log_px + tfd.Normal(0.0, 1.0).log_prob(z) - q.log_prob(z), "log_likelihood": log_px}

    def exact_log_px(x):
        grid = np.linspace(-10, 10, 20001)
        logits = grid[:, None] * w + b
        flat = x.reshape(len(x), -1)
        log_joint = flat @ logits.T - np.logaddexp(0, logits).sum(1) - 0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
        return logsumexp(log_joint, axis=1) + np.log(grid[1] - grid[0])

    z = rng.normal(size=(40, 1))
    x = (rng.random((40, pixels)) < 1 / (1 + np.exp(-(z * w + b)))).astype(np.float32).reshape(-1, side, side, 1)
    return {"log_weights": log_weights}, x, exact_log_px(x)


def test_importance_weighted_bound_is_at_least_the_elbo_and_grows_with_k():
    fns, x, exact = linear_model()
    log_w = evaluate.log_weights(fns, x, k=200)["log_weight"]
    assert log_w.shape == (len(x), 200)
    assert np.all(log_w.mean(1) <= logsumexp(log_w, 1) - np.log(200))  # Jensen, image by image

    bounds = [evaluate.importance_log_likelihood(fns, x, k=k, seed=k).mean() for k in (1, 10, 100, 1000)]
    elbo = evaluate.likelihood_metrics(fns, x, k=1000)["elbo"]
    assert elbo < bounds[1] < bounds[2] < bounds[3] <= exact.mean() + 0.01
    assert bounds[0] == pytest.approx(elbo, abs=1.0)  # k = 1 is a one-sample ELBO
    assert bounds[3] == pytest.approx(exact.mean(), abs=0.05)


def test_likelihood_metrics_split_the_elbo_exactly_and_repeat_for_a_seed():
    fns, x, _ = linear_model()
    m = evaluate.likelihood_metrics(fns, x, k=50, max_decodes=64)  # chunked: 64 decodes per call
    assert m["reconstruction"] + m["kl"] == pytest.approx(-m["elbo"])
    assert -m["nll"] >= m["elbo"]
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=2, width=4, hidden=8)
    images = np.random.default_rng(0).integers(0, 2, (5, 28, 28, 1)).astype(np.float32)
    runs = [evaluate.likelihood_metrics(evaluate.model_functions(model), images, k=20, seed=3) for _ in range(2)]
    assert runs[0] == runs[1]  # the same seed draws the same z's
    with pytest.raises(ValueError, match="Expected k >= 1 importance samples, received k=0"):
        evaluate.log_weights(fns, x, k=0)


def test_log_weights_average_to_the_elbo_of_the_loss_and_bound_it():
    """The base `log_weights` against the training loss: the mean over many calls is the ELBO that
    `loss_terms` estimates (closed-form KL there, Monte Carlo here), and the log-mean-exp is above it."""
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=2, width=4, hidden=8)
    x = np.random.default_rng(1).integers(0, 2, (4, 28, 28, 1)).astype(np.float32)
    log_w = evaluate.log_weights(evaluate.model_functions(model), x, k=4000)["log_weight"]
    q = model.encode(x)
    z = q.sample(4000, seed=0)
    reconstruction = -np.mean(np.reshape(model.decode(tf.reshape(z, [-1, 2])).log_prob(np.tile(x, (4000, 1, 1, 1))),
                                         (4000, 4)), 0)
    elbo = -(reconstruction + q.kl_divergence(model.prior()).numpy())
    np.testing.assert_allclose(log_w.mean(1), elbo, atol=0.15)
    assert np.all(logsumexp(log_w, 1) - np.log(4000) >= log_w.mean(1))


def test_log_weights_bound_the_exact_likelihood_of_a_one_dimensional_vae():
    """With one latent dimension log p(x) is a quadrature over z: the log-mean-exp of the model's
    own `log_weights` stays below it (it is a bound) and comes within a tenth of a nat of it."""
    keras.utils.set_random_seed(0)
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=1, width=4, hidden=8)
    x = np.random.default_rng(2).integers(0, 2, (3, 28, 28, 1)).astype(np.float32)
    grid = np.linspace(-8, 8, 4001, dtype=np.float32)[:, None]
    log_px_z = np.stack([model.decode(grid).log_prob(np.broadcast_to(image, (len(grid), 28, 28, 1))) for image in x])
    exact = logsumexp(log_px_z + norm.logpdf(grid[:, 0]), axis=1) + np.log(grid[1, 0] - grid[0, 0])
    fns = evaluate.model_functions(model)
    elbo = evaluate.log_weights(fns, x, k=2000)["log_weight"].mean(1)
    # The bound holds in expectation (one estimate may land above it by its Monte Carlo noise): average 8.
    bound = np.mean([evaluate.importance_log_likelihood(fns, x, k=2000, seed=seed) for seed in range(8)], 0)
    assert np.all(elbo < bound) and bound.mean() <= exact.mean() + 0.03  # float32 sums of 784 pixels: ~0.01
    np.testing.assert_allclose(bound, exact, atol=0.1)


# --- evaluate_run on tiny runs -----------------------------------------------------------------


def write_run(out, variant, dataset, train=None, latent_dim=2, **options):
    """A tiny finished run written through zoo.artifacts, as a recipe would (one epoch at most)."""
    num_classes = 10 if zoo.get_class(variant).conditional else None
    model = zoo.create(variant, input_shape=(28, 28, 1), latent_dim=latent_dim, width=8, hidden=32,
                       **({"num_classes": num_classes} if num_classes else {}), **options)
    if train is not None:
        x, y = train
        model.compile(optimizer="adam")
        model.fit(data.pipeline(data.binarize(x), y if num_classes else None, batch_size=32), epochs=1, verbose=0,
                  shuffle=False)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "history.csv"), "w") as f:
        f.write("epoch,loss,reconstruction,val_loss,val_reconstruction\n0,300,290,280,275\n1,250,240,245,238\n")
    return finished_run(out, model, variant, metrics={"test_loss": 1.0}, dataset={"name": dataset},
                        training={"seed": 0})


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, mnist_npz, mnist_small):
    out = write_run(str(tmp_path_factory.mktemp("vae")), "vae", mnist_npz, train=mnist_small[0])
    return out, evaluate.evaluate_run(out, print_fn=lambda *a, **k: None, **FAST)


def test_evaluate_run_writes_metrics_pictures_and_manifest(vae_run):
    out, results = vae_run
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f) == results
    assert {"test_elbo_bin", "test_nll_bin_k10", "test_reconstruction_mse", "active_units", "kl_per_dim",
            "ood_auroc_mnist5k", "ood_auroc_dsprites", "ood_auroc_digits", "ood_auroc_noise",
            "ood_auroc_complexity_dsprites", "ood_auroc_complexity_noise"} <= set(results)
    assert "not a built-in dataset" in results["skipped"]["sample_classifier_fd"]  # no classifier trained for it
    assert len(results["kl_per_dim"]) == 2 and results["nll_images"] == 60
    assert results["test_nll_bin_k10"] <= -results["test_elbo_bin"]
    assert results["ood_auroc_noise"] > 0.9  # random pixels are far less likely than digits
    assert 0.0 <= results["ood_auroc_complexity_dsprites"] <= 1.0  # one epoch: too little trained to separate more
    assert set(results["skipped"]) >= {"mig", "conditional_accuracy", "perplexity"}
    assert set(results["pictures"]) == {f"pictures/{p}.png" for p in (
        "reconstructions", "samples", "traversals", "interpolation", "latent_map", "manifold", "training_curves")}

    manifest = artifacts.read_manifest(out)
    assert manifest["metrics"]["test_loss"] == 1.0  # merged, not replaced
    assert manifest["metrics"]["test_nll_bin_k10"] == results["test_nll_bin_k10"]
    assert manifest["evaluation"]["pictures"] == results["pictures"]
    for rel in ["metrics.json", *results["pictures"]]:
        artifacts.verify(out, rel)


def test_grey_images_are_scored_by_a_gaussian_model_as_they_are(tmp_path, mnist_npz, mnist_small):
    out = write_run(str(tmp_path), "vae", mnist_npz, train=mnist_small[0], likelihood="gaussian")
    results = evaluate.evaluate_run(out, print_fn=lambda *a, **k: None, **FAST)
    assert not any(key.endswith("_bin") or "_bin_" in key for key in results)  # nothing thresholded
    assert results["test_nll_gaussian_k10"] <= -results["test_elbo_gaussian"]
    assert results["nll_protocol"].startswith("test images as they are, gaussian likelihood")
    assert results["ood_score"] == "nll_k4" and "test_nll" not in results["skipped"]

    # log p(x|z), which `log_weights` adds up, is the model's own Gaussian density of the grey pixels.
    model = zoo.load_model(out)
    x = mnist_small[1][0][:3]
    z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    mean, scale = model.decode(z).mean().numpy(), np.exp(model.log_scale.numpy()) + likelihoods.MIN_SCALE
    expected = norm.logpdf(x, mean, scale).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(model.decode(z).log_prob(x), expected, rtol=1e-4)


def test_outlier_sets_are_no_larger_than_the_test_split(mnist_small, monkeypatch):
    _, (x, y) = mnist_small
    said, sizes, original = [], [], report.ood_sets
    monkeypatch.setattr(report, "ood_sets", lambda *args: sizes.append(args[2]) or original(*args))
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=2, width=4, hidden=8)
    settings = {"k": 2, "max_images": 8, "ood_k": 2, "ood_size": 500, "seed": 0}
    results, _ = report.compute(model, x[:8], y[:8], "mnist5k", settings,
                                print_fn=lambda *parts, **kw: said.append(" ".join(parts)))
    assert sizes == [8]  # 8 test images: 8 of each outlier set, not 500
    assert "evaluating: outlier detection (nll k=2, 8 test images and as many of each outlier set)..." in said
    assert 0.0 <= results["ood_auroc_noise"] <= 1.0


def independent_nll(saved_model, x, labels=None, k=500, seed=12345, chunk=16):
    """-log p(x) per image from a SavedModel's signatures, with numpy maths only (none of zoo.evaluate):
    log p(x) ~= logmeanexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)], z_i ~ q(z|x)."""
    signatures = tf.saved_model.load(saved_model).signatures
    rng, out = np.random.default_rng(seed), []
    for i in range(0, len(x), chunk):
        xb, lb = x[i:i + chunk], None if labels is None else labels[i:i + chunk].astype(np.int32)
        given = lambda ids: {} if lb is None else {"labels": tf.constant(ids)}
        posterior = signatures["encode"](x=tf.constant(xb), **given(lb))
        mu, sd = posterior["loc"].numpy().astype(np.float64), posterior["scale"].numpy().astype(np.float64)
        eps = rng.standard_normal((k, *mu.shape))
        z = (mu + sd * eps).reshape(-1, mu.shape[1]).astype(np.float32)
        log_q = np.sum(-0.5 * eps**2 - np.log(sd) - 0.5 * np.log(2 * np.pi), axis=-1)
        logits = signatures["decode"](z=tf.constant(z), **given(None if lb is None else np.tile(lb, k)))["logits"]
        logits = logits.numpy().astype(np.float64).reshape(k, len(xb), -1)
        flat = xb.reshape(len(xb), -1)
        log_px = np.sum(flat * logits - np.logaddexp(0.0, logits), axis=-1)
        log_pz = signatures["prior_log_prob"](z=tf.constant(z))["log_prob"].numpy().reshape(k, len(xb))
        out.append(np.log(k) - logsumexp(log_px + log_pz - log_q, axis=0))
    return np.concatenate(out)


def check_nll_against_independent_estimate(run_dir, tolerance=1.0):
    """The NLL in a run's metrics.json against `independent_nll` on the same test images and k."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        results = json.load(f)
    manifest = artifacts.read_manifest(run_dir)
    settings = manifest["evaluation"]["settings"]
    x, y = data.load(results["dataset"], "test", seed=manifest.get("training", {}).get("seed", 0))
    subset = report.subset_indices(len(x), settings["max_images"], settings["seed"])
    conditional = manifest["config"].get("num_classes")
    mine = independent_nll(os.path.join(run_dir, "saved_model"), data.binarize(x[subset]),
                           y[subset] if conditional else None, k=settings["k"])
    reported = results[f"test_nll_bin_k{settings['k']}"]
    assert abs(float(np.mean(mine)) - reported) < tolerance, (np.mean(mine), reported)
    return float(np.mean(mine)), reported


def test_nll_agrees_with_an_independent_estimate_from_the_saved_model(vae_run):
    check_nll_against_independent_estimate(vae_run[0])


@pytest.mark.skipif(not os.environ.get("VAE_ZOO_CHECK_RUN"), reason="set VAE_ZOO_CHECK_RUN=RUN_DIR to check a real run")
def test_a_real_run_nll_agrees_with_an_independent_estimate():
    independent, reported = check_nll_against_independent_estimate(os.environ["VAE_ZOO_CHECK_RUN"])
    print(f"\nindependent NLL {independent:.3f}  metrics.json NLL {reported:.3f}  "
          f"difference {independent - reported:+.3f} nats")


def test_autoencoder_gets_no_likelihood_and_no_samples(tmp_path, mnist_npz):
    out = write_run(str(tmp_path), "ae", mnist_npz, latent_dim=3)
    results = evaluate.evaluate_run(out, print_fn=lambda *a, **k: None, **FAST)
    assert not any("nll" in key or "elbo" in key for key in results)
    assert "no Gaussian posterior" in results["skipped"]["test_nll"]
    assert results["ood_score"] == "reconstruction_mse"
    assert "pictures/samples.png" not in results["pictures"] and "pictures/traversals.png" in results["pictures"]


def test_conditional_run_is_judged_by_the_cached_classifier(tmp_path, monkeypatch, mnist_npz, mnist_small):
    monkeypatch.setenv(classifier.CACHE_ENV, str(tmp_path / "cache"))
    _, info = classifier.load_or_train(mnist_npz, epochs=1, print_fn=lambda *a: None)
    assert info["path"].startswith(str(tmp_path / "cache")) and os.path.exists(info["path"])
    assert not [n for n in os.listdir(tmp_path / "cache") if n.startswith(".tmp")]  # written atomically

    out = write_run(str(tmp_path / "run"), "cvae", mnist_npz, train=mnist_small[0], latent_dim=2)
    said = []
    results = evaluate.evaluate_run(out, print_fn=lambda *parts, **kw: said.append(" ".join(map(str, parts))),
                                    **FAST)
    assert not any("training the" in line for line in said)  # the cached classifier was used
    # Each step says what it computes, then how long it took.
    steps = ["reconstructions (100 test images)", "test NLL (k=10, 60 images, bernoulli likelihood)",
             "conditional accuracy (100 samples per class)", "sample quality (1000 samples against 100 test images)",
             "outlier detection (nll k=4, 12 test images and as many of each outlier set)", "pictures"]
    assert [line for line in said if line.startswith("evaluating: ")] == [f"evaluating: {s}..." for s in steps]
    assert sum(bool(re.fullmatch(r"\d+\.\d s", line)) for line in said) == len(steps)
    assert 0.0 <= results["conditional_accuracy"] <= 1.0
    assert len(results["conditional_accuracy_per_class"]) == 10
    assert results["classifier_test_accuracy"] == info["test_accuracy"]
    assert "pictures/class_grid.png" in results["pictures"] and "test_nll_bin_k10" in results
    assert results["ood_score"] == "nll_k4"  # the label summed out


def test_classifier_refuses_a_dataset_without_classes(tmp_path, monkeypatch):
    monkeypatch.setenv(classifier.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(data, "load", lambda *a, **k: (np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 5), np.int64)))
    with pytest.raises(ValueError, match="Dataset 'dsprites' has factor arrays, not class labels"):
        classifier.load_or_train("dsprites")


def test_vq_metrics_activate_on_num_codes(mnist_small):
    _, (x, y) = mnist_small
    settings = {"k": 10, "max_images": 20, "ood_k": 4, "ood_size": 10, "seed": 0}
    vq = zoo.create("vqvae", input_shape=(28, 28, 1), latent_dim=2, num_codes=16, width=8, hidden=32,
                    prior="pixelcnn", prior_filters=8, prior_layers=2)
    results, codes = report.compute(vq, x, y, "mnist5k", settings, print_fn=lambda *a, **k: None)
    assert codes is None  # no continuous latent to draw
    assert 1.0 <= results["perplexity"] <= 16 and 0 < results["codebook_usage"] <= 1
    # -log p(codes) under each prior, and the samples of each, so a PixelCNN shows what it adds.
    test_codes = vq.encode(x).mean()
    assert results["test_code_nll"] == pytest.approx(-np.mean(vq.prior().log_prob(test_codes)), rel=1e-5)
    assert results["test_code_nll_frequencies"] == pytest.approx(
        -np.mean(vq.prior("frequencies").log_prob(test_codes)), rel=1e-5)
    assert {"sample_classifier_fd", "sample_classifier_fd_frequencies", "sample_confidence_frequencies"} <= set(results)
    assert len(results["code_counts"]) == 16 and results["ood_score"] == "reconstruction_mse"
    assert set(results["skipped"]) >= {"test_nll", "kl_per_dim", "mig", "factor_vae_score", "dci_disentanglement"}


def test_dsprites_runs_get_the_disentanglement_metrics():
    x, f = data.load("dsprites", "test", size=40)
    settings = {"k": 2, "max_images": 8, "ood_k": 2, "ood_size": 8, "seed": 0}
    model = zoo.create("beta_vae", input_shape=(64, 64, 1), latent_dim=3, width=4, hidden=8)
    results, codes = report.compute(model, x, f, "dsprites", settings, print_fn=lambda *a, **k: None)
    assert codes.shape == (40, 3) and 0.0 <= results["mig"] <= 1.0 and set(results["mig_per_factor"]) == set(
        data.DSPRITES_FACTORS)
    assert 0.0 <= results["beta_vae_score"] <= 1.0
    dci_keys = ("dci_disentanglement", "dci_completeness", "dci_informativeness")
    assert all(0.0 <= results[key] <= 1.0 for key in ("factor_vae_score", *dci_keys))
    assert all(key.split(":")[1] in data.DSPRITES_FACTORS and 0.0 <= share <= 1.0
               for key, share in results["main_factor"].items())
    assert not {"mig", "main_factor", "factor_vae_score", "dci_disentanglement"} & set(results["skipped"])


def test_ood_sets_match_the_image_shape():
    sets = report.ood_sets((32, 32, 3), "mnist5k", n=5)
    assert set(sets) == {"dsprites", "digits", "noise"}
    for images in sets.values():
        assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(report.ood_sets((28, 28, 1), "dsprites", n=2)) == {"mnist5k", "digits", "noise"}


def test_command_line_rejects_a_bad_run_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "zoo.evaluate", str(tmp_path / "nope")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: Run directory not found: {tmp_path / 'nope'}."
    assert "Traceback" not in result.stderr
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(tmp_path), "--k", "-1"])
    assert exit_.value.code == 2
    with pytest.raises(ValueError, match="Expected `ood_size` >= 1, received ood_size=0"):
        evaluate.evaluate_run(str(tmp_path), ood_size=0)
    artifacts.write_manifest(str(tmp_path), variant="vae")
    with pytest.raises(artifacts.RunError, match=r"the manifest names no dataset \(expected dataset.name\)"):
        evaluate.evaluate_run(str(tmp_path))


def test_command_line_help_names_the_flags():
    text = evaluate.build_parser().format_help()
    for flag in ("RUN_DIR", "--k", "--batch-size", "--max-images", "--ood-k", "--no-pictures"):
        assert flag in text


def test_batches_shrink_for_large_images_so_a_pass_holds_as_many_values():
    assert evaluate.scaled_batch(8192, (28, 28, 1)) == 8192 and evaluate.scaled_batch(8192, (8, 8, 1)) == 8192
    assert evaluate.scaled_batch(8192, (64, 64, 3)) == 8192 * 784 // (64 * 64 * 3) == 522
    assert evaluate.scaled_batch(1, (512, 512, 3)) == 1


def test_the_printed_table_shortens_long_lists():
    """A hierarchical latent has 1,000+ dimensions: the table shows the first values, metrics.json all."""
    table = report.table({"kl_per_dim": [0.5] * 1192, "active_units": 3, "skipped": {}, "pictures": []})
    row = next(line for line in table.splitlines() if line.startswith("kl_per_dim"))
    assert row.count("0.50") == report.TABLE_VALUES and row.endswith("... (1192 values, all in metrics.json)")
    assert "active_units" in table
