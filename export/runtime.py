"""Run an exported decoder with numpy and ONNX Runtime or the LiteRT interpreter: no TensorFlow.

This module is what apps ship with. It imports only numpy at import time; `onnxruntime` or
`ai_edge_litert` is imported when a file of that kind is loaded, so an app needs only the one it
uses. It must never import TensorFlow (a test checks `sys.modules` in a fresh interpreter).

Example:
    from export.runtime import load_decoder

    decoder = load_decoder("runs/cvae/decoder.onnx")       # CUDA first when present, else CPU
    sevens = decoder.generate(16, labels=7, seed=0)         # [16, 28, 28, 1] in [0, 1]
    same = decoder.decode(z, labels=[7] * len(z))           # z: float [B, latent_dim]
"""

import json
import os

import numpy as np

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
METADATA_SUFFIX = ".json"  # a TFLite file's facts live beside it: decoder.tflite -> decoder.tflite.json
REQUIRED_FACTS = ("variant", "latent_dim", "num_classes", "output_shape", "inputs", "prior")


def load_decoder(path, providers=None):
    """Loads an exported decoder (`.onnx` or `.tflite`) with its facts.

    Args:
        path: a file written by `python -m export`.
        providers: ONNX Runtime execution providers, as for `onnxruntime.InferenceSession`; by
            default CUDA when it is available, then CPU (see `choose_providers`). Ignored for
            TFLite files.

    Returns:
        A `Decoder`.

    Raises:
        ValueError: a missing file, an unknown extension, or a file without the export's facts.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Decoder file not found: {path}.")
    if path.endswith(".onnx"):
        run, facts, used = _open_onnx(path, providers)
    elif path.endswith(".tflite"):
        (run, facts), used = _open_tflite(path), None
    else:
        raise ValueError(f"Expected a .onnx or .tflite decoder file, received {path}.")
    missing = [key for key in REQUIRED_FACTS if key not in facts]
    if missing:
        raise ValueError(f"{path} lacks the decoder facts {missing}: export it with `python -m export RUN_DIR`.")
    return Decoder(run, facts, path, used)


class Decoder:
    """An exported decoder: latents (and labels) in, images `[B, H, W, C]` in [0, 1] out.

    Attributes:
        latent_dim, num_classes (None unless conditional), output_shape `(H, W, C)`, variant.
        facts: everything the export recorded (see `export.metadata`).
        providers: the ONNX Runtime providers in use (None for TFLite).
    """

    def __init__(self, run, facts, path, providers=None):
        self._run, self.facts, self.path, self.providers = run, facts, path, providers
        self.variant, self.latent_dim, self.num_classes = facts["variant"], facts["latent_dim"], facts["num_classes"]
        self.output_shape = tuple(facts["output_shape"])
        self._latent, *self._conditions = facts["inputs"]

    def decode(self, z, labels=None):
        """Returns the mean images `[B, H, W, C]` (float32 in [0, 1]) for latents `z`.

        Args:
            z: float latents `[B, latent_dim]` (int `codes` for a decoder that takes codes).
            labels: int class ids `[B]` in `[0, num_classes)`; required exactly when the decoder
                is conditional.

        Raises:
            ValueError: wrong shape, dtype, NaN/Inf, labels out of range, missing or extra labels.
        """
        feeds = {self._latent["name"]: check_input(self._latent, z, _upper_bound(self.facts, self._latent["name"]))}
        batch = len(feeds[self._latent["name"]])
        if self.num_classes and labels is None:
            raise ValueError(f"This decoder is conditional on {self.num_classes} classes: pass `labels`.")
        if not self.num_classes and labels is not None:
            raise ValueError("This decoder is not conditional: expected labels=None, received labels.")
        for spec in self._conditions:
            feeds[spec["name"]] = check_input(spec, labels, _upper_bound(self.facts, spec["name"]), batch)
        return self._run(feeds)["mean"]

    def generate(self, n, labels=None, seed=None):
        """Draws `n` images: z (or codes) ~ p(z), the model's prior from the facts, then `decode`.

        Args:
            n: number of images.
            labels: for conditional decoders, one class id for all, or `n` of them.
            seed: seeds numpy's generator, for the same images every time.

        Raises:
            ValueError: `n` is not a positive integer, or the decoder has no prior (an
                autoencoder).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"Expected a positive integer number of images, received n={n!r}.")
        if self.facts["prior"] is None:
            raise ValueError(f"This '{self.variant}' decoder has no prior to draw latents from; "
                             "call decode() with latents of your own.")
        latents = sample_prior(self.facts["prior"], n, np.random.default_rng(seed))
        if labels is not None and np.ndim(labels) == 0:
            labels = np.full(n, labels)
        return self.decode(latents, labels)

    def __repr__(self):
        return (f"Decoder({self.path!r}, variant={self.variant!r}, latent_dim={self.latent_dim}, "
                f"num_classes={self.num_classes}, output_shape={self.output_shape})")


def check_input(spec, value, upper=None, batch=None):
    """Returns `value` as a numpy array of `spec`'s dtype, after the cheap checks that always run.

    Args:
        spec: `{"name", "dtype", "shape"}` from the facts (shape without the batch axis).
        value: array-like.
        upper: exclusive upper bound of an integer input (classes, codebook size), or None.
        batch: the batch size the input must have, or None.
    """
    name, floating = spec["name"], spec["dtype"].startswith("float")
    array = np.asarray(value)
    if array.dtype.kind not in ("f" if floating else "iu"):
        kind = "floating-point" if floating else "integer"
        raise ValueError(f"Expected {kind} values for `{name}`, received dtype {array.dtype}.")
    expected = ("batch", *spec["shape"])
    if array.ndim != len(expected) or list(array.shape[1:]) != list(spec["shape"]):
        raise ValueError(f"Expected `{name}` of shape ({', '.join(map(str, expected))}), received {array.shape}.")
    if batch is not None and len(array) != batch:
        raise ValueError(f"Expected {batch} `{name}` (one per latent), received {len(array)}.")
    if floating and not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or Inf values; expected finite numbers.")
    if upper is not None and array.size and (array.min() < 0 or array.max() >= upper):
        raise ValueError(f"Expected `{name}` in [0, {upper - 1}], received values in [{array.min()}, {array.max()}].")
    return array.astype(spec["dtype"], copy=False)


def sample_prior(prior, n, rng):
    """Draws `n` latents from the prior of the facts (`export.metadata`): float z from a diagonal
    Gaussian mixture, or int32 codes from a categorical per grid position."""
    if prior["kind"] == "categorical":
        cdf = np.cumsum(np.asarray(prior["probs"], np.float64), axis=-1)
        uniform = rng.random((n, *cdf.shape[:-1], 1)) * cdf[..., -1:]
        return (uniform > cdf).sum(-1).astype(np.int32)
    logits = np.asarray(prior["logits"], np.float64)
    loc, scale = np.asarray(prior["loc"], np.float64), np.asarray(prior["scale"], np.float64)
    weights = np.exp(logits - logits.max())
    component = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return (loc[component] + scale[component] * rng.standard_normal((n, loc.shape[1]))).astype(np.float32)


def sample_inputs(facts, n, seed=None):
    """Random valid inputs for every decoder input, keyed by name: float latents from the prior
    (N(0, I) when there is none), uniform labels and codes. Used for parity checks and int8
    calibration."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in facts["inputs"]:
        shape = (n, *spec["shape"])
        if spec["dtype"].startswith("float"):
            inputs[spec["name"]] = (sample_prior(facts["prior"], n, rng) if facts["prior"]
                                    else rng.standard_normal(shape).astype(spec["dtype"]))
        else:
            inputs[spec["name"]] = rng.integers(0, _upper_bound(facts, spec["name"]), shape).astype(spec["dtype"])
    return inputs


def choose_providers(providers=None):
    """ONNX Runtime execution providers: the explicit list when given, else CUDA (when this
    onnxruntime build has it) then CPU.

    Raises:
        ValueError: an explicit provider this onnxruntime build does not have.
    """
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if providers is None:
        return [name for name in PREFERRED_PROVIDERS if name in available]
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    missing = [name for name in names if name not in available]
    if missing or not names:
        raise ValueError(f"Expected ONNX Runtime providers from {available}, received {names}.")
    return list(providers)


def metadata_path(path):
    """The sidecar JSON that holds a TFLite decoder's facts."""
    return path + METADATA_SUFFIX


def _upper_bound(facts, name):
    return {"labels": facts.get("num_classes"), "codes": facts.get("num_codes")}.get(name)


def _open_onnx(path, providers):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=choose_providers(providers))
    facts = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    names = [output.name for output in session.get_outputs()]
    return (lambda feeds: dict(zip(names, session.run(names, feeds)))), facts, session.get_providers()


def _open_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    sidecar = metadata_path(path)
    if not os.path.isfile(sidecar):
        raise ValueError(f"{path} needs its facts file {sidecar} beside it (written by `python -m export`).")
    with open(sidecar) as f:
        facts = json.load(f)
    runner = Interpreter(model_path=path).get_signature_runner()
    return (lambda feeds: runner(**feeds)), facts
