"""The facts an exported decoder carries, so that `export.runtime` needs nothing else to use it.

ONNX files keep them in `metadata_props` and TFLite files in a sidecar `<file>.json` (the LiteRT
interpreter cannot read a model's metadata). Every value is JSON: in `metadata_props` each is a
JSON-encoded string.

    variant       registered model name, e.g. "cvae"
    latent_dim    size of z
    num_classes   classes of a conditional decoder, or null
    class_names   a conditional decoder's class names, id order (["cat", "dog"]: label 1 is "dog"),
                  from the run manifest's dataset.class_names; null when unconditional or unnamed
    num_codes     codebook size of a decoder that takes `codes` (VQ-VAE), else absent
    output_shape  [H, W, C] of one image
    inputs        [{"name", "dtype", "shape"}], latent first, shape without the batch axis
    outputs       output names: "mean", and the likelihood's parameters (`zoo.likelihoods.parameters`)
    likelihood    p(x|z): {"name"} (a name of `zoo.likelihoods.NAMES`), plus "scale" [C] for the
                  per-channel Gaussian, whose scale is a weight rather than an output
    prior         p(z) over the latent input, or null (an autoencoder has none):
                  {"kind": "gaussian_mixture", "logits": [K], "loc": [K, D], "scale": [K, D]}
                  (N(0, I) is one component), or for codes
                  {"kind": "categorical", "probs": [h, w, K]} (one distribution per grid position), or
                  {"kind": "pixelcnn", "file": "prior"}: an autoregressive prior over codes, exported
                  beside the decoder in the same format (prior.onnx, prior.tflite; see `prior_network_facts`)
    zoo_version   version of the zoo that exported it

An exported encoder (`--parts encoder`) carries the same facts, with its own `inputs` (`x`
[H, W, C], `labels`, and `noise` for hvae) and `outputs`, and besides:

    part          "encoder"
    input_shape   [H, W, C] of one image
    outlier       the default outlier score (`export.runtime.Model.outlier_score`) on the run's test
                  split: {"score": "complexity", "units": "bits", "k", "seed", "split": "test",
                  "images", "quantiles": {"1": ..., "50": ..., "99.9": ...}}, so that apps say in
                  plain words how unusual an image is; null for a model without a likelihood
                  (ae, vqvae) or a run whose test split cannot be read here
"""

import numpy as np
import tensorflow_probability as tfp

import zoo
from export.serving import input_specs, output_names
from zoo import likelihoods
from zoo.artifacts import RunError

tfd = tfp.distributions
PRIOR_FILE = "prior"  # stem of an exported prior network's file: prior.onnx, prior.tflite
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)  # percentiles of the outlier calibration
CALIBRATION_IMAGES = 500  # test images it scores


def prior_network_facts(model, manifest, network):
    """The facts of `network`, the serving prior of `model` (`export.serving.serving_prior`):
    `variant`, `kind` ("pixelcnn"), `grid_shape` [h, w], `num_codes` K, `inputs` (int32 `codes`),
    `outputs` (["logits"]) and `zoo_version`."""
    return {"variant": manifest["variant"], "kind": "pixelcnn", "grid_shape": [int(s) for s in model.grid_shape],
            "num_codes": int(model.num_codes), "inputs": input_specs(network), "outputs": sorted(network.output.keys()),
            "zoo_version": zoo.__version__}


def encoder_facts(model, decoder_facts, encoder, outlier):
    """The facts of `encoder` (`export.serving.serving_encoder(model)`): the decoder's facts, with
    the encoder's inputs and outputs, `part`, `input_shape` and the `outlier` calibration."""
    return {**decoder_facts, "part": "encoder", "input_shape": [int(s) for s in model.image_shape],
            "inputs": input_specs(encoder), "outputs": output_names(encoder), "outlier": outlier}


def outlier_calibration(run_dir, model, manifest, print_fn=print):
    """The quantiles of the default outlier score on (up to `CALIBRATION_IMAGES` of) the run's test
    split, computed with the same estimator as `export.runtime` (`zoo.evaluate.outlier_scores`,
    `OUTLIER_K` samples); None for a model without a likelihood or a test split that cannot be read."""
    from export.runtime.model import OUTLIER_K
    from zoo import data, evaluate, report

    if not model.has_prior or getattr(model, "num_codes", None):
        return None
    try:
        x, _, _, _ = evaluate.test_split(run_dir, manifest, limit=CALIBRATION_IMAGES)
    except (RunError, data.DatasetError) as err:
        print_fn(f"no outlier calibration: the test split cannot be read ({err})")
        return None
    seed = 0
    with report.timed(f"outlier calibration ({len(x)} test images, k={OUTLIER_K})", print_fn):
        scores = evaluate.outlier_scores(evaluate.model_functions(model), report.scored_images(model, x),
                                         model.num_classes, OUTLIER_K, seed=seed)["complexity"]
    return {"score": "complexity", "units": "bits", "k": OUTLIER_K, "seed": seed, "split": "test", "images": len(x),
            "quantiles": {f"{q:g}": float(np.percentile(scores, q)) for q in QUANTILES}}


def decoder_facts(model, manifest, decoder):
    """The facts of `decoder` (the serving decoder of `model`), as a JSON-ready dict."""
    specs = input_specs(decoder)
    facts = {
        "variant": manifest["variant"],
        "latent_dim": int(model.latent_dim),
        "num_classes": int(model.num_classes) if model.num_classes else None,
        "class_names": class_names(model, manifest),
        "output_shape": [int(s) for s in model.image_shape],
        "inputs": specs,
        "outputs": sorted(decoder.output.keys()),
        "prior": prior_facts(model, specs[0]),
        "likelihood": likelihood_facts(model),
        "zoo_version": zoo.__version__,
    }
    if "num_codes" in manifest.get("config", {}):
        facts["num_codes"] = int(manifest["config"]["num_codes"])
    return facts


def likelihood_facts(model):
    """The likelihood's name, and what of its parameters the decoder does not output."""
    facts = {"name": model.likelihood}
    if getattr(model, "log_scale", None) is not None:
        facts["scale"] = np.asarray(likelihoods.channel_scale(model.log_scale), np.float64).tolist()
    return facts


def class_names(model, manifest):
    """The names of a conditional model's classes from its manifest, or None (unconditional, or a
    dataset without names; old manifests have no `class_names`)."""
    names = manifest.get("dataset", {}).get("class_names")
    if not model.num_classes or names is None:
        return None
    if not isinstance(names, list) or len(names) != model.num_classes or not all(isinstance(n, str) for n in names):
        raise RunError(f"The manifest's dataset.class_names {names!r} is not a list of {model.num_classes} names, one "
                       "per class of the model: retrain the run, or remove the key to export with class ids only.")
    return names


def prior_facts(model, latent):
    """p(z) as parameters the runtime samples from in numpy (so `generate` follows a learned prior
    too), or None when the model has no prior or it is not over the decoder's `latent` input.

    Args:
        model: the zoo model.
        latent: the spec of the decoder's latent input (`{"name", "dtype", "shape"}`).
    """
    if getattr(model, "prior_network", None) is not None:
        return {"kind": "pixelcnn", "file": PRIOR_FILE}
    try:
        prior = model.prior()
    except ValueError:  # an autoencoder has no prior
        return None
    floating = latent["dtype"].startswith("float")
    inner = getattr(prior, "distribution", None)
    if floating and isinstance(prior, tfd.MixtureSameFamily):
        logits, normal = prior.mixture_distribution.logits_parameter(), prior.components_distribution.distribution
    elif floating and isinstance(inner, tfd.Normal):
        logits, normal = np.zeros([1]), inner
    elif not floating and isinstance(inner, tfd.Categorical):
        return {"kind": "categorical", "probs": np.asarray(inner.probs_parameter(), np.float64).tolist()}
    else:
        return None
    shape = [len(logits), model.latent_dim]
    loc = np.broadcast_to(np.asarray(normal.loc, np.float64), shape)
    scale = np.broadcast_to(np.asarray(normal.scale, np.float64), shape)
    return {"kind": "gaussian_mixture", "logits": np.asarray(logits, np.float64).tolist(), "loc": loc.tolist(),
            "scale": scale.tolist()}
