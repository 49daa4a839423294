"""An exported decoder: latents (and labels) in, images out."""

import os

import numpy as np

from export.runtime.files import open_file
from export.runtime.inputs import check_input, upper_bound
from export.runtime.prior import load_prior, sample_prior

REQUIRED_FACTS = ("variant", "latent_dim", "num_classes", "output_shape", "inputs", "prior")
CHUNK_VALUES = 1 << 18  # output values per runtime call: 334 images of 28x28x1, 21 of 64x64x3


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
    path, run, facts, names, used = open_file(path, providers, "decoder")
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
        latents = check_input(self._latent, z, upper_bound(self.facts, self._latent["name"]))
        feeds = {self._latent["name"]: latents, **self._condition_feeds(labels, len(latents))}
        return self._decode_chunks(len(latents), lambda start, stop: {k: v[start:stop] for k, v in feeds.items()})

    def parameters(self, z, labels=None):
        """Every output of the decoder for latents `z` in one runtime call: `mean` and the
        likelihood's parameters (the facts' `outputs`), which scoring images needs. Checked like `decode`."""
        latents = check_input(self._latent, z, upper_bound(self.facts, self._latent["name"]))
        return self._run({self._latent["name"]: latents, **self._condition_feeds(labels, len(latents))})

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
        return {spec["name"]: check_input(spec, labels, upper_bound(self.facts, spec["name"]), batch)
                for spec in self._conditions}

    def _decode_chunks(self, n, feeds):
        """Decodes `feeds(start, stop)` for consecutive batches of at most `batch_size` into one
        `[n, H, W, C]` array."""
        images = np.empty((n, *self.output_shape), np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            images[start:stop] = self._run(feeds(start, stop), ["mean"])["mean"]
        return images

    def __repr__(self):
        return (f"Decoder({self.path!r}, variant={self.variant!r}, latent_dim={self.latent_dim}, "
                f"num_classes={self.num_classes}, output_shape={self.output_shape})")


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


def sample_inputs(facts, n, seed=None):
    """Random valid inputs for every input of an exported decoder or encoder, keyed by name: float
    latents from the prior (N(0, I) when there is none, and for an encoder's `noise`), uniform
    images `x` in [0, 1], uniform labels and codes. Used for parity checks and int8 calibration."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in facts["inputs"]:
        shape = (n, *spec["shape"])
        if spec["name"] == "x":
            inputs["x"] = rng.random(shape).astype(spec["dtype"])
        elif spec["name"] == "noise":
            inputs["noise"] = rng.standard_normal(shape).astype(spec["dtype"])
        elif spec["dtype"].startswith("float"):
            inputs[spec["name"]] = (sample_prior(facts["prior"], n, rng) if facts["prior"]
                                    else rng.standard_normal(shape).astype(spec["dtype"]))
        else:
            inputs[spec["name"]] = rng.integers(0, upper_bound(facts, spec["name"]), shape).astype(spec["dtype"])
    return inputs
