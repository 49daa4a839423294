"""Which metrics apply to a model, computed on its test split, and the table that shows them.

`compute` is the body of `zoo.evaluate.evaluate_run`: every metric that applies to the model is
computed, and every one that does not is listed under `skipped` with the reason, so a reader of
`metrics.json` knows a metric is missing on purpose.

What applies:
- all models: reconstruction MSE and PSNR;
- Gaussian latents: KL per latent dimension (N(0, I) prior) and active units;
- Gaussian latents with a prior: ELBO and the importance-sampled NLL under the model's likelihood:
  Bernoulli on binarised test images (for mnist5k: the "mnist5k-bin" protocol, `*_bin` metrics),
  Gaussian on the test images as they are (`*_gaussian`, a density, not comparable with those),
  the discretized logistic mixture on their 8-bit levels (`*_logistic_mixture`); for the discrete
  likelihoods (`zoo.likelihoods.DISCRETE`) also in bits per dimension;
- dSprites runs: MIG and the beta-VAE score against the ground-truth factors;
- conditional models: conditional accuracy, judged by the cached `zoo.classifier`;
- VQ-VAEs (models with `num_codes`): perplexity and codebook usage;
- outlier detection: AUROC of -log p(x) (or of the reconstruction error when there is no
  likelihood to estimate) between test images and out-of-distribution sets.
"""

import contextlib
import time

import numpy as np

from zoo import data, evaluate, metrics
from zoo.likelihoods import DISCRETE

OOD_SOURCES = ("mnist5k", "dsprites", "digits")
SAME_DATA = {"mnist": "mnist5k"}  # datasets whose images are those of an OOD source
CONDITIONAL_SAMPLES = 100  # per class


def compute(model, x, y, dataset, settings, *, options=None, batch_size=8192, print_fn=print):
    """All metrics of `model` on the test split `(x, y)` of `dataset`, whose images were read with
    `options` (as `zoo.data.open_split` takes them); `settings` as in `evaluate_run`.

    Each step prints what it computes and, when done, its time.

    Returns:
        `(results, codes)`: a dict of scalar metrics, lists (`kl_per_dim`, ...) and `skipped`
        {metric: reason}; and the continuous latent codes of `x` (posterior means, or the
        autoencoder's z) for the pictures, None for discrete latents.
    """
    fns = evaluate.model_functions(model)
    labels = y.astype(np.int32) if model.num_classes else None
    discrete, gaussian = hasattr(model, "num_codes"), model.has_prior and not hasattr(model, "num_codes")
    bernoulli = getattr(model, "likelihood", None) == "bernoulli"
    out = {"dataset": dataset, "test_images": len(x), "skipped": {}}
    skip = out["skipped"]

    with timed(f"reconstructions ({len(x)} test images)", print_fn):
        passes = evaluate.scaled_batch(1024, x.shape[1:])
        encoded = evaluate.run_batched(fns["encode"], x, labels, batch_size=passes)
        recon = evaluate.run_batched(fns["reconstruct"], x, labels, batch_size=passes)["mean"]
    out["test_reconstruction_mse"] = float(np.mean((recon - x) ** 2))
    out["test_psnr"] = float(np.mean(metrics.psnr(recon, x)))
    codes = encoded.get("loc", encoded.get("z"))

    if gaussian:
        out.update(_latent_usage(model, encoded, skip))
    else:
        skip["kl_per_dim"] = skip["active_units"] = "no Gaussian posterior and prior"

    likelihood_ok = gaussian and settings["k"] > 0
    if likelihood_ok:
        subset = subset_indices(len(x), settings["max_images"], settings["seed"])
        with timed(f"test NLL (k={settings['k']}, {len(subset)} images, {model.likelihood} likelihood)", print_fn):
            lm = evaluate.likelihood_metrics(fns, scored_images(model, x[subset]),
                                             None if labels is None else labels[subset], k=settings["k"],
                                             max_decodes=batch_size, seed=settings["seed"])
        tag = "bin" if bernoulli else model.likelihood
        out.update({f"test_elbo_{tag}": lm["elbo"], f"test_reconstruction_{tag}": lm["reconstruction"],
                    f"test_kl_{tag}": lm["kl"], f"test_nll_{tag}_k{settings['k']}": lm["nll"],
                    "nll_images": len(subset), "nll_protocol": _protocol(model.likelihood, dataset)})
        if model.likelihood in DISCRETE:
            out[f"test_bits_per_dim_{tag}_k{settings['k']}"] = metrics.bits_per_dim(lm["nll"], x.shape[1:])
    else:
        skip["test_nll"] = skip["test_elbo"] = ("no Gaussian posterior and prior to importance-sample" if not gaussian
                                                else "k=0 importance samples")

    if y.ndim == 2 and dataset == "dsprites" and codes is not None:
        with timed("disentanglement (MIG, beta-VAE score)", print_fn):
            out["mig"], per_factor = metrics.mutual_info_gap(codes, y)
            out["mig_per_factor"] = dict(zip(data.DSPRITES_FACTORS, per_factor.round(4).tolist()))
            out["beta_vae_score"] = metrics.beta_vae_score(codes, y, seed=settings["seed"])
            out["main_factor"] = main_factors(codes, y)
    else:
        skip["mig"] = skip["beta_vae_score"] = skip["main_factor"] = "not a dsprites run with continuous latents"

    if model.num_classes and model.has_prior:
        with timed(f"conditional accuracy ({CONDITIONAL_SAMPLES} samples per class)", print_fn):
            out.update(conditional_accuracy(model, dataset, seed=settings["seed"], options=options,
                                            print_fn=print_fn))
    else:
        skip["conditional_accuracy"] = "not a conditional model"

    if discrete:
        stats = metrics.codebook_stats(encoded["codes"], model.num_codes)
        out.update({key: stats[key] for key in ("perplexity", "codebook_usage", "codes_used")})
        out["code_counts"] = stats["counts"].tolist()
    else:
        skip["perplexity"] = skip["codebook_usage"] = "not a VQ-VAE"

    if model.num_classes and not likelihood_ok:
        skip["ood_auroc"] = "a conditional model needs labels to score images without a likelihood estimate"
    else:
        out.update(outlier_detection(model, fns, x, dataset, settings, likelihood_ok, batch_size, print_fn))
    return out, codes


@contextlib.contextmanager
def timed(what, print_fn=print):
    """Prints "evaluating: WHAT... " before the block and its time in seconds after it."""
    print_fn(f"evaluating: {what}...", end=" ", flush=True)
    start = time.perf_counter()
    yield
    print_fn(f"{time.perf_counter() - start:.1f} s", flush=True)


def scored_images(model, images):
    """The images as the likelihood scores them: thresholded at 0.5 for a Bernoulli model
    (binary pixels), as they are otherwise."""
    return data.binarize(images) if model.likelihood == "bernoulli" else images


def conditional_accuracy(model, dataset, per_class=CONDITIONAL_SAMPLES, seed=0, options=None, print_fn=print):
    """How often decoding z ~ p(z) with label c gives an image the dataset's classifier reads as c.

        acc = 1/(C n) sum_c sum_i [argmax_y f(mean p(x | z_i, c)) = c],   z_i ~ p(z)
    """
    from zoo import classifier

    judge, info = classifier.load_or_train(dataset, options=options, print_fn=print_fn)
    wanted = np.repeat(np.arange(model.num_classes, dtype=np.int32), per_class)
    images = model.sample(len(wanted), labels=wanted, seed=seed).numpy()
    correct = classifier.predict(judge, images) == wanted
    return {"conditional_accuracy": float(np.mean(correct)),
            "conditional_accuracy_per_class": correct.reshape(model.num_classes, per_class).mean(1).round(3).tolist(),
            "classifier_test_accuracy": info["test_accuracy"]}


def outlier_detection(model, fns, x, dataset, settings, likelihood_ok, batch_size, print_fn=print):
    """AUROC of an outlier score between test images and each out-of-distribution set.

    The score is -log p(x), importance-sampled with `ood_k` samples (the label summed out for
    conditional models), when the model has a likelihood to estimate; otherwise the per-image
    reconstruction MSE. Images are prepared like the test images (`scored_images`). Each set has
    `ood_size` images, and no more than the test split has.
    """
    seed = settings["seed"]
    inliers = x[subset_indices(len(x), settings["ood_size"], seed)]
    if likelihood_ok:
        name = f"nll_k{settings['ood_k']}"
        score = lambda images: evaluate.marginal_nll(fns, images, model.num_classes, settings["ood_k"], batch_size, seed)
    else:
        name = "reconstruction_mse"
        score = lambda images: np.mean(
            (evaluate.run_batched(fns["reconstruct"], images, batch_size=evaluate.scaled_batch(1024, images.shape[1:]))
             ["mean"] - images) ** 2, axis=(1, 2, 3))
    with timed(f"outlier detection ({name.replace('_k', ' k=')}, {len(inliers)} test images and as many of each "
               "outlier set)", print_fn):
        sets = ood_sets(x.shape[1:], dataset, len(inliers), seed)
        scores = score(scored_images(model, inliers))
        result = {"ood_score": name}
        for source, images in sets.items():
            result[f"ood_auroc_{source}"] = metrics.auroc(scores, score(scored_images(model, images)))
    return result


def ood_sets(image_shape, dataset, n, seed=0):
    """Out-of-distribution images resized to `image_shape`: dSprites, digits, mnist5k and uniform
    noise, leaving out the run's own dataset."""
    import tensorflow as tf

    own = SAME_DATA.get(dataset, dataset)
    rng = np.random.default_rng(seed)
    sets = {}
    for source in OOD_SOURCES:
        if source == own:
            continue
        images = data.dsprites(n, seed=seed + 7)[0] if source == "dsprites" else data.load(source, "train")[0]
        images = images[subset_indices(len(images), n, seed)]
        resized = tf.image.resize(images, image_shape[:2], antialias=True).numpy()
        sets[source] = np.clip(np.repeat(resized, image_shape[2], axis=-1), 0.0, 1.0).astype(np.float32)
    sets["noise"] = rng.uniform(size=(n, *image_shape)).astype(np.float32)
    return sets


def table(results):
    """The metrics as an aligned two-column text table."""
    rows = []
    for key, value in results.items():
        if key in ("skipped", "pictures", "code_counts"):
            continue
        if isinstance(value, float):
            value = f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
        elif isinstance(value, list):
            value = " ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v:.2f}" for k, v in value.items())
        rows.append((key, str(value)))
    rows += [(f"skipped {key}", reason) for key, reason in results.get("skipped", {}).items()]
    rows += [("pictures", " ".join(results.get("pictures", [])))]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def main_factors(codes, factors):
    """`{"z<j>:<factor>": share}` for each active latent: the factor explaining most of its variance.

    A disentangled code, whose traversals each change one factor, has a share near 1 for every
    active latent, each naming a different factor.
    """
    shares = metrics.variance_explained(codes, factors)
    active = metrics.active_units(codes)[1] > metrics.ACTIVE_THRESHOLD
    return {f"z{j + 1}:{data.DSPRITES_FACTORS[shares[:, j].argmax()]}": round(float(shares[:, j].max()), 4)
            for j in np.flatnonzero(active)}


def _latent_usage(model, encoded, skip):
    """KL per latent dimension (against N(0, I) only) and the active units."""
    out = {}
    count, activity = metrics.active_units(encoded["loc"])
    out["active_units"], out["latent_activity"] = count, activity.round(4).tolist()
    if getattr(model, "prior_name", "normal") == "normal":
        out["kl_per_dim"] = metrics.kl_per_dimension(encoded["loc"], encoded["scale"]).round(4).tolist()
    else:
        skip["kl_per_dim"] = "the prior does not factorise over latent dimensions"
    return out


def _protocol(likelihood, dataset):
    if likelihood == "bernoulli":
        return "mnist5k-bin" if dataset == "mnist5k" else "test images thresholded at 0.5"
    if likelihood == "logistic_mixture":
        return "the test images' 8-bit levels, discretized logistic mixture (a probability mass: also in bits/dim)"
    return f"test images as they are, {likelihood} likelihood (a density: not comparable with Bernoulli NLLs)"


def subset_indices(total, n, seed):
    """A sorted seeded random subset of `n` indices (all of them when n >= total)."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
