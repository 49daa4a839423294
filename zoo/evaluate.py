"""Metrics of trained models, and `python -m zoo.evaluate RUN_DIR`.

The likelihood code works on *signature-style functions*, above all
`log_weights(x[, labels]) -> {"log_weight", "log_likelihood"}`: one importance weight
log p(x, z) - log q(z|x) per image and call. Every NLL here is the log-mean-exp of k calls, so
the same estimator scores every variant (one level or several), a live model (`model_functions`)
and a SavedModel's signatures (`saved_model_functions`).

TensorFlow is imported inside the functions, so `python -m zoo.evaluate --help` answers at once.
`evaluate_run` scores a finished run directory: it writes `metrics.json` and the pictures of
`zoo.viz` into the run and records them in its manifest. The maths of the other metrics lives in
`zoo.metrics`.
"""

import argparse
import os
import sys

import numpy as np

import zoo
from zoo import data
from zoo.files import atomic_folder

METRICS_FILE = "metrics.json"
PICTURES_DIR = "pictures"
# Default settings, also those of the recipes' evaluation at the end of training: on the README's
# main command (cvae, mnist5k) they take about 30 s after 2 min of training. The README's
# likelihood figures use --k 500.
K, MAX_IMAGES, OOD_K, OOD_SIZE = 100, 1000, 20, 500
# Test images an evaluation reads into memory at most (a seeded subset of larger test splits): a
# streamed dataset's test split may not fit, and the metrics and pictures need no more.
MAX_TEST_IMAGES = 5_000
MNIST_VALUES = 28 * 28  # the image size the batch sizes here are given for


def scaled_batch(batch_size, image_shape):
    """`batch_size`, given for 28x28x1 images, scaled down for larger images, so that a forward pass
    holds about as many values whatever the image size (64x64 RGB: 1/16 as many images)."""
    values = int(np.prod(image_shape))
    return max(1, batch_size * MNIST_VALUES // values) if values > MNIST_VALUES else batch_size


def model_functions(model):
    """Signature-style functions of a live model (its `serving_endpoints`), compiled with tf.function."""
    import tensorflow as tf

    return {name: tf.function(fn, input_signature=signature)
            for name, (fn, signature) in model.serving_endpoints().items()}


def saved_model_functions(path):
    """Signature functions of a SavedModel folder, called positionally like `model_functions`'."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # the closures keep it (and its variables) alive

    def wrap(name, *arg_names):
        return lambda *args: loaded.signatures[name](**{k: v for k, v in zip(arg_names, args) if v is not None})

    return {"encode": wrap("encode", "x", "labels"), "decode": wrap("decode", "z", "labels"),
            "prior_log_prob": wrap("prior_log_prob", "z"), "log_weights": wrap("log_weights", "x", "labels")}


def log_weights(fns, x, labels=None, k=500, max_decodes=8192, seed=0):
    """k importance weights per image from k calls of the `log_weights` signature (one fresh
    z ~ q(z|x) each; see `LatentVariableModel.log_weights`):

        log w_i = log p(x, z_i) - log q(z_i|x)

    The k calls are made as one call on the images repeated, in chunks of at most `max_decodes`
    images, so memory stays bounded whatever k is. TensorFlow's global seed is set to `seed` first,
    so that a function traced from here on draws the same z's again.

    Args:
        fns: signature-style functions with `log_weights(x[, labels])`.
        x: images `[N, H, W, C]` as the likelihood scores them (binary for a Bernoulli one).
        labels: class ids for conditional models, else None.
        k: importance samples per image.

    Returns:
        dict of float64 numpy arrays `[N, k]`: `log_weight`, and `log_likelihood` (log p(x|z_i)).
    """
    import tensorflow as tf

    if k < 1:
        raise ValueError(f"Expected k >= 1 importance samples, received k={k}.")
    tf.random.set_seed(seed)
    per_chunk, sample_chunk = max(1, max_decodes // k), min(k, max_decodes)
    keys = ("log_weight", "log_likelihood")
    chunks = {key: [] for key in keys}
    for start in range(0, len(x), per_chunk):
        xb = np.asarray(x[start:start + per_chunk], np.float32)
        parts = {key: [] for key in keys}
        for first in range(0, k, sample_chunk):
            n = min(sample_chunk, k - first)
            args = [tf.constant(np.tile(xb, (n, 1, 1, 1)))]
            if labels is not None:
                args.append(tf.constant(np.tile(np.asarray(labels[start:start + per_chunk], np.int32), n)))
            result = fns["log_weights"](*args)
            for key in keys:
                parts[key].append(np.reshape(result[key], (n, len(xb))))
        for key in keys:
            chunks[key].append(np.concatenate(parts[key]).T.astype(np.float64))
    return {key: np.concatenate(chunks[key]) for key in keys}


def importance_log_likelihood(fns, x, labels=None, k=500, max_decodes=8192, seed=0):
    """Importance-sampled log p(x) per image (nats): the log-mean-exp of k `log_weights`.

        log p(x) ~= logsumexp_i log w_i - log k

    This is the k-sample importance-weighted bound: at least the ELBO (the mean of the same log
    weights, by Jensen's inequality), and growing to log p(x) as k grows.

    Returns:
        float64 numpy array `[N]` of log-likelihood estimates.
    """
    return log_mean_exp(log_weights(fns, x, labels, k, max_decodes, seed)["log_weight"])


def negative_log_likelihood(fns, x, labels=None, k=500, **kwargs):
    """-log p(x) per image in nats (see `importance_log_likelihood`)."""
    return -importance_log_likelihood(fns, x, labels, k, **kwargs)


def likelihood_metrics(fns, x, labels=None, k=500, max_decodes=8192, seed=0):
    """ELBO, its two terms and the importance-sampled NLL from one set of k samples per image.

        ELBO = E_q[log p(x|z)] - KL(q || p),   NLL_k = -log (1/k sum_i w_i)

    The ELBO and KL are Monte Carlo means over the same k samples, so ELBO <= -NLL_k holds for
    every image and `reconstruction + kl = -elbo` exactly.

    Returns:
        dict of nats per image (means over `x`): `elbo`, `reconstruction`, `kl`, `nll`.
    """
    t = log_weights(fns, x, labels, k, max_decodes, seed)
    return {"elbo": float(np.mean(t["log_weight"])), "reconstruction": float(-np.mean(t["log_likelihood"])),
            "kl": float(np.mean(t["log_likelihood"] - t["log_weight"])),
            "nll": float(-np.mean(log_mean_exp(t["log_weight"])))}


def marginal_nll(fns, x, num_classes=None, k=50, max_decodes=8192, seed=0):
    """-log p(x) per image, for conditional models with the label summed out under a uniform p(y).

        p(x) = 1/C sum_c p(x|c),   each p(x|c) importance-sampled with max(1, k // C) samples

    which is again a k-sample importance-weighted bound, with proposal q(y, z|x) = U(y) q(z|x, y).
    """
    if not num_classes:
        return negative_log_likelihood(fns, x, k=k, max_decodes=max_decodes, seed=seed)
    per_class = [importance_log_likelihood(fns, x, np.full(len(x), c, np.int32), max(1, k // num_classes),
                                           max_decodes, seed + c) for c in range(num_classes)]
    return -log_mean_exp(np.stack(per_class, 1))


def outlier_scores(fns, x, num_classes=None, k=OOD_K, max_decodes=8192, seed=0):
    """Every outlier score of `export.runtime.Model.outlier_score` for images `x` (prepared as the
    likelihood scores them), with k samples (per class when the label is summed out):

        "nll": -log p(x) in nats;  "complexity": -log2 p(x) - L(x) in bits, L(x) the PNG size

    (Serrà et al. 2020: subtracting a lossless compressor's code length stops simple images, such
    as dSprites' shapes, from looking typical to a likelihood model).
    """
    from export.runtime.complexity import corrected

    nll = marginal_nll(fns, x, num_classes, k * (num_classes or 1), max_decodes, seed)
    return {"nll": nll, "complexity": corrected(nll, x)}


def run_batched(fn, x, labels=None, batch_size=1024):
    """Calls a signature-style function over `x` in batches; returns its outputs as numpy arrays."""
    import tensorflow as tf

    outs = []
    for start in range(0, len(x), batch_size):
        args = [tf.constant(x[start:start + batch_size], tf.float32)]
        if labels is not None:
            args.append(tf.constant(labels[start:start + batch_size], tf.int32))
        outs.append({key: value.numpy() for key, value in fn(*args).items()})
    return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}


def evaluate_run(run_dir, k=K, print_fn=print, *, batch_size=8192, max_images=MAX_IMAGES, ood_k=OOD_K,
                 ood_size=OOD_SIZE, pictures=True, seed=0):
    """Scores a finished run: writes `metrics.json` and `pictures/*.png` into it, records them in the
    manifest and prints a table. The run is changed all or nothing (`artifacts.update_run`).

    Args:
        run_dir: a finished run directory.
        k: importance samples per image for the test NLL; 0 skips the likelihood metrics.
        batch_size: decoded samples per forward pass (bounds memory), for 28x28 images; scaled
            down for larger ones (`scaled_batch`).
        max_images: test images for the importance-sampled metrics (a seeded subset of larger splits).
        ood_k, ood_size: importance samples and images per set for the outlier-detection AUROC.
        pictures: False skips the pictures.

    Returns:
        The metrics, as written to `metrics.json`.

    Raises:
        RunError: `run_dir` is not a finished run, an artifact is missing or changed, or another
            process is writing it.
        ValueError: a setting out of range.
    """
    from zoo import artifacts

    settings = evaluation_settings(k, max_images, ood_k, ood_size, seed)
    with artifacts.update_run(run_dir) as (run, manifest):
        results, sections = write_evaluation(run, None, manifest, settings, pictures=pictures,
                                             batch_size=batch_size, print_fn=print_fn)
        artifacts.merge(manifest, **sections)
    return results


def evaluation_settings(k=K, max_images=MAX_IMAGES, ood_k=OOD_K, ood_size=OOD_SIZE, seed=0):
    """The settings of an evaluation (see `evaluate_run`), checked."""
    settings = {"k": k, "max_images": max_images, "ood_k": min(ood_k, k) if k else 0, "ood_size": ood_size,
                "seed": seed}
    for name, value in settings.items():
        if value < (0 if name in ("k", "ood_k", "seed") else 1):
            raise ValueError(f"Expected `{name}` >= {0 if name in ('k', 'ood_k', 'seed') else 1}, "
                             f"received {name}={value}.")
    return settings


def write_evaluation(run_dir, model, manifest, settings, *, pictures=True, batch_size=8192, print_fn=print):
    """Scores `model` (None: the run's `model.keras`) on the test split of the run described by
    `manifest` (its dataset name, seed and variant), writes `metrics.json` and `pictures/` into
    `run_dir` and prints a table.

    Returns:
        `(results, sections)`: the metrics, and the manifest sections that record them.
    """
    from zoo import artifacts, report, viz  # here, not at the top: TensorFlow and matplotlib load only for a run
    from zoo.training import HISTORY

    x, y, dataset, options = test_split(run_dir, manifest)
    described = manifest.get("dataset", {})
    model = model or zoo.load_model(os.path.join(run_dir, artifacts.MODEL_FILE))
    results, means = report.compute(model, x, y, dataset, settings, options=options,
                                    batch_size=scaled_batch(batch_size, x.shape[1:]), print_fn=print_fn)

    drawn = []
    if pictures:  # drawn into a hidden folder, then swapped in: never a half-drawn pictures/ in the run
        with atomic_folder(os.path.join(run_dir, PICTURES_DIR)) as folder, report.timed("pictures", print_fn):
            drawn = viz.draw_run(model, folder, x, y, means=means, kl=results.get("kl_per_dim"),
                                 main_factor=results.get("main_factor"),
                                 code_counts=results.get("code_counts"), history=os.path.join(run_dir, HISTORY),
                                 name=f"{manifest.get('variant', model.name)} on {os.path.basename(dataset)}",
                                 seed=settings["seed"], class_names=described.get("class_names"),
                                 restyle_rows=results.get("restyle_examples"))
    results["pictures"] = [f"{PICTURES_DIR}/{p}" for p in drawn]

    artifacts.write_json_atomic(os.path.join(run_dir, METRICS_FILE), results)
    print_fn(report.table(results))
    scalars = {key: v for key, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return results, {"metrics": scalars, "evaluation": {"metrics_file": METRICS_FILE, "pictures": results["pictures"],
                                                        "settings": settings, "skipped": results["skipped"]}}


def test_split(run_dir, manifest, limit=MAX_TEST_IMAGES):
    """`(x, y, dataset, options)`: the test split of the run described by `manifest` (at most
    `limit` images, a seeded subset), read as the run read its data.

    Raises:
        zoo.artifacts.RunError: the manifest names no dataset.
    """
    from zoo import artifacts

    described = manifest.get("dataset", {})
    if not described.get("name"):
        raise artifacts.RunError(f"{run_dir}: the manifest names no dataset (expected dataset.name), so there is "
                                 "no test split to score.")
    seed = manifest.get("training", {}).get("seed", 0)
    options = {"image_size": described.get("image_size"), "channels": described.get("channels"),
               "fit": described.get("fit") or "crop", "skip_bad_files": bool(described.get("skipped"))}
    x, y = data.open_split(described["name"], "test", seed=seed, **options).arrays(limit=limit, seed=seed)
    return x, y, described["name"], options


def build_parser():
    """The command line of `python -m zoo.evaluate`."""
    from zoo.cli import COUNT, POSITIVE_INT, HelpFormatter, add_verbose  # the recipes' argument types

    parser = argparse.ArgumentParser(
        prog="python -m zoo.evaluate", formatter_class=HelpFormatter,
        description="Score a finished run directory: writes metrics.json and pictures/*.png into it,\n"
                    "records them in its manifest and prints a table of the metrics.\n\n"
                    "The defaults are those of the recipes' own evaluation; the README's figures use\n\n"
                    "    python -m zoo.evaluate RUN_DIR --k 500")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (one with a manifest.json)")
    parser.add_argument("--k", type=COUNT, default=K,
                        help="importance samples per image for the test NLL (0 skips the likelihood metrics)")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=8192,
                        help="decoded samples per forward pass; lower it to use less memory")
    parser.add_argument("--max-images", type=POSITIVE_INT, default=MAX_IMAGES,
                        help="test images for the importance-sampled metrics (a seeded subset of larger splits)")
    parser.add_argument("--ood-k", type=COUNT, default=OOD_K,
                        help="importance samples per image for the outlier-detection scores")
    parser.add_argument("--ood-size", type=POSITIVE_INT, default=OOD_SIZE,
                        help="images per set for outlier detection (at most the test split's)")
    parser.add_argument("--no-pictures", action="store_true", help="write the metrics only")
    parser.add_argument("--seed", type=COUNT, default=0, help="seed of the samples and subsets")
    add_verbose(parser)
    return parser


def main(argv=None):
    """The command line; returns the exit code: 0, or 2 with a one-line error for a bad run directory."""
    args = build_parser().parse_args(argv)
    zoo.import_tensorflow(args.verbose)
    from zoo import artifacts

    try:
        evaluate_run(args.run_dir, args.k, batch_size=args.batch_size, max_images=args.max_images,
                     ood_k=args.ood_k, ood_size=args.ood_size, pictures=not args.no_pictures, seed=args.seed)
    except (artifacts.RunError, data.DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(args.run_dir, METRICS_FILE)}")
    return 0


def log_mean_exp(log_w):
    """log (1/k sum_i exp(log_w[:, i])) per row, without overflow."""
    top = np.max(log_w, axis=1, keepdims=True)
    return top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1))


if __name__ == "__main__":
    sys.exit(main())
