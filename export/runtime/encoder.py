"""An exported encoder: images (and labels) in, q(z|x)'s parameters (or z, or codes) out."""

import numpy as np

from export.runtime.files import open_file
from export.runtime.inputs import check_input, upper_bound

ENCODER_FACTS = ("variant", "latent_dim", "num_classes", "input_shape", "inputs", "outputs", "prior", "likelihood")


def load_encoder(path, providers=None):
    """Loads an exported encoder (`encoder.onnx` / `encoder.tflite`, written by
    `python -m export RUN_DIR --parts decoder,encoder`).

    Raises:
        ValueError: a missing file or extension, a file its runtime cannot load, or one without an
            encoder's facts, or whose graph does not take the inputs they name.
        ModuleNotFoundError: the file's runtime is not installed.
    """
    path, run, facts, (inputs, outputs), used = open_file(path, providers, "encoder")
    missing = [key for key in ENCODER_FACTS if key not in facts] if isinstance(facts, dict) else list(ENCODER_FACTS)
    if missing:
        raise ValueError(f"{path} lacks the encoder facts {missing}: export it with "
                         "`python -m export RUN_DIR --parts decoder,encoder`.")
    if sorted(spec["name"] for spec in facts["inputs"]) != sorted(inputs):
        raise ValueError(f"{path} takes inputs {sorted(inputs)}, which do not match its facts' inputs "
                         f"{facts['inputs']}: "
                         "export it with `python -m export RUN_DIR --parts decoder,encoder`.")
    return Encoder(run, facts, path, used)


class Encoder:
    """An exported encoder.

    Attributes:
        variant, latent_dim, num_classes (None unless conditional), input_shape `(H, W, C)`, facts,
        providers (None for TFLite), outputs (names: "loc" and "scale" for Gaussian latents, "z"
        for an autoencoder, "codes" for a VQ-VAE; a hierarchical model also gives "z" for the
        `noise` it is fed).
    """

    def __init__(self, run, facts, path, providers=None):
        self._run, self.facts, self.path, self.providers = run, facts, path, providers
        self.variant, self.latent_dim, self.num_classes = facts["variant"], facts["latent_dim"], facts["num_classes"]
        self.input_shape, self.outputs = tuple(facts["input_shape"]), list(facts["outputs"])
        self._specs = {spec["name"]: spec for spec in facts["inputs"]}

    @property
    def takes_noise(self):
        """Whether the encoder draws z itself from standard-normal `noise` (a hierarchical model)."""
        return "noise" in self._specs

    def encode(self, x, labels=None, noise=None):
        """Returns the encoder's outputs for images `x` `[B, H, W, C]` in [0, 1], as a dict of arrays.

        Args:
            x: float images; float64 is cast to float32.
            labels: int class ids `[B]`; required exactly when the encoder is conditional.
            noise: standard-normal `[B, latent_dim]` for an encoder that takes it (zeros when
                None: the posterior-mean path); refused by the others.

        Raises:
            ValueError: wrong shape or dtype, NaN/Inf, pixels outside [0, 1], missing or extra
                labels or noise.
        """
        images = check_input(self._specs["x"], x)
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"Expected pixel values in [0, 1], received [{images.min():g}, {images.max():g}].")
        feeds = {"x": images}
        if self.num_classes and labels is None:
            raise ValueError(f"This encoder is conditional on {self.num_classes} classes: pass `labels`.")
        if labels is not None:
            if not self.num_classes:
                raise ValueError("This encoder is not conditional: expected labels=None, received labels.")
            feeds["labels"] = check_input(self._specs["labels"], labels, upper_bound(self.facts, "labels"), len(images))
        if noise is not None and not self.takes_noise:
            raise ValueError(f"This '{self.variant}' encoder takes no noise: expected noise=None.")
        if self.takes_noise:
            noise = np.zeros((len(images), self.latent_dim), np.float32) if noise is None else noise
            feeds["noise"] = check_input(self._specs["noise"], noise, batch=len(images))
        return self._run(feeds)

    def __repr__(self):
        return (f"Encoder({self.path!r}, variant={self.variant!r}, latent_dim={self.latent_dim}, "
                f"num_classes={self.num_classes}, input_shape={self.input_shape})")
