"""Run an exported decoder with numpy and ONNX Runtime or the LiteRT interpreter: no TensorFlow.

This module is what apps ship with. It imports only numpy at import time; `onnxruntime` or
`ai_edge_litert` is imported when a file of that kind is loaded, so an app needs only the one it
uses. It must never import TensorFlow (a test checks `sys.modules` in a fresh interpreter).

`decode` and `generate` run the model on at most `batch_size` images at a time and write each
batch into one preallocated output, so memory beyond the returned images does not grow with n.

Example:
    from export.runtime import load_decoder

    decoder = load_decoder("runs/cvae/decoder.onnx")       # CUDA first when present, else CPU
    sevens = decoder.generate(16, labels=7, seed=0)         # [16, 28, 28, 1] in [0, 1]
    digits = load_decoder("runs/vqvae-pixelcnn/decoder.onnx").generate(16, seed=0)  # codes from prior.onnx
    same = decoder.decode(z, labels=[7] * len(z))           # z: float [B, latent_dim]
    cats = decoder.generate(8, labels=decoder.class_names.index("cat"))  # a run whose classes are named
"""

import importlib
import json
import os

import numpy as np

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
METADATA_SUFFIX = ".json"  # a TFLite file's facts live beside it: decoder.tflite -> decoder.tflite.json
REQUIRED_FACTS = ("variant", "latent_dim", "num_classes", "output_shape", "inputs", "prior")
PRIOR_FACTS = ("kind", "grid_shape", "num_codes", "inputs", "outputs")
CHUNK_VALUES = 1 << 18  # output values per runtime call: 334 images of 28x28x1, 21 of 64x64x3
RUNTIMES = {".onnx": ("onnxruntime", "onnxruntime (or onnxruntime-gpu)"),  # extension: (module, pip package)
            ".tflite": ("ai_edge_litert.interpreter", "ai-edge-litert")}


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
        ValueError: a missing file, an unknown extension, a file its runtime cannot load (truncated
            or not a model), or a file without the export's facts or whose facts are not JSON.
        ModuleNotFoundError: the file's runtime is not installed (the message says what to install).
    """
    path, run, facts, names, used = _open_file(path, providers, "decoder", "mean")
    _check_facts(path, facts, *names)
    return Decoder(run, facts, path, used)


class Decoder:
    """An exported decoder: latents (and labels) in, images `[B, H, W, C]` in [0, 1] out.

    Attributes:
        latent_dim, num_classes (None unless conditional), output_shape `(H, W, C)`, variant.
        class_names: the name of each class id (`class_names[3]` is what label 3 means), or None
            (unconditional, a dataset without names, or a file exported before names were
            recorded). Labels are always ids: `class_names.index("cat")` gives the id of "cat".
        facts: everything the export recorded (see `export.metadata`).
        providers: the ONNX Runtime providers in use (None for TFLite).
        batch_size: the most images one runtime call decodes (`CHUNK_VALUES` output values);
            lower it to save memory, raise it for speed on a GPU.
    """

    def __init__(self, run, facts, path, providers=None):
        self._run, self.facts, self.path, self.providers = run, facts, path, providers
        self.variant, self.latent_dim, self.num_classes = facts["variant"], facts["latent_dim"], facts["num_classes"]
        self.output_shape = tuple(facts["output_shape"])
        self.class_names = facts.get("class_names")
        self._latent, *self._conditions = facts["inputs"]
        self.batch_size = max(1, CHUNK_VALUES // int(np.prod(self.output_shape)))

    def decode(self, z, labels=None):
        """Returns the mean images `[B, H, W, C]` (float32 in [0, 1]) for latents `z`.

        Args:
            z: float latents `[B, latent_dim]` (int `codes` for a decoder that takes codes); float64
                is cast to float32, and must stay finite when cast.
            labels: int class ids `[B]` in `[0, num_classes)`; required exactly when the decoder
                is conditional.

        Raises:
            ValueError: wrong shape, dtype, NaN/Inf (also after the cast), labels out of range,
                missing or extra labels.
        """
        latents = check_input(self._latent, z, _upper_bound(self.facts, self._latent["name"]))
        feeds = {self._latent["name"]: latents, **self._condition_feeds(labels, len(latents))}
        return self._decode_chunks(len(latents), lambda start, stop: {k: v[start:stop] for k, v in feeds.items()})

    def generate(self, n, labels=None, seed=None):
        """Draws `n` images: z (or codes) ~ p(z), the model's prior from the facts, then `decode`.

        Args:
            n: number of images.
            labels: for conditional decoders, one class id for all, or `n` of them.
            seed: seeds numpy's generator, for the same images every time (at the same `batch_size`).

        A vqvae decoder whose prior is a PixelCNN draws its codes with the exported prior beside
        it (`code_prior`): `numpy.random.default_rng(seed).random((n, h, w))` through
        `sample_codes`, the same codes as `model.sample(n, seed=seed)` in the zoo.

        Raises:
            ValueError: `n` is not a positive integer, or the decoder has no prior (an
                autoencoder), or its PixelCNN prior file is missing.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"Expected a positive integer number of images, received n={n!r}.")
        if self.facts["prior"] is None:
            raise ValueError(f"This '{self.variant}' decoder has no prior to draw latents from; "
                             "call decode() with latents of your own.")
        if self.facts["prior"]["kind"] == "pixelcnn":
            return self.decode(self.code_prior().sample(n, seed=seed), labels)
        if labels is not None and np.ndim(labels) == 0:
            labels = np.broadcast_to(labels, n)
        conditions, rng = self._condition_feeds(labels, n), np.random.default_rng(seed)

        def feeds(start, stop):  # latents are drawn a batch at a time, so they never all exist at once
            return {self._latent["name"]: sample_prior(self.facts["prior"], stop - start, rng),
                    **{name: value[start:stop] for name, value in conditions.items()}}

        return self._decode_chunks(n, feeds)

    def code_prior(self):
        """The exported autoregressive prior beside this decoder, in its format (`decoder.onnx` ->
        `prior.onnx`, `decoder.fp16.tflite` -> `prior.tflite`), loaded once.

        Raises:
            ValueError: the decoder's prior is not a PixelCNN, or its file is missing.
        """
        prior = self.facts["prior"]
        if prior is None or prior.get("kind") != "pixelcnn":
            raise ValueError(f"This '{self.variant}' decoder's prior is not an exported network.")
        if getattr(self, "_code_prior", None) is None:
            path = os.path.join(os.path.dirname(self.path), prior["file"] + os.path.splitext(self.path)[1])
            if not os.path.isfile(path):
                raise ValueError(f"{self.path} samples its codes with the PixelCNN prior {path}, which is missing: "
                                 "export the run with `python -m export RUN_DIR`.")
            self._code_prior = load_prior(path, providers=self.providers)
        return self._code_prior

    def _condition_feeds(self, labels, batch):
        if self.num_classes and labels is None:
            raise ValueError(f"This decoder is conditional on {self.num_classes} classes: pass `labels`.")
        if not self.num_classes and labels is not None:
            raise ValueError("This decoder is not conditional: expected labels=None, received labels.")
        return {spec["name"]: check_input(spec, labels, _upper_bound(self.facts, spec["name"]), batch)
                for spec in self._conditions}

    def _decode_chunks(self, n, feeds):
        """Decodes `feeds(start, stop)` for consecutive batches of at most `batch_size` into one
        `[n, H, W, C]` array."""
        images = np.empty((n, *self.output_shape), np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            images[start:stop] = self._run(feeds(start, stop))["mean"]
        return images

    def __repr__(self):
        return (f"Decoder({self.path!r}, variant={self.variant!r}, latent_dim={self.latent_dim}, "
                f"num_classes={self.num_classes}, output_shape={self.output_shape})")


def load_prior(path, providers=None):
    """Loads an exported prior network (`prior.onnx` / `prior.tflite`, written by `python -m export`
    for a vqvae with a PixelCNN prior).

    Raises:
        ValueError: a missing file or extension, a file its runtime cannot load, or one without a
            prior network's facts.
    """
    path, run, facts, _, used = _open_file(path, providers, "prior", "logits")
    missing = [key for key in PRIOR_FACTS if key not in facts] if isinstance(facts, dict) else list(PRIOR_FACTS)
    if missing or facts["kind"] != "pixelcnn":
        raise ValueError(f"{path} lacks the facts of a PixelCNN prior ({missing or facts['kind']}): export it with "
                         "`python -m export RUN_DIR`.")
    return Prior(run, facts, path, used)


class Prior:
    """An exported PixelCNN prior over code grids: `logits(codes)` for every position at once,
    and `sample(n, seed)` by the autoregressive loop (`sample_codes`).

    Attributes:
        grid_shape `(h, w)`, num_codes K, facts, providers (None for TFLite), batch_size (grids
        per runtime call).
    """

    def __init__(self, run, facts, path, providers=None, batch_size=256):
        self._run, self.facts, self.path, self.providers = run, facts, path, providers
        self.grid_shape, self.num_codes = tuple(facts["grid_shape"]), int(facts["num_codes"])
        self.batch_size = batch_size

    def logits(self, codes):
        """float32 logits `[B, h, w, K]` for int codes `[B, h, w]`: position (i, j) sees only the
        codes before it in raster order."""
        spec = {"name": "codes", "dtype": "int32", "shape": list(self.grid_shape)}
        return np.asarray(self._run({"codes": check_input(spec, codes, self.num_codes)})["logits"])

    def sample(self, n, seed=None):
        """`n` code grids, int32 `[n, h, w]`, from `numpy.random.default_rng(seed)`'s uniforms."""
        uniforms = np.random.default_rng(seed).random((int(n), *self.grid_shape))
        return sample_codes(self.logits, uniforms, self.batch_size)


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
    if upper is not None and array.size and (array.min() < 0 or array.max() >= upper):
        raise ValueError(f"Expected `{name}` in [0, {upper - 1}], received values in [{array.min()}, {array.max()}].")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: checked after the cast
        cast = array.astype(spec["dtype"], copy=False)
    if floating and not np.isfinite(cast).all():
        if np.isfinite(array).all():
            raise ValueError(f"`{name}` has values beyond the {spec['dtype']} range (largest magnitude "
                             f"{np.abs(array).max():.3g}); expected finite {spec['dtype']} numbers.")
        raise ValueError(f"`{name}` contains NaN or Inf values; expected finite numbers.")
    return cast


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


def sample_codes(logits_fn, uniforms, batch_size=None):
    """Code grids drawn from an autoregressive prior, one position at a time in raster order.

    At each position the logits of every grid (`logits_fn(codes)` -> `[B, h, w, K]`, the codes
    not drawn yet being 0, which the causal network never reads there) are turned into
    probabilities, and the code is the first index whose cumulative probability exceeds the
    position's uniform (inverse CDF, in float64). `zoo`'s `model.sample` runs this same loop on
    the Keras network, so the same uniforms give the same codes.

    Args:
        logits_fn: int32 codes `[B, h, w]` -> logits `[B, h, w, K]`.
        uniforms: `[n, h, w]` in [0, 1), e.g. `numpy.random.default_rng(seed).random((n, h, w))`.
        batch_size: grids per `logits_fn` call (None: all at once).

    Returns:
        int32 codes `[n, h, w]`.
    """
    uniforms = np.asarray(uniforms, np.float64)
    n, h, w = uniforms.shape
    codes = np.zeros((n, h, w), np.int32)
    step = max(1, batch_size or n)
    for start in range(0, n, step):
        chunk, draws = codes[start:start + step], uniforms[start:start + step]  # views: filled in place
        for i in range(h):
            for j in range(w):
                logits = np.asarray(logits_fn(chunk), np.float64)[:, i, j]
                cdf = np.cumsum(np.exp(logits - logits.max(-1, keepdims=True)), -1)
                chunk[:, i, j] = (draws[:, i, j, None] * cdf[:, -1:] >= cdf).sum(-1)
    return codes


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


def _import_runtime(path):
    """The runtime module for `path`'s extension, or a ModuleNotFoundError saying what to install."""
    module, package = RUNTIMES[os.path.splitext(path)[1]]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModuleNotFoundError(f"Loading {path} needs {module}, which is not installed: pip install {package}.",
                                  name=module) from err


def _open_file(path, providers, what, output):
    """`(path, run, facts, (input names, output names), providers)` of an exported `what` ("decoder",
    "prior") file; `run(feeds)` returns `{output: array}` (all outputs for TFLite)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what.capitalize()} file not found: {path}.")
    if path.endswith(".onnx"):
        return path, *_open_onnx(path, providers, output)
    if path.endswith(".tflite"):
        return path, *_open_tflite(path), None
    raise ValueError(f"Expected a .onnx or .tflite {what} file, received {path}.")


def _open_onnx(path, providers, output):
    onnxruntime = _import_runtime(path)
    errors = onnxruntime.capi.onnxruntime_pybind11_state  # ONNX Runtime's own exception types
    try:
        session = onnxruntime.InferenceSession(path, providers=choose_providers(providers))
    except (errors.InvalidProtobuf, errors.InvalidArgument, errors.InvalidGraph, errors.NoModel, errors.Fail,
            errors.NotImplemented) as err:
        raise ValueError(f"{path} is not an ONNX model that ONNX Runtime can load (truncated, or another kind of "
                         f"file?): {err}") from err
    metadata = session.get_modelmeta().custom_metadata_map
    facts = {key: _parse_facts(f"{path}'s metadata `{key}`", value) for key, value in metadata.items()}
    names = [spec.name for spec in session.get_inputs()], [spec.name for spec in session.get_outputs()]
    return (lambda feeds: {output: session.run([output], feeds)[0]}), facts, names, session.get_providers()


def _open_tflite(path):
    interpreter = _import_runtime(path)
    sidecar = metadata_path(path)
    if not os.path.isfile(sidecar):
        raise ValueError(f"{path} needs its facts file {sidecar} beside it (written by `python -m export`).")
    with open(sidecar, "rb") as f:
        facts = _parse_facts(sidecar, f.read())
    try:
        runner = interpreter.Interpreter(model_path=path).get_signature_runner()
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is not a TFLite model that LiteRT can load (truncated, or another kind of "
                         f"file?): {err}") from err
    return (lambda feeds: runner(**feeds)), facts, (list(runner.get_input_details()), list(runner.get_output_details()))


def _parse_facts(source, text):
    """JSON from `source` (a sidecar file, or one metadata entry), or a ValueError that names it."""
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"{source} is not JSON ({err}): re-export the decoder with "
                         "`python -m export RUN_DIR`.") from err


def _check_facts(path, facts, inputs, outputs):
    """Refuses a file without the export's facts, or whose graph does not take the inputs they name."""
    missing = [key for key in REQUIRED_FACTS if key not in facts] if isinstance(facts, dict) else list(REQUIRED_FACTS)
    if missing:
        raise ValueError(f"{path} lacks the decoder facts {missing}: export it with `python -m export RUN_DIR`.")
    specs = facts["inputs"]
    named = isinstance(specs, list) and specs and all(isinstance(spec, dict) and "name" in spec for spec in specs)
    if not named or sorted(spec["name"] for spec in specs) != sorted(inputs) or "mean" not in outputs:
        raise ValueError(f"{path} takes inputs {sorted(inputs)} and gives {sorted(outputs)}, which do not match "
                         f"its facts' inputs {specs} and a `mean` output: export it with `python -m export RUN_DIR`.")
    names = facts.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != facts["num_classes"]
                              or not all(isinstance(name, str) for name in names)):
        raise ValueError(f"{path}'s facts name the classes {names!r}, not a list of its {facts['num_classes']} class "
                         "names: export it with `python -m export RUN_DIR`.")
