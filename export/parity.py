"""Parity: does an exported file decode like the run's SavedModel?

Each file is run through `export.runtime` (exactly as apps run it) on fixed random inputs, at two
batch sizes (1, and an odd size that catches a batch axis frozen at export), and its `mean`
images are compared with the SavedModel's `decode` signature on the same inputs. An exported prior
network's logits are compared with its Keras network's on uniform random code grids, and an
exported encoder's outputs (all of them) with the model's `export_encoder` function on uniform
random images.
"""

import math

import numpy as np
import tensorflow as tf

from export.runtime import load_decoder, load_encoder, load_prior, sample_inputs

BATCH_SIZES = (1, 33)
SEED = 0


def reference_decoder(saved_model_dir):
    """The SavedModel's `decode` signature as a function: named numpy inputs -> mean images."""
    decode = tf.saved_model.load(saved_model_dir).signatures["decode"]
    return lambda inputs: decode(**{name: tf.constant(value) for name, value in inputs.items()})["mean"].numpy()


def check(path, reference, metric, tolerance):
    """Compares the exported file at `path` with `reference` (see `reference_decoder`).

    Args:
        path: an exported `.onnx` / `.tflite` file.
        reference: named numpy inputs -> reference mean images.
        metric: "max_abs" or "mean_abs", the error held against `tolerance`.
        tolerance: the largest acceptable error.

    Returns:
        A JSON-ready report: `max_abs`, `mean_abs`, `psnr_db` (None when exact; peak 1.0),
        the `metric` and `tolerance`, `passed`, and the inputs used (`batch_sizes`, `seed`).
    """
    decoder = load_decoder(path, providers=["CPUExecutionProvider"])
    errors = []
    for i, batch in enumerate(BATCH_SIZES):
        inputs = sample_inputs(decoder.facts, batch, seed=SEED + i)
        latent, *labels = (inputs[spec["name"]] for spec in decoder.facts["inputs"])
        errors.append(np.abs(decoder.decode(latent, *labels) - reference(inputs)).ravel())
    return _report(errors, metric, tolerance)


def check_prior(path, reference, metric, tolerance):
    """Compares the exported prior network at `path` with `reference` (int32 codes [B, h, w] ->
    logits, the Keras network) on uniform random codes; the same report as `check` (its PSNR is
    over logits, not images)."""
    prior = load_prior(path, providers=["CPUExecutionProvider"])
    errors = []
    for i, batch in enumerate(BATCH_SIZES):
        codes = np.random.default_rng(SEED + i).integers(0, prior.num_codes, (batch, *prior.grid_shape), np.int32)
        errors.append(np.abs(prior.logits(codes) - reference(codes)).ravel())
    return _report(errors, metric, tolerance)


def reference_encoder(model):
    """The model's `export_encoder` function (what the SavedModel's `encode` signature runs; for
    `hvae` with its noise input) on named numpy inputs -> dict of numpy outputs."""
    function, _ = model.export_encoder()
    return lambda inputs: {name: value.numpy() for name, value in
                           function(**{key: tf.constant(v) for key, v in inputs.items()}).items()}


def check_encoder(path, reference, metric, tolerance):
    """Compares the exported encoder at `path` with `reference` (see `reference_encoder`) on every
    output. Latents are not bounded like pixels (an autoencoder's z reaches tens), so each output's
    errors are divided by max(1, its largest reference magnitude): `max_rel`, the metric of
    `ENCODER_FORMATS`, is the decoder's max abs error for outputs within [-1, 1] and float32's
    relative error beyond. A code that differs counts as its index difference."""
    encoder = load_encoder(path, providers=["CPUExecutionProvider"])
    errors, scaled = [], []
    for i, batch in enumerate(BATCH_SIZES):
        inputs = sample_inputs(encoder.facts, batch, seed=SEED + i)
        exported, expected = encoder.encode(**inputs), reference(inputs)
        for name, want in expected.items():
            error = np.abs(np.asarray(exported[name], np.float64) - want).ravel()
            errors.append(error)
            scaled.append(error / max(1.0, float(np.abs(want).max(initial=0))))
    report = _report(errors, "max_abs", tolerance)
    report.update(max_rel=float(np.concatenate(scaled).max()), metric=metric)
    report["passed"] = bool(report[metric] <= tolerance)
    return report


def _report(errors, metric, tolerance):
    errors = np.concatenate(errors).astype(np.float64)
    report = {"max_abs": float(errors.max()), "mean_abs": float(errors.mean()),
              "psnr_db": psnr(errors), "metric": metric, "tolerance": tolerance,
              "batch_sizes": list(BATCH_SIZES), "seed": SEED}
    report["passed"] = bool(report[metric] <= tolerance)
    return report


def psnr(errors, peak=1.0):
    """Peak signal-to-noise ratio in dB of absolute errors on images in [0, peak]; None if exact."""
    mse = float(np.mean(np.square(errors)))
    return None if mse == 0 else round(10 * math.log10(peak**2 / mse), 2)
