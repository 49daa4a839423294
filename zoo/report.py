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
- dSprites runs: MIG, the beta-VAE and FactorVAE scores and DCI against the ground-truth factors;
- conditional models: conditional accuracy, judged by the cached `zoo.classifier`;
- supervised models (`dbvae`): their own classifier's accuracy and recall of class 1, and on
  openmoji-persons-biased the recall of the persons of each skin tone (`classification_metrics`);
- models that sample, on the built-in datasets with classes (and conditional models, which train
  the classifier anyway): sample quality (`sample_quality`), judged by the same classifier;
- conditional models on openmoji: restyle errors on the pairs "same emoji, other tone" (`restyle_metrics`);
- VQ-VAEs (models with `num_codes`): perplexity, codebook usage and the test codes' NLL under the
  prior (and, for a PixelCNN prior, the same and the sample quality under the code frequencies);
- outlier detection: AUROC of -log p(x) (or of the reconstruction error when there is no
  likelihood to estimate) between test images and out-of-distribution sets.
"""

import contextlib
import functools
import time

import numpy as np

from zoo import data, evaluate, metrics
from zoo.likelihoods import DISCRETE

OOD_SOURCES = ("mnist5k", "dsprites", "digits")
SAME_DATA = {"mnist": "mnist5k"}  # datasets whose images are those of an OOD source
CONDITIONAL_SAMPLES = 100  # per class
SAMPLE_IMAGES = 1000  # drawn for the sample-quality metrics
TABLE_VALUES = 32  # of a list metric (KL per dimension...) the printed table shows: a hierarchical latent has 1,000+
# A pixel "changes" between two tones of an emoji when |x_i - x_j| summed over RGB exceeds this: skin
# and hair, 13% of the test pairs' pixels, leaving out the faint anti-aliasing at the outlines (15% at 0).
RESTYLE_THRESHOLD = 0.1
RESTYLE_ROWS = 6  # inputs restyle.png shows for openmoji


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
        with timed("disentanglement (MIG, beta-VAE and FactorVAE scores, DCI)", print_fn):
            out["mig"], per_factor = metrics.mutual_info_gap(codes, y)
            out["mig_per_factor"] = dict(zip(data.DSPRITES_FACTORS, per_factor.round(4).tolist()))
            out["beta_vae_score"] = metrics.beta_vae_score(codes, y, seed=settings["seed"])
            out["factor_vae_score"] = metrics.factor_vae_score(codes, y, seed=settings["seed"])
            dci = metrics.dci(codes, y, seed=settings["seed"])
            out.update({f"dci_{key}": dci[key] for key in ("disentanglement", "completeness", "informativeness")})
            out["main_factor"] = main_factors(codes, y)
    else:
        skip.update(dict.fromkeys(("mig", "beta_vae_score", "factor_vae_score", "dci_disentanglement", "main_factor"),
                                  "not a dsprites run with continuous latents"))

    if model.num_classes and model.has_prior:
        with timed(f"conditional accuracy ({CONDITIONAL_SAMPLES} samples per class)", print_fn):
            out.update(conditional_accuracy(model, dataset, seed=settings["seed"], options=options,
                                            print_fn=print_fn))
    else:
        skip["conditional_accuracy"] = "not a conditional model"

    if model.supervised:
        with timed(f"classification ({len(x)} test images)", print_fn):
            out.update(classification_metrics(fns, x, y, dataset, batch_size=evaluate.scaled_batch(1024, x.shape[1:])))
    else:
        skip["classifier_accuracy"] = "not a model with a classifier (dbvae)"

    reason = sample_quality_skipped(model, y, dataset, x.shape[1:])
    if reason:
        skip["sample_classifier_fd"] = reason
    else:
        with timed(f"sample quality ({SAMPLE_IMAGES} samples against {len(x)} test images)", print_fn):
            draws = {"": model.sample}
            if discrete and model.prior_name != "frequencies":  # beside the baseline every VQ-VAE tracks
                draws["_frequencies"] = functools.partial(model.sample, prior="frequencies")
            out.update(sample_quality(model, x, dataset, options=options, seed=settings["seed"], draws=draws,
                                      print_fn=print_fn))

    if dataset == "openmoji" and hasattr(model, "restyle"):
        pairs, reason = openmoji_pairs(x, y)
        if reason:
            skip["restyle_mae"] = reason
        else:
            with timed(f"restyles ({len(pairs)} pairs: same emoji, other tone)", print_fn):
                out.update(restyle_metrics(model, x, y, pairs, data.OPENMOJI_CLASSES,
                                           batch_size=evaluate.scaled_batch(1024, x.shape[1:])))
            out["restyle_examples"] = restyle_examples(data.openmoji_groups("test"))
    else:
        skip["restyle_mae"] = "not a conditional model on openmoji (the dataset with known restyle pairs)"

    if discrete:
        stats = metrics.codebook_stats(encoded["codes"], model.num_codes)
        out.update({key: stats[key] for key in ("perplexity", "codebook_usage", "codes_used")})
        for kind in dict.fromkeys([model.prior_name, "frequencies"]):  # -log p(codes) of the test images
            nll = -np.mean(model.prior(kind).log_prob(encoded["codes"]))
            out["test_code_nll" + ("" if kind == model.prior_name else f"_{kind}")] = float(nll)
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


def sample_quality_skipped(model, y, dataset, image_shape):
    """Why `sample_quality` does not apply, or None. It needs samples, class ids with at least two
    classes and images of at least 4x4 for the classifier; and, so that scoring a run of a user's
    own labelled folder does not train a classifier for minutes unasked, a built-in dataset or a
    conditional model (whose conditional accuracy trains that classifier anyway)."""
    if not (model.has_prior or hasattr(model, "num_codes")):
        return "no prior to sample from"
    if np.ndim(y) != 1 or len(np.unique(y)) < 2 or min(image_shape[:2]) < 4:
        return "no class labels (or images under 4x4) to train the judging classifier on"
    if not model.num_classes and dataset not in data.names():
        return "not a built-in dataset: its classifier would be trained for this metric alone"
    return None


def sample_quality(model, x, dataset, n=SAMPLE_IMAGES, seed=0, options=None, draws=None, print_fn=print):
    """How `n` samples look to the dataset's classifier (`zoo.classifier`), against the test images `x`:

    - `sample_classifier_fd`: the Fréchet distance between the classifier's last hidden features
      of the samples and of the test images (`metrics.frechet_distance`). It is the FID's formula
      in the feature space of the zoo's own small classifier, not Inception's: compare it between
      models on one dataset, never with published FIDs;
    - `sample_confidence`: the classifier's mean top probability on the samples (digits it can read);
    - `sample_class_entropy`: the entropy of its predicted-class histogram (diversity; log C at best);
    - `sample_laplacian_variance`: sharpness (`metrics.laplacian_variance`); blurry samples fall
      short of the test images';

    and the last three on the test images, for reference. Conditional models draw every class in
    turn. `draws` maps a suffix of the three sample metrics to a function `draw(n, labels=, seed=)`
    that draws the images (default: `{"": model.sample}`); the test images are read once for all.
    """
    from zoo import classifier

    judge, _ = classifier.load_or_train(dataset, options=options, print_fn=print_fn)
    test_features, test_probabilities = classifier.read(judge, x)
    real = metrics.class_statistics(test_probabilities)
    out = {"test_confidence": real["confidence"], "test_class_entropy": real["class_entropy"],
           "test_laplacian_variance": metrics.laplacian_variance(x), "sample_images": n}
    labels = np.arange(n, dtype=np.int32) % model.num_classes if model.num_classes else None
    step = evaluate.scaled_batch(500, x.shape[1:])
    for suffix, draw in (draws or {"": model.sample}).items():
        parts = []
        for first in range(0, n, step):  # in batches: bounded memory for large images
            count = min(step, n - first)
            ids = None if labels is None else labels[first:first + count]
            parts.append(np.asarray(draw(count, labels=ids, seed=seed + first)))
        samples = np.concatenate(parts)
        features, probabilities = classifier.read(judge, samples)
        drawn = metrics.class_statistics(probabilities)
        out.update({f"sample_classifier_fd{suffix}": metrics.frechet_distance(features, test_features),
                    f"sample_confidence{suffix}": drawn["confidence"],
                    f"sample_class_entropy{suffix}": drawn["class_entropy"],
                    f"sample_laplacian_variance{suffix}": metrics.laplacian_variance(samples)})
    return out


def classification_metrics(fns, x, y, dataset, batch_size=1024):
    """A supervised model's `classifier_accuracy` and `classifier_recall` (of class 1) on the test
    images `(x, y)`; on openmoji-persons-biased also `classifier_recall_by_tone`, the recall of the
    persons of each skin tone (its test split is openmoji's, whose labels are the tones)."""
    from zoo.data import openmoji

    said = evaluate.run_batched(fns["classify"], x, batch_size=batch_size)["probability"] > 0.5
    positive = y == 1
    out = {"classifier_accuracy": float(np.mean(said == positive)), "classifier_recall": float(np.mean(said[positive]))}
    if dataset == "openmoji-persons-biased":
        tones = openmoji.persons_tones("test")
        if len(tones) == len(y):
            out["classifier_recall_by_tone"] = {name: float(np.mean(said[positive & (tones == tone)]))
                                                for tone, name in enumerate(openmoji.CLASSES)}
    return out


def openmoji_pairs(x, y):
    """`(pairs, None)`: openmoji's test pairs (`zoo.data.openmoji_pairs`), which index the test
    split in catalog order, when `(x, y)` is that split at 64x64x3; else `(None, reason)`."""
    from zoo.data import openmoji

    table = openmoji.catalog()
    tones = table.tones[table.split("test")]
    if len(y) != len(tones) or not np.array_equal(y, tones):
        return None, (f"the {len(y)} test images read are not openmoji's {len(tones)} test images in order, "
                      "which the restyle pairs index")
    size = openmoji.IMAGE_SIZE
    if x.shape[1:] != (size, size, 3):
        return None, f"images read at {x.shape[1:]}, not at the {size}x{size}x3 the restyle errors are given for"
    return data.openmoji_pairs("test"), None


def restyle_errors(restyled, copies, targets, threshold=RESTYLE_THRESHOLD):
    """Per pair, the mean absolute error to the target of the restyled image and of the unchanged
    input (the copy), over the whole image and over the pixels that change between input and
    target (|copy - target| summed over channels > `threshold`): a restyle that only redraws the
    input scores the copy's error, and the changed pixels show whether the colour moved.

    Returns:
        A dict of `[P]` arrays: `restyle_image`, `copy_image`, `restyle_changed`, `copy_changed`
        (NaN for a pair without changed pixels) and `changed_fraction`.
    """
    restyled, copies, targets = (np.asarray(a, np.float64) for a in (restyled, copies, targets))
    changed = np.abs(copies - targets).sum(-1) > threshold
    count = changed.sum((1, 2))
    out = {"changed_fraction": count / changed[0].size}
    for name, images in (("restyle", restyled), ("copy", copies)):
        error = np.abs(images - targets).mean(-1)
        out[f"{name}_image"] = error.mean((1, 2))
        with np.errstate(invalid="ignore"):
            out[f"{name}_changed"] = (error * changed).sum((1, 2)) / count
    return out


def restyle_metrics(model, x, y, pairs, class_names, batch_size=64, threshold=RESTYLE_THRESHOLD):
    """How well `model.restyle` turns x[i] into x[j] for each pair `(i, j)` (same emoji, tones
    y[i] != y[j]): `restyle_errors` averaged over the pairs, overall and per target tone."""
    parts = []
    for start in range(0, len(pairs), batch_size):
        i, j = pairs[start:start + batch_size].T
        restyled = model.restyle(x[i], y[i].astype(np.int32), y[j].astype(np.int32)).numpy()
        parts.append(restyle_errors(restyled, x[i], x[j], threshold))
    errors = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    means = lambda at: {f"{who}_mae_{where}": round(float(np.nanmean(errors[f"{who}_{where}"][at])), 4)
                        for where in ("changed", "image") for who in ("restyle", "copy")}
    tones = y[pairs[:, 1]]
    return {**means(slice(None)), "restyle_pairs": len(pairs), "restyle_threshold": threshold,
            "restyle_changed_fraction": round(float(errors["changed_fraction"].mean()), 4),
            "restyle_per_tone": {class_names[t]: {"pairs": int(np.sum(tones == t)), **means(tones == t)}
                                 for t in np.unique(tones)}}


def restyle_examples(groups, rows=RESTYLE_ROWS):
    """Test indices of `rows` different toned emoji for restyle.png, the r-th in tone r mod 6
    (`groups` as `zoo.data.openmoji_groups` gives them)."""
    picked = groups[np.linspace(0, len(groups) - 1, min(rows, len(groups))).astype(int)]
    return [int(row[r % groups.shape[1]]) if row[r % groups.shape[1]] >= 0 else int(row[row >= 0][0])
            for r, row in enumerate(picked)]


def outlier_detection(model, fns, x, dataset, settings, likelihood_ok, batch_size, print_fn=print):
    """AUROC of each outlier score between test images and each out-of-distribution set.

    With a likelihood to estimate, the scores of `zoo.evaluate.outlier_scores`: raw -log p(x)
    (`ood_auroc_<set>`), importance-sampled with `ood_k` samples (per class, the label summed out,
    for conditional models), and the complexity-corrected score (`ood_auroc_complexity_<set>`),
    which `export.runtime` uses by default. Otherwise the per-image reconstruction MSE. Images are
    prepared like the test images (`scored_images`). Each set has `ood_size` images, and no more
    than the test split has.
    """
    seed = settings["seed"]
    inliers = x[subset_indices(len(x), settings["ood_size"], seed)]
    if likelihood_ok:
        name = f"nll_k{settings['ood_k']}"
        score = lambda images: evaluate.outlier_scores(fns, images, model.num_classes, settings["ood_k"], batch_size,
                                                       seed)
    else:
        name = "reconstruction_mse"
        score = lambda images: {"": np.mean(
            (evaluate.run_batched(fns["reconstruct"], images, batch_size=evaluate.scaled_batch(1024, images.shape[1:]))
             ["mean"] - images) ** 2, axis=(1, 2, 3))}
    with timed(f"outlier detection ({name.replace('_k', ' k=')}, {len(inliers)} test images and as many of each "
               "outlier set)", print_fn):
        sets = ood_sets(x.shape[1:], dataset, len(inliers), seed)
        scores = score(scored_images(model, inliers))
        result = {"ood_score": name}
        for source, images in sets.items():
            for method, outliers in score(scored_images(model, images)).items():
                key = "_".join(part for part in ("ood_auroc", "" if method == "nll" else method, source) if part)
                result[key] = metrics.auroc(scores[method], outliers)
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
            shown = " ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value[:TABLE_VALUES])
            value = shown + (f" ... ({len(value)} values, all in metrics.json)" if len(value) > TABLE_VALUES else "")
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows += [(f"{key} {name}", " ".join(f"{k}={v:g}" for k, v in part.items())) for name, part in value.items()]
            continue
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
    if likelihood in ("logistic", "logistic_mixture"):
        return f"the test images' 8-bit levels, discretized {likelihood.replace('_', ' ')} (a mass: also in bits/dim)"
    return f"test images as they are, {likelihood} likelihood (a density: not comparable with Bernoulli NLLs)"


def subset_indices(total, n, seed):
    """A sorted seeded random subset of `n` indices (all of them when n >= total)."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
